"""The audit runner: every registered claim's audit cases (instances and negative controls) per
device x dtype, each verdict appended to ``results.jsonl`` the moment it is decided.

A case's verdict depends only on (seed, claim, device, dtype, case name): the global RNGs are
re-seeded from those before each case, so an interrupted audit continued with ``resume=True`` gives
the same verdicts as an uninterrupted one. Every planned case runs unless a time budget per claim x
device x dtype is asked for (opt-in): it stops a group early (instances and controls are interleaved,
so the cases that ran are a balanced prefix) and the report counts the cases not run.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ..core.errors import InvalidArgument, expect
from ..core.registry import CLAIMS
from ..report import RESULTS, SCHEMA_VERSION, ResultsWriter, case_record, environment, read_results, write_reports
from ..report.records import check_writable_directory, now
from ..report.summary import group_cases, group_key, reason_of
from .plan import AuditSettings, in_shard, planned_cases, planned_groups, run_case
from .workers import CaseWorkers, unreachable


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


def group_record(key: tuple[str, str, str], settings: AuditSettings, names: list[str]) -> dict[str, Any]:
    """The plan of one claim x device x dtype: its settings and the names of its planned cases."""
    claim_id, device, dtype = key
    return {"record": "group", "claim": claim_id, "device": device, "dtype": dtype, "planned": len(names),
            "seed": settings.seed, "examples": settings.examples[claim_id], "budget": settings.budget[claim_id],
            "cases": names}


def _plan(key: tuple[str, str, str], settings: AuditSettings) -> tuple[list, str | None]:
    """The planned cases of one claim x device x dtype, and the traceback if its generator failed."""
    try:
        cases, failure = planned_cases(*key, settings), None
    except Exception:  # the claim's case generator itself failed
        cases, failure = [], traceback.format_exc(limit=-8)
    return cases, (failure if in_shard(settings.shard, *key, "audit_cases") else None)


def _names(plan: tuple[list, str | None]) -> list[str]:
    cases, failure = plan
    return [c.name for c in cases] or (["audit_cases"] if failure else [])


def _run_group(key: tuple[str, str, str], plan: tuple[list, str | None], settings: AuditSettings,
               writer: ResultsWriter, done: list[dict], *, progress: Progress, out: TextIO,
               submitted: dict | None = None) -> tuple[int, float]:
    """Run the unfinished cases of one claim x device x dtype (appending to ``done``) until all ran or
    the budget is spent; return the number of planned cases and the seconds spent on the group.
    ``submitted``: {case name: Future} of the cases already sent to the worker processes, recorded here in
    plan order (not with a budget, which needs each case's time before the next starts)."""
    claim_id, device, dtype = key
    cases, failure = plan
    planned = len(cases) or int(failure is not None)
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
    for case in (case for case in cases if case.name not in finished):
        if submitted is None and budget and seconds >= budget and kinds_needed <= {r["kind"] for r in done}:
            break
        progress.show(f"{claim_id} {device}/{dtype}", len(done), len(cases), seconds)
        seconds += keep(submitted[case.name].result() if submitted is not None else
                        run_case(case, claim=claim_id, device=device, dtype=dtype, seed=settings.seed))
    progress.clear()
    return planned, seconds


def _keep_finished(groups, plans, submitted, settings, writer) -> None:
    """After an interruption: the cases the workers finished but the file does not hold yet (each after its
    group's plan record), so that a resumed audit does not run them again. What is recorded is read from the
    file itself: the interruption may have come between a line's write and its bookkeeping, or in a write."""
    records = read_results(writer.path, repair_torn_tail=True)
    recorded, planned = group_cases(records), {group_key(r) for r in records if r["record"] == "group"}
    for key in groups:
        finished = {r["case"] for r in recorded.get(key, [])}
        ready = [f.result() for name, f in submitted.get(key, {}).items()
                 if name not in finished and f.done() and not f.cancelled() and f.exception() is None]
        if ready and key not in planned:
            writer.write(group_record(key, settings, _names(plans[key])))
        for record in ready:
            writer.write(record)


def run_audit(settings: AuditSettings | None, directory: Path, *, resume: bool = False,
              out: TextIO | None = None, err: TextIO | None = None, jobs: int = 1,
              imports: Sequence[str] = (), commit_from: Path | None = None) -> dict[str, Any]:
    """Run (or, with ``resume``, continue with the recorded settings) the audit in ``directory``;
    write the reports. Returns the report document (``report["summary"]["exit_code"]``: 0, 1 or 3).
    ``commit_from``: the audited project, whose git commit is recorded (else the working directory's).
    A resumed results file must agree with its header (:func:`check_consistent`). ``jobs`` > 1 runs the
    cases in that many worker processes (:mod:`theorycheck.harness.workers`), which import ``imports``
    (the user's claim modules) first; the records are the same as with one."""
    expect(isinstance(jobs, int) and jobs >= 1, expected="jobs >= 1 (an int)", received=repr(jobs),
           fix="jobs=1 to run every case in this process")
    start = time.perf_counter()
    directory, out = Path(directory), out or sys.stdout
    path = directory / RESULTS
    records = read_results(path) if resume else []
    settings = check_consistent(records, directory) if resume else settings
    if resume:
        read_results(path, repair_torn_tail=True)  # only now: a refused resume changes nothing
    directory.mkdir(parents=True, exist_ok=True)
    progress = Progress(err or sys.stderr)
    missing = unreachable(settings.claims, imports) if jobs > 1 else []
    if missing:
        print(f"running every case in this process: worker processes would not have the claims {missing} "
              "(declare them in a module and pass --import MODULE)", file=err or sys.stderr)
        jobs = 1
    workers = CaseWorkers(jobs, imports) if jobs > 1 else None
    with ResultsWriter(path) as writer, workers or contextlib.nullcontext():
        if resume:
            writer.write({"record": "resume", "time": now(),
                          "environment": environment(settings.devices, commit_from)})
        else:
            writer.write({"record": "header", "schema_version": SCHEMA_VERSION, "source": "audit", "started": now(),
                          "settings": settings.to_dict(), "environment": environment(settings.devices, commit_from),
                          "claims": {c: CLAIMS[c].to_dict() for c in settings.claims}})
        done = group_cases(records)
        planned = {group_key(r) for r in records if r["record"] == "group"}
        width = max(map(len, settings.claims))
        groups = list(planned_groups(settings))
        plans = {key: _plan(key, settings) for key in groups}
        submitted: dict[tuple, dict] = {}
        index = 0
        try:
            for key in groups if workers is not None else ():  # every unbudgeted group's cases at once: no
                if not settings.budget.get(key[0]):               # core idles between groups
                    finished = {r["case"] for r in done.get(key, [])}
                    submitted[key] = {c.name: workers.submit(key, settings.to_dict(), c)
                                      for c in plans[key][0] if c.name not in finished}
            for index, key in enumerate(groups):
                if key not in planned:
                    writer.write(group_record(key, settings, _names(plans[key])))
                    planned.add(key)
                group = done.setdefault(key, [])
                total, seconds = _run_group(key, plans[key], settings, writer, group, progress=progress, out=out,
                                            submitted=submitted.get(key))
                print(_group_line(*key, group, total, seconds, width), file=out, flush=True)
        except KeyboardInterrupt:  # keep what the workers finished: this group's rest and later groups'
            _keep_finished(groups[index:], plans, submitted, settings, writer)
            raise
        writer.write({"record": "end", "time": now(), "wall_seconds": round(time.perf_counter() - start, 3)})
        records = read_results(path)
        plots = _plots_from(workers, records)
    return write_reports(directory, records, plots)


def _plots_from(workers: CaseWorkers | None, records: list[dict]) -> dict | None:
    """The report's plots drawn by the workers, or None (then drawn in this process, where a plotting error
    raises as itself): workers that broke after the last case must not cost the report."""
    if workers is None:
        return None
    try:
        return workers.plots(group_cases(records))
    except Exception:  # a broken pool or a plot that failed: drawn again in this process
        return None


def _inconsistent(directory: Path, what: str) -> InvalidArgument:
    return InvalidArgument(f"expected the records of {directory / RESULTS} to match its header, but {what}. "
                           "Fix: restore the file, or audit afresh with --out NEWDIR (or --replace).")


def check_consistent(records: list[dict[str, Any]], directory: Path) -> AuditSettings:
    """The settings of an audit's results file, after checking that every group and case record
    belongs to them: the header's claims, devices and dtypes, its seed and examples, and the plan
    the claims generate now (an edited seed or appended foreign records are refused, named)."""
    settings = AuditSettings.from_dict(records[0]["settings"])
    groups = set(planned_groups(settings))
    plans: dict[tuple, list] = {}
    seen: set[tuple] = set()
    for record in records[1:]:
        if record["record"] not in ("group", "case"):
            continue
        key = group_key(record)
        if key not in groups:
            raise _inconsistent(directory, f"a {record['record']} record is for {'/'.join(key)}, outside the "
                                f"header's claims {list(settings.claims)}, devices {list(settings.devices)} and "
                                f"dtypes {list(settings.dtypes)}")
        if record["record"] == "group":
            recorded = {k: record.get(k) for k in ("seed", "examples", "budget")}
            header = {"seed": settings.seed, "examples": settings.examples[key[0]], "budget": settings.budget[key[0]]}
            differ = [f"{k} {recorded[k]!r} (header: {header[k]!r})" for k in header if recorded[k] != header[k]]
            if differ:
                raise _inconsistent(directory, f"the group {'/'.join(key)} was planned with {', '.join(differ)}")
            plans[key] = list(record.get("cases") or [])
            fresh = fresh_plan(key, settings)
            if fresh is not None and fresh != plans[key]:
                extra, lacking = sorted(set(plans[key]) - set(fresh)), sorted(set(fresh) - set(plans[key]))
                raise _inconsistent(directory, f"the plan of {'/'.join(key)} differs from the cases its claim "
                                    f"generates now (recorded only: {extra[:5]}, generated only: {lacking[:5]})")
        elif key not in plans or record["case"] not in plans[key]:
            raise _inconsistent(directory, f"the case {record['case']!r} of {'/'.join(key)} is not in its "
                                "group's plan")
        elif (key, record["case"]) in seen:
            raise _inconsistent(directory, f"the case {record['case']!r} of {'/'.join(key)} is recorded twice")
        else:
            seen.add((key, record["case"]))
    return settings


def fresh_plan(key: tuple[str, str, str], settings: AuditSettings) -> list[str] | None:
    """The case names a claim generates now for ``key`` (None when its generator fails)."""
    try:
        return [c.name for c in planned_cases(*key, settings)]
    except Exception:  # recorded as an error case when the group runs
        return None


def prepare_directory(directory: Path, *, resume: bool, replace: bool = False) -> None:
    """Check that ``directory`` can hold an audit before anything runs; create and change nothing
    (``replace``: an audit already there may be replaced, see :func:`clear_audit`)."""
    directory = Path(directory)
    if resume:
        read_results(directory / RESULTS)  # validates; the error names the bad line
    elif (directory / RESULTS).exists() and not replace:
        raise InvalidArgument(f"expected an output directory without an audit in it, but {directory} already "
                              f"holds {RESULTS}. Fix: --resume {directory} to continue that audit, --replace to "
                              "replace it, or --out NEWDIR for a new one (nothing was changed).")
    check_writable_directory(directory)


REPORT_FILES = (RESULTS, "report.json", "report.md", "report.html")


def clear_audit(directory: Path) -> None:
    """Remove the files of a previous audit or report from ``directory`` (``--replace``); nothing else."""
    for name in REPORT_FILES:
        (Path(directory) / name).unlink(missing_ok=True)
