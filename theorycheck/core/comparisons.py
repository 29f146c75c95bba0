"""A conclusion of several parts (a pathwise bound and an expectation, a formula at several sizes, ...):
each part is a comparison measured <= bound + tolerance, and a verdict's headline statistic, bound and
tolerance are those of the deciding part, so that ``statistic <= bound + tolerance`` always says whether
the conclusion held (report/SCHEMA.md)."""

from __future__ import annotations

import math

from .errors import expect

__all__ = ["comparison", "deciding", "headline"]


def comparison(name: str, measured: float, bound: float, tolerance: float, basis: str) -> dict:
    """One part of a conclusion: held iff measured <= bound + tolerance (NaN never holds)."""
    measured, bound, tolerance = float(measured), float(bound), float(tolerance)
    return {"name": name, "measured": measured, "bound": bound, "tolerance": tolerance, "basis": basis,
            "held": bool(measured <= bound + tolerance)}


def _allowance_ratio(part: dict) -> float:
    allowed = part["bound"] + part["tolerance"]
    if math.isnan(part["measured"]) or math.isnan(allowed):
        return math.inf
    if allowed > 0:
        return part["measured"] / allowed
    return math.inf if part["measured"] > 0 else 0.0


def deciding(parts: list[dict]) -> dict:
    """The part a verdict's headline reports: the failing part furthest over its allowance, else the
    tightest (largest measured / (bound + tolerance))."""
    expect(bool(parts), expected="at least one comparison", received="none", fix="compare something")
    failing = [p for p in parts if not p["held"]]
    return max(failing or parts, key=_allowance_ratio)


def headline(parts: list[dict]) -> dict:
    """Verdict fields for a conclusion made of ``parts``: conclusion_held (every part held), and the
    deciding part's statistic, bound, tolerance and basis."""
    part = deciding(parts)
    return {"conclusion_held": all(p["held"] for p in parts), "statistic": part["measured"], "bound": part["bound"],
            "tolerance": part["tolerance"], "tolerance_basis": f"{part['name']}: {part['basis']}"}
