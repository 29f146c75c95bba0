"""Verdict: what a checker found on one instance of one claim.

A checker never raises on a false theorem. Verdicts are decided by a claim's kit
(:meth:`theorycheck.core.kit.ClaimKit.decide`), the one road to a verdict: it fills the provenance (claim,
device, dtype, seed, versions) from what ran. It observes the theorem's assumptions, evaluates the
conclusion within a derived tolerance, and returns a Verdict whose status is
``holds`` (assumptions met, conclusion held), ``violated`` (assumptions met, conclusion failed),
``vacuous`` (an assumption not met: the theorem says nothing; the conclusion is still reported) or
``inconclusive`` (the numerics could not decide: NaN, overflow, too short a run).
An assumption a checker observed but could not decide (its own check was inconclusive) is passed as None:
it is neither met nor unmet, so it is left out of ``assumptions``, named in ``details["undecided_assumptions"]``,
and makes the verdict inconclusive unless a decided assumption fails (then the theorem says nothing anyway).
A conclusion the checker could not decide (too short a run, a test without the power to decide, a run that
moved less than roundoff) is passed as ``undecided=True`` and follows the same rule; ``inconclusive=True``
(observations that cannot be trusted, e.g. non-finite) is inconclusive whatever the assumptions.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

STATUSES = ("holds", "violated", "vacuous", "inconclusive")


def decide_status(assumptions: Mapping[str, bool], conclusion_held: bool, inconclusive: bool) -> str:
    """The one rule mapping observations to a status (see module docstring)."""
    if inconclusive:
        return "inconclusive"
    if not all(assumptions.values()):
        return "vacuous"
    return "holds" if conclusion_held else "violated"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of checking one claim on one instance."""

    claim: str
    status: str
    conclusion_held: bool
    assumptions: Mapping[str, bool]
    statistic: float
    bound: float
    tolerance: float
    tolerance_basis: str
    device: str = "cpu"
    dtype: str = "float64"
    seed: int | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reason: str = ""
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)  # theorycheck, torch that ran

    def __post_init__(self):
        if self.status not in STATUSES:
            from .errors import InvalidArgument

            raise InvalidArgument(f"expected a status in {STATUSES} for a verdict of {self.claim!r}, but got "
                                  f"{self.status!r}. Fix: use one of {STATUSES}.")

    @property
    def failed_assumptions(self) -> list[str]:
        return [name for name, held in self.assumptions.items() if not held]

    def summary(self) -> str:
        """One line: claim, status, measured vs allowed, failed assumptions, reason."""
        line = (f"[theorycheck] {self.claim}: {self.status}; statistic {self.statistic:.3e} vs bound "
                f"{self.bound:.3e} + tolerance {self.tolerance:.3e} ({self.tolerance_basis})")
        if self.failed_assumptions:
            line += "; assumption(s) not met: " + ", ".join(f'"{a}"' for a in self.failed_assumptions)
        if self.reason:
            line += f"; {self.reason}"
        return line

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (floats that are not finite become strings)."""
        return {field.name: to_jsonable(getattr(self, field.name)) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Verdict":
        values = dict(data)
        for name in ("statistic", "bound", "tolerance"):
            values[name] = float(values[name])
        return cls(**values)


def _decide(*, claim, assumptions, conclusion_held, inconclusive=False, undecided=False, **fields) -> Verdict:
    """The kit's decider (private: claims call ``kit.decide``): a Verdict whose status follows
    :func:`decide_status`; an assumption given as None, and the conclusion with ``undecided=True``, are
    undecided (see the module docstring)."""
    open_assumptions = [str(k) for k, v in assumptions.items() if v is None]
    assumptions = {str(k): bool(v) for k, v in assumptions.items() if v is not None}
    if open_assumptions:
        fields["details"] = {**fields.get("details", {}), "undecided_assumptions": open_assumptions}
    if open_assumptions or undecided:
        inconclusive = inconclusive or all(assumptions.values())
    status = decide_status(assumptions, bool(conclusion_held), bool(inconclusive))
    verdict = Verdict(claim=claim, status=status, conclusion_held=bool(conclusion_held), assumptions=assumptions,
                      **fields)
    if _NESTING.get() == 0:  # decided by the user's own call, not inside a checker or an engine
        _publish(verdict)
    return verdict


_LISTENERS: list[Callable[[Verdict], None]] = []
_NESTING = contextvars.ContextVar("theorycheck_nesting", default=0)


def _publish(verdict: Verdict) -> None:
    for listener in tuple(_LISTENERS):
        listener(verdict)


@contextlib.contextmanager
def unreported() -> Iterator[None]:
    """Verdicts decided inside the block are the caller's business, not the user's: engines (``train``,
    ``Recorder``) and checkers that run another claim as a pre-check use it, so reports and the pytest
    plugin collect only the verdicts that the user's own calls return."""
    token = _NESTING.set(_NESTING.get() + 1)
    try:
        yield
    finally:
        _NESTING.reset(token)


def reported(checker: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """Decorate a public checker: the verdict it returns is published to :func:`collecting_verdicts` when
    the call is the user's own (outermost); verdicts decided inside it (pre-checks) are not."""

    @functools.wraps(checker)
    def run(*args, **kwargs):
        outermost = _NESTING.get() == 0
        with unreported():
            verdict = checker(*args, **kwargs)
        if outermost and isinstance(verdict, Verdict):
            _publish(verdict)
        return verdict

    return run


@contextlib.contextmanager
def collecting_verdicts() -> Iterator[list[Verdict]]:
    """Collect every Verdict that a user's own checker call returns inside the ``with`` block (reports,
    the pytest plugin); pre-checks run inside checkers and engines are not collected."""
    collected: list[Verdict] = []
    _LISTENERS.append(collected.append)
    try:
        yield collected
    finally:
        _LISTENERS.remove(collected.append)


def to_jsonable(value: Any) -> Any:
    """Convert tensors, numpy values, tuples and non-finite floats to plain JSON data."""
    if dataclasses.is_dataclass(value) and hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def require_holds(verdict: Verdict) -> Verdict:
    """Return the verdict if it holds; otherwise raise ClaimViolation with its one-line summary."""
    from .errors import ClaimViolation

    if verdict.status != "holds":
        raise ClaimViolation(verdict.summary(), verdict)
    return verdict
