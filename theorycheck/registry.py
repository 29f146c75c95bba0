"""The claim registry: every claim's statement, assumptions, source, checker and audit battery."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType


@dataclasses.dataclass(frozen=True)
class AuditCase:
    """One generated instance of a claim for the audit battery.

    ``expected`` is the set of statuses the checker should give: ``{"holds"}`` for an instance
    meeting the theorem's assumptions, the non-holds statuses for a negative control.
    ``reproduce`` is a Python line that rebuilds the instance and runs the checker.
    """

    name: str
    kind: str  # "instance" or "control"
    expected: frozenset[str]
    reproduce: str
    run: Callable[[], object]
    size: int = 0  # a size measure of the instance (parameters), for residual-vs-size plots


@dataclasses.dataclass(frozen=True)
class Claim:
    """A theorem-shaped claim."""

    id: str
    statement: str
    assumptions: tuple[str, ...]
    source: str
    checker: Callable
    tolerance: str
    audit_cases: Callable[..., Iterator[AuditCase]] | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "statement": self.statement, "assumptions": list(self.assumptions),
                "source": self.source, "tolerance": self.tolerance,
                "checker": f"{self.checker.__module__}.{self.checker.__name__}"}


_CLAIMS: dict[str, Claim] = {}
CLAIMS: Mapping[str, Claim] = MappingProxyType(_CLAIMS)


def register(claim: Claim) -> Claim:
    """Add a claim to :data:`CLAIMS` (ids are unique)."""
    if claim.id in _CLAIMS and _CLAIMS[claim.id] is not claim:
        raise ValueError(f"claim id {claim.id!r} is registered twice")
    _CLAIMS[claim.id] = claim
    return claim
