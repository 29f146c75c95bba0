"""Audit plumbing for claims whose cases are frozen dataclasses with a ``verdict(device, dtype)`` method:
:func:`case_audit` turns such a case maker into named, seeded audit cases with reproduce lines."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import torch

from ..core.registry import AuditCase


def case_line(case) -> str:
    """``SGDCase(claim=..., <fields that differ from the defaults>)``: a line that rebuilds the case."""
    fields = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in dataclasses.fields(case)
                       if getattr(case, f.name) != f.default or f.name == "claim")
    return f"{type(case).__name__}({fields})"


def generated_data(kind: str, n: int, d: int, seed: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of :mod:`theorycheck.generate.data`'s ``separable`` (margin 0.1), ``random`` (labels) or ``digits``."""
    from . import data as datasets

    made = {"separable": lambda: datasets.separable(n, d, margin=0.1, seed=seed, dtype=dtype),
            "random": lambda: datasets.random_labels(n, d, seed=seed, dtype=dtype),
            "digits": lambda: datasets.digits(n, seed=seed, dtype=dtype)}[kind]()
    return made.X, made.y


def case_audit(claim: str, controls: dict[str, str], make: Callable, *, n: int, seed: int, device: str,
               dtype: str) -> Iterator[AuditCase]:
    """n cases ``make(claim, rng, None)`` (expected: holds) and n controls ``make(claim, rng, control)``
    cycling through ``controls`` (control -> expected status); each case has ``.verdict`` and a line."""
    from .sampling import case_rng

    names = list(controls)
    for index in range(2 * n):
        control = None if index < n else names[index % len(names)]
        case = make(claim, case_rng(seed, claim, index), control)
        yield AuditCase(
            name=f"{'control-' + control if control else 'instance'}-{index}",
            kind="control" if control else "instance",
            expected=frozenset({controls[control]}) if control else frozenset({"holds"}),
            reproduce=(f"from {type(case).__module__} import {type(case).__name__}; print({case_line(case)}"
                       f".verdict(device={device!r}, dtype={dtype!r}).summary())"),
            run=lambda case=case: case.verdict(device=device, dtype=dtype), size=case.n)


def case_audits(claim: str, controls: dict[str, str], make: Callable) -> Callable[..., Iterator[AuditCase]]:
    """A claim's ``audit_cases(n=, seed=, device=, dtype=)``: :func:`case_audit` bound to its controls and maker."""
    return functools.partial(case_audit, claim, controls, make)
