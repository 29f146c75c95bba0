"""The audit runner: every registered claim's audit cases (instances and negative controls) per
device x dtype, each verdict appended to ``results.jsonl`` the moment it is decided.

A case's verdict depends only on (seed, claim, device, dtype, case name): the global RNGs are
re-seeded from those before each case, so an interrupted audit continued with ``resume=True`` gives
the same verdicts as an uninterrupted one. A time budget per claim x device x dtype stops a group
early (instances and controls are interleaved, so the cases that ran are a balanced prefix).
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
import traceback
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from .errors import InvalidArgument
from .registry import CLAIMS, AuditCase
from .report import RESULTS, SCHEMA_VERSION, ResultsWriter, case_record, environment, read_results, write_reports
from .report.records import ensure_writable_directory, now
from .report.summary import reason_of
from .verdict import Verdict

DEFAULT_EXAMPLES = 20
DEFAULT_BUDGET = 15.0  # seconds per claim x device x dtype


@dataclasses.dataclass(frozen=True)
class AuditSettings:
    """What an audit runs; ``examples`` and ``budget`` (seconds, 0 = none) are per claim."""

    claims: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float64",)
    examples: Mapping[str, int] = dataclasses.field(default_factory=dict)
    budget: Mapping[str, float] = dataclasses.field(default_factory=dict)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"claims": list(self.claims), "devices": list(self.devices), "dtypes": list(self.dtypes),
                "examples": dict(self.examples), "budget": dict(self.budget), "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AuditSettings":
        return cls(claims=tuple(data["claims"]), devices=tuple(data["devices"]), dtypes=tuple(data["dtypes"]),
                   examples=dict(data["examples"]), budget=dict(data["budget"]), seed=int(data["seed"]))


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


def case_seed(seed: int, *parts: str) -> int:
    return zlib.crc32("/".join((str(seed), *parts)).encode())


def run_case(case: AuditCase, *, claim: str, device: str, dtype: str, seed: int) -> dict[str, Any]:
    """Run one case with freshly seeded global RNGs; a checker that raises gives status ``error``."""
    import numpy as np
    import torch

    rng_seed = case_seed(seed, claim, device, dtype, case.name)
    torch.manual_seed(rng_seed)
    np.random.seed(rng_seed)
    random.seed(rng_seed)
    start = time.perf_counter()
    verdict, error = None, None
    try:
        result = case.run()
        if isinstance(result, Verdict):
            verdict = result.to_dict()
        else:
            error = f"the audit case returned {type(result).__name__}, expected a Verdict"
    except Exception:  # a checker must never raise on a false theorem: record the defect, go on
        error = traceback.format_exc(limit=-8)
    return case_record(claim=claim, device=device, dtype=dtype, case=case.name, kind=case.kind,
                       expected=case.expected, status=verdict["status"] if verdict else "error",
                       reproduce=case.reproduce, size=case.size, seconds=time.perf_counter() - start,
                       verdict=verdict, error=error)


class Progress:
    """A one-line progress bar on a terminal stream; silent when the stream is not a terminal."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.active = hasattr(stream, "isatty") and stream.isatty()

    def show(self, label: str, done: int, total: int, seconds: float) -> None:
        if self.active and total:
            filled = int(30 * done / total)
            self.stream.write(f"\r\033[K{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {seconds:.1f}s")
            self.stream.flush()

    def clear(self) -> None:
        if self.active:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _planned_cases(claim_id: str, device: str, dtype: str, settings: AuditSettings) -> list[AuditCase]:
    claim = CLAIMS[claim_id]
    if claim.audit_cases is None:
        return []
    return interleave(list(claim.audit_cases(n=settings.examples[claim_id], seed=settings.seed,
                                             device=device, dtype=dtype)))


def _groups(settings: AuditSettings) -> Iterator[tuple[str, str, str]]:
    for claim_id in settings.claims:
        for device in settings.devices:
            for dtype in settings.dtypes:
                yield claim_id, device, dtype


def _print_unexpected(record: Mapping[str, Any], out: TextIO) -> None:
    print(f"UNEXPECTED {record['claim']} {record['device']}/{record['dtype']} {record['case']} ({record['kind']}): "
          f"expected {'/'.join(record['expected'])}, got {record['status']}; {reason_of(record)}\n"
          f"  reproduce: {record['reproduce']}", file=out, flush=True)


