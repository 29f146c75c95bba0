"""``report.md``: a short Markdown page that fits a CI job summary (``$GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core.verdict import STATUSES
from .summary import report_result

MAX_COUNTEREXAMPLES = 10  # per claim x device x dtype; report.json and results.jsonl hold them all


def fmt(value, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def status_counts(group: Mapping[str, Any]) -> dict[str, int]:
    """Counts by status over the non-control cases (instances, or the verdicts of a test session)."""
    totals = {s: 0 for s in STATUSES}
    for kind, counts in group["by_status"].items():
        if kind != "control":
            for status, n in counts.items():
                totals[status] = totals.get(status, 0) + n
    return totals


def controls_caught(group: Mapping[str, Any]) -> str:
    controls = sum(group["by_status"].get("control", {}).values())
    if not controls:
        return "–"
    missed = sum(1 for c in group["counterexamples"] if c["kind"] == "control")
    return f"{controls - missed}/{controls}"


def setting_text(key: str, value) -> str:
    """``[a, b]`` -> ``a,b``; a per-claim dict with one value -> that value, else ``claim=value,...``; a budget
    of 0 everywhere -> ``none`` (no cap)."""
    if key == "budget" and isinstance(value, Mapping) and not any(value.values()):
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        values = set(map(str, value.values()))
        return values.pop() if len(values) == 1 else ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def headline(report: Mapping[str, Any]) -> str:
    """``PASS``, ``FAIL: n counterexample(s)`` or ``INCOMPLETE`` (a planned case did not run, or none ran)."""
    summary = report["summary"]
    word = report_result(report)
    if word == "FAIL":
        word = f"FAIL: {summary['counterexamples']} counterexample(s)"
    elif word == "INCOMPLETE":
        word = f"INCOMPLETE: {incomplete_reason(report)}"
    return f"theorycheck {'audit' if report['source'] == 'audit' else 'verdicts'}: {word}"


def incomplete_reason(report: Mapping[str, Any]) -> str:
    summary, parts = report["summary"], []
    if summary["not_run"]:
        parts.append(f"{summary['not_run']} of {summary['cases'] + summary['not_run']} planned cases not run")
    if not report["complete"]:
        parts.append("interrupted")
    if not summary["cases"]:
        parts.append("no cases")
    return ", ".join(parts)


def context_line(report: Mapping[str, Any]) -> str:
    env, settings, summary = report["environment"], report["settings"], report["summary"]
    wall = summary.get("wall_seconds")
    parts = [f"{summary['cases']} cases" + (f" in {wall:.1f} s wall time" if wall is not None else "")
             + f" ({summary['seconds']:.1f} s summed over the cases)"]
    parts += [f"{k} {setting_text(k, v)}" for k, v in settings.items()
              if k in ("seed", "examples", "budget", "devices", "dtypes", "profile")]
    git = env.get("git") or {}
    if git.get("commit"):
        parts.append(f"commit {git['commit'][:10]}{' (dirty)' if git.get('dirty') else ''}"
                     + (f" of the {git['of']}" if git.get("of") else ""))
    versions = env.get("versions", {})
    parts += [f"torch {versions.get('torch')}", *version_changes(report), f"Python {env.get('python')}",
              (env.get("machine") or {}).get("platform", "")]
    return " · ".join(p for p in parts if p)


def version_changes(report: Mapping[str, Any]) -> list[str]:
    """``resumed with torch 2.13.0 (started with 2.12.0)`` for each version a forced resume changed."""
    from .records import VERSIONED

    started = report["environment"].get("versions") or {}
    changes = {}
    for resume in report.get("resumed", []):
        now = (resume.get("environment") or {}).get("versions") or {}
        changes.update({k: f"resumed with {k} {now.get(k)} (started with {started.get(k)})"
                        for k in VERSIONED if now.get(k) != started.get(k)})
    return list(changes.values())


def completeness(report: Mapping[str, Any]) -> str:
    notes = []
    if not report["complete"] and report["source"] == "audit":
        notes.append("**Incomplete**: the audit was interrupted; continue it with `theorycheck audit --resume DIR`.")
    if report["summary"]["not_run"]:
        notes.append(f"{report['summary']['not_run']} planned case(s) not run (time budget or interruption).")
    if not report["summary"]["cases"]:
        notes.append("No cases were recorded: nothing was checked.")
    return " ".join(notes)


def minimal_of(entry) -> dict | None:
    """A counterexample's shrunk example, when the audit found one (not an error of the shrink)."""
    minimal = entry.get("minimal")
    return minimal if minimal and "params" in minimal else None


def render_markdown(report: Mapping[str, Any]) -> str:
    lines = [f"# {headline(report)}", "", context_line(report), ""]
    if completeness(report):
        lines += [completeness(report), ""]
    head = ["claim", "device", "dtype", *STATUSES, "controls caught", "unexpected", "not run",
            "worst statistic/allowance", "time", "result"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    failures = []
    for claim_id, claim in report["claims"].items():
        for group in claim["results"]:
            counts = status_counts(group)
            worst = group["worst_instance"]
            lines.append("| " + " | ".join([
                f"`{claim_id}`", group["device"], group["dtype"], *(str(counts[s]) for s in STATUSES),
                controls_caught(group), str(group["by_outcome"]["unexpected"]), str(group["not_run"]),
                fmt(worst and worst["ratio"]), f"{group['seconds']:.1f} s",
                "**FAIL**" if not group["ok"] else "incomplete" if group["not_run"] else "pass"]) + " |")
            if group["counterexamples"]:
                failures.append((claim_id, group))
    if failures:
        lines += ["", "## Counterexamples", ""]
    for claim_id, group in failures:
        shown = group["counterexamples"][:MAX_COUNTEREXAMPLES]
        lines += [f"### `{claim_id}` on {group['device']}/{group['dtype']} "
                  f"({len(group['counterexamples'])}, {len(shown)} shown)", ""]
        for c in shown:
            expected = "/".join(c["expected"]) if c["expected"] else "a passing test"
            numbers = (f"statistic {fmt(c['statistic'])} vs bound {fmt(c['bound'])} + tolerance {fmt(c['tolerance'])}"
                       + (f"; {c['reason']}" if c["reason"] else ""))
            m = minimal_of(c)
            if not m:
                lines += [f"- `{c['case']}` ({c['kind']}): expected {expected}, got **{c['status']}**; {numbers}", "",
                          "  ```", f"  {c['reproduce']}", "  ```"]
                continue
            lines += [f"- `{c['case']}` ({c['kind']}): expected {expected}, got **{c['status']}**",
                      f"  - minimal counterexample (shrunk by Hypothesis: {m['examples']} step(s), {m['seconds']:.1f} s"
                      f"{'' if m['complete'] else ', cut at its time budget'}): **{m['status']}**, size {m['size']}, "
                      f"`{m['params']}`" + (f"; {m['reason']}" if m["reason"] else ""), "", "    ```",
                      f"    {m['reproduce']}", "    ```", f"  - original: {numbers}", "", "    ```",
                      f"    {c['reproduce']}", "    ```"]
    lines += ["", "Statuses: holds (assumptions met, conclusion within tolerance), violated, vacuous (an "
              "assumption not met), inconclusive (numerics could not decide). Controls are negative controls: "
              "caught = the checker did not report holds. Full data: report.json, results.jsonl "
              "(schema: theorycheck/report/SCHEMA.md).", ""]
    return "\n".join(lines)
