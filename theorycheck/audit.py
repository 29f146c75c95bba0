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
from .report.summary import group_key, reason_of
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
        result = case.run()
        if isinstance(result, Verdict):
            verdict = result.to_dict()
        else:
            error = f"the audit case returned {type(result).__name__}, expected a Verdict"
    except Exception:  # a checker must never raise on a false theorem: record the defect, go on
        error = traceback.format_exc(limit=-8)
    finally:
        torch.set_num_threads(threads)
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


def _generator_failure(claim_id: str, device: str, dtype: str, settings: AuditSettings, error: str) -> dict:
    """The case record for a claim whose ``audit_cases`` raised (a defect of the claim, exit code 1)."""
    call = (f"tc.CLAIMS[{claim_id!r}].audit_cases(n={settings.examples[claim_id]}, seed={settings.seed}, "
            f"device={device!r}, dtype={dtype!r})")
    return case_record(claim=claim_id, device=device, dtype=dtype, case="audit_cases", kind="instance",
                       expected={"holds"}, status="error", error=error, reproduce=f"import theorycheck as tc; list({call})")


def _run_group(key: tuple[str, str, str], settings: AuditSettings, writer: ResultsWriter, done: list[dict], *,
               write_plan: bool, progress: Progress, out: TextIO) -> tuple[int, float]:
    """Run the unfinished cases of one claim x device x dtype (appending to ``done``) until all ran or
    the budget is spent; return the number of planned cases and the seconds spent on the group."""
    claim_id, device, dtype = key
    try:
        cases, failure = _planned_cases(claim_id, device, dtype, settings), None
    except Exception:  # the claim's case generator itself failed
        cases, failure = [], traceback.format_exc(limit=-8)
    planned = len(cases) or int(failure is not None)
    if write_plan:
        writer.write({"record": "group", "claim": claim_id, "device": device, "dtype": dtype, "planned": planned})
    finished = {r["case"] for r in done}

    def keep(record: dict) -> float:
        writer.write(record)
        done.append(record)
        if record["outcome"] == "unexpected":
            progress.clear()
            _print_unexpected(record, out)
        return record["seconds"]

    if failure and "audit_cases" not in finished:
        keep(_generator_failure(*key, settings, failure))
    budget, seconds = float(settings.budget.get(claim_id, 0)), sum(r["seconds"] for r in done)
    kinds_needed = {c.kind for c in cases}
    for case in cases:
        if case.name in finished:
            continue
        if budget and seconds >= budget and kinds_needed <= {r["kind"] for r in done}:
            break
        progress.show(f"{claim_id} {device}/{dtype}", len(done), len(cases), seconds)
        seconds += keep(run_case(case, claim=claim_id, device=device, dtype=dtype, seed=settings.seed))
    progress.clear()
    return planned, seconds


def run_audit(settings: AuditSettings | None, directory: Path, *, resume: bool = False,
              out: TextIO | None = None, err: TextIO | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue with the recorded settings) the audit in ``directory``;
    write the reports. Returns the report document (``report["summary"]["exit_code"]`` is 0 or 1)."""
    directory, out = Path(directory), out or sys.stdout
    path = directory / RESULTS
    records = read_results(path, repair_torn_tail=True) if resume else []
    settings = AuditSettings.from_dict(records[0]["settings"]) if resume else settings
    progress = Progress(err or sys.stderr)
    with ResultsWriter(path) as writer:
        if resume:
            writer.write({"record": "resume", "time": now(), "environment": environment(settings.devices)})
        else:
            writer.write({"record": "header", "schema_version": SCHEMA_VERSION, "source": "audit", "started": now(),
                          "settings": settings.to_dict(), "environment": environment(settings.devices),
                          "claims": {c: CLAIMS[c].to_dict() for c in settings.claims}})
        done: dict[tuple, list] = {}
        for record in records:
            if record["record"] == "case":
                done.setdefault(group_key(record), []).append(record)
        planned = {group_key(r) for r in records if r["record"] == "group"}
        width = max(map(len, settings.claims))
        for key in _groups(settings):
            group = done.setdefault(key, [])
            total, seconds = _run_group(key, settings, writer, group, write_plan=key not in planned,
                                        progress=progress, out=out)
            print(_group_line(*key, group, total, seconds, width), file=out, flush=True)
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
