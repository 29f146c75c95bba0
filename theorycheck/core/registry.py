"""The claim registry: every claim's statement, assumptions, source, checker and audit battery."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterator, Mapping

from .errors import InvalidArgument


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
    size: int = 0  # a size measure of the instance, for residual-vs-size plots
    size_unit: str = "parameters"  # what ``size`` counts (samples for the dataclass cases)
    stream: str = ""  # the random stream it draws (default: its name); cases of one stream share runs
    # drawn from the claim's Hypothesis strategy: shrink(seconds, status) -> the minimal example keeping the
    # unexpected status (a dict for the record), or None
    shrink: Callable[[float, str], dict | None] | None = None


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
_LOADERS: list[Callable[[], object]] = []  # run once, at the first look: the package adds the claims' import


def load_on_first_use(loader: Callable[[], object]) -> None:
    """Run ``loader`` (which registers claims) at the first look into :data:`CLAIMS`; the package
    ``theorycheck`` adds the import of its claims here, so importing the package stays cheap."""
    _LOADERS.append(loader)


class _Registry(Mapping):
    """Read-only view of the registered claims; the first look runs the loaders (:func:`load_on_first_use`)."""

    def _claims(self) -> dict[str, Claim]:
        while _LOADERS:
            _LOADERS.pop(0)()
        return _CLAIMS

    def __getitem__(self, claim_id: str) -> Claim:
        return self._claims()[claim_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims())

    def __len__(self) -> int:
        return len(self._claims())

    def __repr__(self) -> str:
        return f"CLAIMS({list(self)})"


CLAIMS: Mapping[str, Claim] = _Registry()


BatteryCheck = Callable[..., object]  # (model, X, y, *, seed) -> Verdict
BATTERY_CHECKS: dict[str, BatteryCheck] = {}  # claim id -> adapter, for theorycheck.parametrize_with_claims


def register_battery_check(claim: str, check: BatteryCheck) -> BatteryCheck:
    """Let :func:`theorycheck.parametrize_with_claims` run ``claim``: ``check(model, X, y, *, seed) -> Verdict``."""
    BATTERY_CHECKS[claim] = check
    return check


def register(claim: Claim) -> Claim:
    """Add a claim to :data:`CLAIMS` (ids are unique)."""
    if claim.id in _CLAIMS and _CLAIMS[claim.id] is not claim:
        raise InvalidArgument(f"expected a new claim id, but got {claim.id!r}, which is registered already "
                              f"(by {_CLAIMS[claim.id].checker.__module__}). Fix: choose another id for the claim.")
    _CLAIMS[claim.id] = claim
    return claim


def case_seed(seed: int, *parts) -> int:
    """The one seed derivation of the project: a CRC32 of the audit seed and the case's names
    (claim, case name, device, dtype, index ...), so distinct names give distinct streams."""
    return zlib.crc32("/".join(map(str, (seed, *parts))).encode())
