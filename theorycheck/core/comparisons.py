"""A conclusion of several parts (a pathwise bound and an expectation, a formula at several sizes, ...):
each part is a :class:`Comparison` measured <= bound + tolerance, and a verdict's headline statistic, bound
and tolerance are those of the deciding part, so that ``statistic <= bound + tolerance`` always says
whether the conclusion held (report/SCHEMA.md)."""

from __future__ import annotations

import dataclasses
import math

from .errors import expect

__all__ = ["Comparison", "comparison", "deciding", "headline"]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One part of a conclusion: ``held`` iff measured <= bound + tolerance (NaN never holds)."""

    name: str
    measured: float
    bound: float
    tolerance: float
    basis: str

    @property
    def held(self) -> bool:
        return bool(self.measured <= self.bound + self.tolerance)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "held": self.held}


def comparison(name: str, measured: float, bound: float, tolerance: float, basis: str) -> Comparison:
    """One part of a conclusion (floats taken from numpy or torch scalars)."""
    return Comparison(str(name), float(measured), float(bound), float(tolerance), str(basis))


def _allowance_ratio(part: Comparison) -> float:
    allowed = part.bound + part.tolerance
    if math.isnan(part.measured) or math.isnan(allowed):
        return math.inf
    if allowed > 0:
        return part.measured / allowed
    return math.inf if part.measured > 0 else 0.0


def deciding(parts: list[Comparison]) -> Comparison:
    """The part a verdict's headline reports: the failing part furthest over its allowance, else the
    tightest (largest measured / (bound + tolerance))."""
    expect(bool(parts), expected="at least one comparison", received="none", fix="compare something")
    failing = [p for p in parts if not p.held]
    return max(failing or parts, key=_allowance_ratio)


def headline(parts: list[Comparison]) -> dict:
    """Verdict fields for a conclusion made of ``parts``: conclusion_held (every part held), and the
    deciding part's statistic, bound, tolerance and basis."""
    part = deciding(parts)
    return {"conclusion_held": all(p.held for p in parts), "statistic": part.measured, "bound": part.bound,
            "tolerance": part.tolerance, "tolerance_basis": f"{part.name}: {part.basis}"}