def _group_line(claim_id, device, dtype, records, planned, seconds, width) -> str:
    statuses = Counter(r["status"] for r in records)
    unexpected = sum(r["outcome"] == "unexpected" for r in records)
    counts = " · ".join(f"{s} {n}" for s, n in statuses.most_common())
    not_run = f" ({planned - len(records)} not run: budget)" if len(records) < planned else ""
    return (f"{claim_id:<{width}}  {device}/{dtype:<8} {len(records):>4}/{planned} cases {seconds:7.1f} s  "
            f"{counts or 'no cases'}{not_run}  {'ok' if not unexpected else f'FAIL ({unexpected} unexpected)'}")


def run_audit(settings: AuditSettings | None, directory: Path, *, resume: bool = False,
              out: TextIO | None = None, err: TextIO | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the audit recorded in ``directory``; write the reports.

    Returns the report document (``report["summary"]["exit_code"]`` is 0 or 1).
    """
    directory = Path(directory)
    path = directory / RESULTS
    records = read_results(path, repair_torn_tail=True) if resume else []
    if resume:
        settings = AuditSettings.from_dict(records[0]["settings"])
    out = out or sys.stdout
    progress = Progress(err or sys.stderr)
    with ResultsWriter(path) as writer:
        if resume:
            writer.write({"record": "resume", "time": now(), "environment": environment(settings.devices)})
        else:
            records = [{"record": "header", "schema_version": SCHEMA_VERSION, "source": "audit", "started": now(),
                        "settings": settings.to_dict(), "environment": environment(settings.devices),
                        "claims": {c: CLAIMS[c].to_dict() for c in settings.claims}}]
            writer.write(records[0])
        grouped: dict[tuple, list] = {}
        for record in records:
            if record["record"] == "case":
                grouped.setdefault((record["claim"], record["device"], record["dtype"]), []).append(record)
        width = max(map(len, settings.claims))
        planned_before = {(r["claim"], r["device"], r["dtype"]) for r in records if r["record"] == "group"}
        for key in _groups(settings):
            claim_id, device, dtype = key
            try:
                cases, failure = _planned_cases(claim_id, device, dtype, settings), None
            except Exception:  # the claim's case generator itself failed: recorded as one error case
                cases, failure = [], traceback.format_exc(limit=-8)
            if key not in planned_before:
                writer.write({"record": "group", "claim": claim_id, "device": device, "dtype": dtype,
                              "planned": len(cases) or int(failure is not None)})
            done = grouped.setdefault(key, [])
            finished = {r["case"] for r in done}
            budget = float(settings.budget.get(claim_id, 0))
            seconds = sum(r["seconds"] for r in done)
            kinds_needed = {c.kind for c in cases}
            if failure and "audit_cases" not in finished:
                cases_call = (f"tc.CLAIMS[{claim_id!r}].audit_cases(n={settings.examples[claim_id]}, "
                              f"seed={settings.seed}, device={device!r}, dtype={dtype!r})")
                done.append(case_record(claim=claim_id, device=device, dtype=dtype, case="audit_cases",
                                        kind="instance", expected={"holds"}, status="error", error=failure,
                                        reproduce=f"import theorycheck as tc; list({cases_call})"))
                writer.write(done[-1])
                _print_unexpected(done[-1], out)
            for case in cases:
                if case.name in finished:
                    continue
                if budget and seconds >= budget and kinds_needed <= {r["kind"] for r in done}:
                    break
                progress.show(f"{claim_id} {device}/{dtype}", len(done), len(cases), seconds)
                record = run_case(case, claim=claim_id, device=device, dtype=dtype, seed=settings.seed)
                writer.write(record)
                done.append(record)
                seconds += record["seconds"]
                if record["outcome"] == "unexpected":
                    progress.clear()
                    _print_unexpected(record, out)
            progress.clear()
            print(_group_line(claim_id, device, dtype, done, len(cases), seconds, width), file=out, flush=True)
        writer.write({"record": "end", "time": now()})
    return write_reports(directory, read_results(path))


def prepare_directory(directory: Path, *, resume: bool) -> None:
    """Check that ``directory`` can hold an audit before anything runs; never touch what is there."""
    directory = Path(directory)
    if resume:
        read_results(directory / RESULTS)  # validates; the error names the bad line
    elif (directory / RESULTS).exists():
        raise InvalidArgument(f"expected an output directory without an audit in it, but {directory} already "
                              f"holds {RESULTS}. Fix: --resume {directory} to continue that audit, or "
                              "--out NEWDIR for a new one (nothing was changed).")
    ensure_writable_directory(directory)
