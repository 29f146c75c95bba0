"""Merging ``theorycheck audit --shard K/N`` runs into the results of the unsharded audit.

``--shard K/N`` keeps the planned cases whose id hashes to K (:func:`theorycheck.harness.plan.in_shard`);
each case re-seeds from its own id, so shard 1..N together run exactly the unsharded audit's cases
with the same verdicts. :func:`merge_shards` refuses shards of different settings, seeds or versions,
and overlapping or missing shards, naming them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .audit import check_consistent, fresh_plan, group_record
from .plan import AuditSettings, planned_groups
from ..core.errors import InvalidArgument
from ..report import RESULTS, read_results, write_reports
from ..report.folder import FolderLock, check_output_folder
from ..report.records import VERSIONED, record_line, write_text_atomic
from ..report.summary import group_key


def _refuse(what: str, fix: str = "merge the N shards of one audit: same settings, seed and versions, "
                                  "--shard 1/N .. N/N once each") -> InvalidArgument:
    return InvalidArgument(f"expected the shards of one audit, but {what}. Fix: {fix}")


def _shard_of(directory: Path, records: list[dict]) -> tuple[AuditSettings, tuple[int, int]]:
    header = records[0]
    if header["source"] != "audit":
        raise _refuse(f"{directory} holds a {header['source']!r} report")
    settings = check_consistent(records, directory)
    if settings.shard is None:
        raise _refuse(f"{directory} holds an unsharded audit", "merge only runs of theorycheck audit --shard K/N")
    return settings, settings.shard


def load_shards(directories: Sequence[Path]) -> tuple[AuditSettings, list[list[dict]]]:
    """Read and check the shards; return the unsharded settings and each shard's records."""
    loaded = [(Path(d), read_results(Path(d) / RESULTS)) for d in directories]
    shards = [(d, records, *_shard_of(d, records)) for d, records in loaded]
    first_dir, first_records, first_settings, _ = shards[0]
    base = {**first_settings.to_dict(), "shard": None}
    versions = {k: (first_records[0]["environment"].get("versions") or {}).get(k) for k in VERSIONED}
    for directory, records, settings, _ in shards[1:]:
        differ = [f"{k} {v!r} in {directory} vs {base[k]!r} in {first_dir}"
                  for k, v in {**settings.to_dict(), "shard": None}.items() if v != base[k]]
        theirs = {k: (records[0]["environment"].get("versions") or {}).get(k) for k in VERSIONED}
        differ += [f"{k} {theirs[k]} in {directory} vs {versions[k]} in {first_dir}"
                   for k in VERSIONED if theirs[k] != versions[k]]
        if differ:
            raise _refuse("they differ: " + "; ".join(differ))
    counts = {n for *_, (_, n) in shards}
    if len(counts) > 1:
        raise _refuse(f"they split the audit into different numbers of shards {sorted(counts)}")
    [total] = counts
    owners: dict[int, list[Path]] = {}
    for directory, _, _, (k, _) in shards:
        owners.setdefault(k, []).append(directory)
    overlapping = {k: [str(d) for d in ds] for k, ds in owners.items() if len(ds) > 1}
    missing = [k for k in range(1, total + 1) if k not in owners]
    if overlapping or missing:
        raise _refuse(", ".join(filter(None, [
            overlapping and "overlapping shards " + "; ".join(f"{k}/{total} in {ds}" for k, ds in overlapping.items()),
            missing and f"missing shards {', '.join(f'{k}/{total}' for k in missing)}"])))
    return AuditSettings.from_dict({**base, "shard": None}), [records for _, records, *_ in shards]


def merged_records(settings: AuditSettings, shards: list[list[dict]]) -> list[dict[str, Any]]:
    """One results file: the header without the shard, each group's plan and cases in plan order."""
    header = {**shards[0][0], "settings": settings.to_dict(), "started": min(s[0].get("started") or "" for s in shards)}
    cases: dict[tuple, dict[str, dict]] = {}
    for records in shards:
        for record in records:
            if record["record"] == "case":
                cases.setdefault(group_key(record), {})[record["case"]] = record
    merged = [header]
    for key in planned_groups(settings):
        found = cases.get(key, {})
        plan = fresh_plan(key, settings) or sorted({n for records in shards for r in records
                                                     if r["record"] == "group" and group_key(r) == key
                                                     for n in r.get("cases") or []})
        merged.append(group_record(key, settings, plan))
        merged += [found[name] for name in plan if name in found]
    merged += [r for records in shards for r in records if r["record"] == "resume"]
    if all(any(r["record"] == "end" for r in records) for records in shards):
        merged.append(max((r for records in shards for r in records if r["record"] == "end"),
                          key=lambda r: r.get("time") or ""))
    return merged


def merge_shards(directories: Sequence[Path], out: Path) -> dict[str, Any]:
    """Merge shard directories into ``out`` (results.jsonl and the reports); return the report."""
    out = check_output_folder(out, "--out")
    settings, shards = load_shards(directories)
    records = merged_records(settings, shards)
    with FolderLock(out, "--out"):
        if (out / RESULTS).exists():
            raise InvalidArgument(f"expected an output directory without an audit in it, but {out} already holds "
                                  f"{RESULTS}. Fix: --out NEWDIR (nothing was changed).")
        write_text_atomic(out / RESULTS, "".join(map(record_line, records)))
        return write_reports(out, records)
