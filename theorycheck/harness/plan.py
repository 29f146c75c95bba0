"""An audit's plan and its case runner: the settings, the cases each claim x device x dtype generates
(instances and controls interleaved, optionally one shard of them), and :func:`run_case`, which runs one
case re-seeded from its own id on one thread. Shared by the audit, its worker processes and the shards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from ..core.errors import InvalidArgument, expect
from ..core.registry import CLAIMS, AuditCase, case_seed
from ..core.verdict import Verdict
from ..report import case_record

DEFAULT_EXAMPLES = 20
DEFAULT_BUDGET = 0.0  # seconds per claim x device x dtype; 0 = no cap (every planned case runs)
SETTINGS_KEYS = ("claims", "devices", "dtypes", "examples", "budget", "seed")


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """What an audit runs; ``examples`` and ``budget`` (seconds, 0 = none) are per claim."""

    claims: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float64",)
    examples: Mapping[str, int] = dataclasses.field(default_factory=dict)
    budget: Mapping[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0
    shard: tuple[int, int] | None = None  # (K, N): the K-th of N disjoint parts of the planned cases

    def to_dict(self) -> dict[str, Any]:
        shard = {"shard": list(self.shard)} if self.shard else {}
        return {"claims": list(self.claims), "devices": list(self.devices), "dtypes": list(self.dtypes),
                "examples": dict(self.examples), "budget": dict(self.budget), "seed": self.seed, **shard}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AuditSettings":
        """The settings of an audit header; missing or malformed fields raise ``InvalidArgument``."""
        missing = [k for k in SETTINGS_KEYS if k not in (data if isinstance(data, Mapping) else {})]
        try:
            if missing:
                raise KeyError(missing)
            settings = cls(claims=tuple(data["claims"]), devices=tuple(data["devices"]),
                           dtypes=tuple(data["dtypes"]), examples=dict(data["examples"]),
                           budget=dict(data["budget"]), seed=int(data["seed"]),
                           shard=tuple(map(int, data["shard"])) if data.get("shard") else None)
        except (KeyError, TypeError, ValueError):
            raise InvalidArgument(f"expected audit settings with {list(SETTINGS_KEYS)} (claims, devices, dtypes: "
                                  f"lists; examples, budget: {{claim: n}}; seed: int), but got {data!r}"
                                  f"{f' (missing: {missing})' if missing else ''}. Fix: restore the header of "
                                  "results.jsonl, or audit afresh into a new --out directory.") from None
        lacking = [c for c in settings.claims if c not in settings.examples or c not in settings.budget]
        expect(not lacking, expected="examples and budget for every claim of the audit",
               received=f"none for {lacking} in {data!r}", fix="restore the header of results.jsonl, or audit afresh")
        return settings


def interleave(cases: list[AuditCase]) -> list[AuditCase]:
    """Instances and controls merged in proportion, each kind keeping its order; names made unique."""
    by_kind: dict[str, list[AuditCase]] = {}
    for case in cases:
        by_kind.setdefault(case.kind, []).append(case)
    ranked = sorted(((i / len(group), kind != "instance", i, case) for kind, group in by_kind.items()
                     for i, case in enumerate(group)), key=lambda t: t[:3])
    seen: Counter = Counter()
    merged = []
    for *_, case in ranked:
        seen[case.name] += 1
        merged.append(case if seen[case.name] == 1 else dataclasses.replace(case, name=f"{case.name}#{seen[case.name]}"))
    return merged


def run_case(case: AuditCase, *, claim: str, device: str, dtype: str, seed: int) -> dict[str, Any]:
    """Run one case with freshly seeded global RNGs and one CPU thread (the same arithmetic on every
    machine, and several times faster on a busy one); a checker that raises gives status ``error``."""
    import numpy as np
    import torch

    rng_seed = case_seed(seed, claim, device, dtype, case.name)
    torch.manual_seed(rng_seed)
    np.random.seed(rng_seed)
    random.seed(rng_seed)
    start = time.perf_counter()
    verdict, error = None, None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # audit instances are small: thread hand-offs cost more than they save
    try:
        with verdicts_kept_local():
            result = case.run()
        if isinstance(result, Verdict):
            verdict = result.to_dict()
        else:
            error = f"the audit case returned {type(result).__name__}, expected a Verdict"
    except Exception:  # a checker must never raise on a false theorem: record the defect, go on
        error = traceback.format_exc(limit=-8)
    seconds = time.perf_counter() - start
    record = case_record(claim=claim, device=device, dtype=dtype, case=case.name, kind=case.kind,
                         expected=case.expected, status=verdict["status"] if verdict else "error",
                         reproduce=case.reproduce, size=case.size, size_unit=case.size_unit, seconds=seconds,
                         verdict=verdict, error=error)
    try:
        if record["outcome"] == "unexpected" and verdict and case.shrink is not None:
            record["minimal"] = _shrunk(case, verdict["status"])
    finally:
        torch.set_num_threads(threads)
    return record


SHRINK_SECONDS = 30.0  # per unexpected instance: Hypothesis' shrinking of it, cut off after this


def _shrunk(case: AuditCase, status: str) -> dict[str, Any] | None:
    """The minimal example that keeps the case's unexpected status (see theorycheck.core.shrink); a shrink
    that raises is recorded as such, never lost."""
    try:
        with verdicts_kept_local():
            return case.shrink(SHRINK_SECONDS, status)
    except Exception:  # noqa: BLE001 - the original counterexample stands; say why there is no smaller one
        return {"error": traceback.format_exc(limit=-4)}


@contextlib.contextmanager
def verdicts_kept_local():
    """Hide an audit case's verdicts from enclosing collectors (a pytest session's verdict table): they
    belong to the audit's own results file."""
    from ..core import verdict

    listeners = verdict._LISTENERS[:]
    verdict._LISTENERS.clear()
    try:
        yield
    finally:
        verdict._LISTENERS[:] = listeners


def planned_cases(claim_id: str, device: str, dtype: str, settings: AuditSettings) -> list[AuditCase]:
    claim = CLAIMS[claim_id]
    if claim.audit_cases is None:
        return []
    cases = interleave(list(claim.audit_cases(n=settings.examples[claim_id], seed=settings.seed,
                                              device=device, dtype=dtype)))
    return [c for c in cases if in_shard(settings.shard, claim_id, device, dtype, c.name)]


def in_shard(shard: tuple[int, int] | None, *case_id: str) -> bool:
    """Whether a case (claim, device, dtype, name) belongs to shard K of N: a hash of its id, so the N
    shards split every plan into disjoint parts whose union is the unsharded plan."""
    return shard is None or zlib.crc32("/".join(case_id).encode()) % shard[1] == shard[0] - 1


def planned_groups(settings: AuditSettings) -> Iterator[tuple[str, str, str]]:
    for claim_id in settings.claims:
        for device in settings.devices:
            for dtype in settings.dtypes:
                yield claim_id, device, dtype
