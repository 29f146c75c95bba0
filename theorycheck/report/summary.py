"""``report.json``: the records of ``results.jsonl`` summarized per claim x device x dtype (SCHEMA.md)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.verdict import STATUSES
from .records import OUTCOMES, SCHEMA_VERSION, now

REPORT_SCHEMA = "theorycheck-report"
STATUS_COLUMNS = STATUSES + ("error",)  # "error": the checker raised (a defect, never a verdict)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def measured(record: Mapping[str, Any]) -> dict[str, float]:
    """statistic, bound, tolerance of a case record and ``ratio`` = statistic / (bound + tolerance)."""
    verdict = record.get("verdict") or {}
    values = {name: _number(verdict.get(name)) for name in ("statistic", "bound", "tolerance")}
    allowance = values["bound"] + values["tolerance"]
    finite = math.isfinite(values["statistic"]) and math.isfinite(allowance) and allowance > 0
    values["ratio"] = values["statistic"] / allowance if finite else math.nan
    return values


def _json_float(value: float):
    return value if math.isfinite(value) else None


def _case_entry(record: Mapping[str, Any]) -> dict[str, Any]:
    verdict = record.get("verdict") or {}
    numbers = {k: _json_float(v) for k, v in measured(record).items()}
    return {"case": record["case"], "kind": record["kind"], "expected": record["expected"],
            "status": record["status"], **numbers, "tolerance_basis": verdict.get("tolerance_basis", ""),
            "reason": reason_of(record), "reproduce": record["reproduce"], "minimal": record.get("minimal")}


def reason_of(record: Mapping[str, Any]) -> str:
    """The verdict's reason, the last line of the error a checker raised, or what an uncaught control means."""
    lines = (record.get("error") or "").strip().splitlines()
    uncaught = record.get("kind") == "control" and record.get("status") == "holds"
    return ((record.get("verdict") or {}).get("reason") or (lines[-1] if lines else "")
            or ("negative control not caught: the checker reported holds" if uncaught else ""))


def group_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return record["claim"], record["device"], record["dtype"]


def summarize_group(cases: list[Mapping[str, Any]], planned: int | None) -> dict[str, Any]:
    """Counts, extremes and counterexamples of one claim x device x dtype."""
    by_status: dict[str, Counter] = {}
    for record in cases:
        by_status.setdefault(record["kind"], Counter())[record["status"]] += 1
    outcomes = Counter(record["outcome"] for record in cases)
    ranked = [(measured(r)["ratio"], r) for r in cases]
    instances = [(ratio, r) for ratio, r in ranked if r["kind"] != "control" and math.isfinite(ratio)]
    controls = [(ratio, r) for ratio, r in ranked if r["kind"] == "control" and math.isfinite(ratio)]
    planned = len(cases) if planned is None else planned
    return {
        "planned": planned, "run": len(cases), "not_run": max(planned - len(cases), 0),
        "seconds": round(sum(r["seconds"] for r in cases), 3),
        "by_status": {kind: {s: counts.get(s, 0) for s in STATUS_COLUMNS if counts.get(s, 0) or s in STATUSES}
                      for kind, counts in sorted(by_status.items())},
        "by_outcome": {o: outcomes.get(o, 0) for o in OUTCOMES},
        "worst_instance": _case_entry(max(instances, key=lambda p: p[0])[1]) if instances else None,
        "weakest_control": _case_entry(min(controls, key=lambda p: p[0])[1]) if controls else None,
        "counterexamples": [_case_entry(r) for r in cases if r["outcome"] == "unexpected"],
        "ok": outcomes.get("unexpected", 0) == 0,
    }


EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCOMPLETE": 3}  # a report without any case exits 1


def result_of(unexpected: int, cases: int, not_run: int, complete: bool) -> str:
    """``FAIL`` on any unexpected outcome; ``INCOMPLETE`` when a planned case did not run (time budget,
    interruption) or nothing ran; else ``PASS``."""
    if unexpected:
        return "FAIL"
    return "INCOMPLETE" if not_run or not complete or not cases else "PASS"


def report_result(report: Mapping[str, Any]) -> str:
    """``PASS``, ``FAIL`` or ``INCOMPLETE`` for a ``report.json`` document (see :func:`result_of`)."""
    summary = report["summary"]
    return result_of(summary["counterexamples"], summary["cases"], summary["not_run"], report["complete"])


def group_cases(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], list]:
    """The case records of each claim x device x dtype, in file order."""
    cases_by_group: dict[tuple[str, str, str], list] = {}
    for record in records:
        if record["record"] == "case":
            cases_by_group.setdefault(group_key(record), []).append(record)
    return cases_by_group


def build_report(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``report.json`` document for the records of one ``results.jsonl`` (header first)."""
    records = list(records)
    header = records[0]
    cases = [r for r in records if r["record"] == "case"]
    planned = {group_key(r): r["planned"] for r in records if r["record"] == "group"}
    groups: dict[tuple[str, str, str], list] = {key: [] for key in planned}
    for record in cases:
        groups.setdefault(group_key(record), []).append(record)
    metadata = header.get("claims", {})
    claims: dict[str, Any] = {}
    for (claim, device, dtype), members in groups.items():
        entry = claims.setdefault(claim, {**{k: v for k, v in metadata.get(claim, {"id": claim}).items()},
                                          "results": []})
        entry["results"].append({"device": device, "dtype": dtype,
                                 **summarize_group(members, planned.get((claim, device, dtype)))})
    statuses = Counter(r["status"] for r in cases)
    outcomes = Counter(r["outcome"] for r in cases)
    ends = [r for r in records if r["record"] == "end"]
    complete = bool(ends)
    not_run = sum(g["not_run"] for c in claims.values() for g in c["results"])
    result = result_of(outcomes.get("unexpected", 0), len(cases), not_run, complete)
    return {
        "schema": REPORT_SCHEMA, "schema_version": SCHEMA_VERSION, "generated": now(),
        "source": header.get("source", "audit"),
        "started": header.get("started"),
        "complete": complete,
        "environment": header.get("environment", {}),
        "resumed": [{"time": r.get("time"), "environment": r.get("environment")} for r in records
                    if r["record"] == "resume"],
        "settings": header.get("settings", {}),
        "summary": {"ok": result == "PASS",
                    "exit_code": EXIT_CODES[result] if cases else 1, "cases": len(cases),
                    "not_run": not_run,
                    "seconds": round(sum(r["seconds"] for r in cases), 3),
                    "wall_seconds": ends[-1].get("wall_seconds") if ends else None,
                    "by_status": {s: statuses.get(s, 0) for s in STATUS_COLUMNS if s in STATUSES or statuses.get(s)},
                    "by_outcome": {o: outcomes.get(o, 0) for o in OUTCOMES},
                    "counterexamples": outcomes.get("unexpected", 0)},
        "claims": claims,
    }
