"""``report.html``: one self-contained page (inline CSS and SVG plots; no scripts, no network)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..core.verdict import STATUSES
from .markdown import (completeness, context_line, controls_caught, fmt, headline, minimal_of, setting_text,
                       status_counts, version_changes)
from .plots import Plot, measurement_plot, series_plot, slug
from .summary import group_cases

MAX_COUNTEREXAMPLES = 20  # per claim x device x dtype

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1150px; color: #1b1b1b; padding: 0 16px; }
h1 { font-size: 24px; padding: 10px 14px; border-radius: 6px; }
h1.pass { background: #e8f5e9; color: #1b5e20; } h1.fail { background: #ffebee; color: #b71c1c; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 32px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pass { color: #1b5e20; font-weight: 600; } td.fail { color: #b71c1c; font-weight: 700; }
code { font-size: 12px; background: #f5f5f5; padding: 1px 3px; border-radius: 3px; word-break: break-all; }
.muted { color: #666; } figure { margin: 8px 0; } figure svg { max-width: 100%; height: auto; }
figcaption, .note { color: #666; font-size: 12px; margin: 2px 0 8px; } .note { color: #8a5a00; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _row(cells: Sequence[str], header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(c if c.startswith("<td") else f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def _summary_table(report: Mapping[str, Any]) -> str:
    head = ["claim", "device", "dtype", *STATUSES, "controls caught", "unexpected", "worst statistic/allowance",
            "time", "result"]
    rows = [_row(head, header=True)]
    for claim_id, claim in report["claims"].items():
        for group in claim["results"]:
            counts, worst = status_counts(group), group["worst_instance"]
            anchor = slug(f"{claim_id}-{group['device']}-{group['dtype']}")
            rows.append(_row([f'<a href="#{anchor}">{_e(claim_id)}</a>', _e(group["device"]), _e(group["dtype"]),
                              *(f'<td class="num">{counts[s]}</td>' for s in STATUSES),
                              f'<td class="num">{controls_caught(group)}</td>',
                              f'<td class="num">{group["by_outcome"]["unexpected"]}</td>',
                              f'<td class="num">{fmt(worst and worst["ratio"])}</td>',
                              f'<td class="num">{group["seconds"]:.1f} s</td>',
                              '<td class="pass">pass</td>' if group["ok"] else '<td class="fail">FAIL</td>']))
    return "<table>" + "".join(rows) + "</table>"


def _environment_table(report: Mapping[str, Any]) -> str:
    env, settings = report["environment"], report["settings"]
    git = env.get("git") or {}
    items = [(f"setting: {k}", setting_text(k, v)) for k, v in settings.items()]
    items += [("machine", ", ".join(f"{k} {v}" for k, v in (env.get("machine") or {}).items() if v)),
              ("python", env.get("python")),
              ("versions", ", ".join(f"{k} {v}" for k, v in (env.get("versions") or {}).items() if v)),
              ("git", git and f"{git['commit']}{' (uncommitted changes)' if git.get('dirty') else ''}"
                      + (f" of the {git['of']} {git.get('path', '')}" if git.get("of") else "")),
              ("versions changed", "; ".join(version_changes(report)) or None),
              ("cuda", env.get("cuda")), ("started", report.get("started")),
              ("resumed", len(report.get("resumed", [])) or None), ("generated", report["generated"])]
    return "<table>" + "".join(_row([_e(k), f"<code>{_e(v)}</code>"]) for k, v in items if v not in (None, "")) \
        + "</table>"


def _counterexamples(group: Mapping[str, Any], source: str) -> str:
    found = group["counterexamples"]
    if not found:
        return '<p class="muted">' + ("No verdicts in failing tests." if source == "pytest" else
                                      "No counterexamples: every instance held or was inconclusive, every "
                                      "control was caught.") + "</p>"
    head = _row(["case", "expected", "got", "statistic", "bound", "tolerance", "reason / reproduce"], header=True)
    rows = []
    for c in found[:MAX_COUNTEREXAMPLES]:
        m = minimal_of(c)
        if m:  # the minimal counterexample first, then the original
            rows.append(_row([f"{_e(c['case'])} <b>minimal</b>", _e("/".join(c["expected"] or ["a passing test"])),
                              f"<b>{_e(m['status'])}</b>", f'<td class="num">{fmt(m["statistic"])}</td>', "", "",
                              f"size {m['size']}: <code>{_e(m['params'])}</code> (shrunk by Hypothesis, "
                              f"{m['examples']} step(s), {m['seconds']:.1f} s); {_e(m['reason'])}<br>"
                              f"<code>{_e(m['reproduce'])}</code>"]))
        rows.append(_row([_e(c["case"]) + (" original" if m else ""), _e("/".join(c["expected"] or ["a passing test"])),
                          f"<b>{_e(c['status'])}</b>",
                          *(f'<td class="num">{fmt(c[k])}</td>' for k in ("statistic", "bound", "tolerance")),
                          f"{_e(c['reason'])}<br><code>{_e(c['reproduce'])}</code>"]))
    more = f'<p class="muted">{len(found) - MAX_COUNTEREXAMPLES} more in report.json.</p>' \
        if len(found) > MAX_COUNTEREXAMPLES else ""
    return f"<h4>Counterexamples ({len(found)})</h4><table>{head}{''.join(rows)}</table>{more}"


def _figure(plot: Plot) -> str:
    """The plot with its caption and notes; only the notes when nothing is drawable."""
    notes = "".join(f'<p class="note">Note: {_e(n)}.</p>' for n in plot.notes)
    if plot.svg is None:
        return notes
    caption = f"<figcaption>{_e(plot.caption)}</figcaption>" if plot.caption else ""
    return f"<figure>{plot.svg}{caption}</figure>{notes}"


def group_plots(key: tuple[str, str, str], cases: Sequence[Mapping[str, Any]]) -> tuple[Plot, Plot]:
    """The measurement and series plots of one claim x device x dtype (SVG ids salted by its anchor)."""
    anchor = slug("-".join(key))
    return measurement_plot(cases, anchor), series_plot(cases, anchor + "-series")


def _claim_section(claim_id: str, claim: Mapping[str, Any], cases_by_group: Mapping, source: str,
                   plots: Mapping) -> str:
    parts = [f'<section id="{slug(claim_id)}"><h2>{_e(claim_id)}</h2>']
    if claim.get("statement"):
        parts.append(f"<p>{_e(claim['statement'])}</p>")
    if claim.get("source"):
        parts.append(f'<p class="muted">Source: {_e(claim["source"])}</p>')
    if claim.get("assumptions"):
        parts.append("<p>Assumptions:</p><ul>" + "".join(f"<li>{_e(a)}</li>" for a in claim["assumptions"]) + "</ul>")
    if claim.get("tolerance"):
        parts.append(f'<p class="muted">Tolerance: {_e(claim["tolerance"])}</p>')
    for group in claim["results"]:
        key = (claim_id, group["device"], group["dtype"])
        cases, anchor = cases_by_group.get(key, []), slug("-".join(key))
        result = "pass" if group["ok"] else "FAIL"
        parts.append(f'<h3 id="{anchor}">{_e(group["device"])} / {_e(group["dtype"])}: {result} '
                     f'<span class="muted">({group["run"]} cases, {group["seconds"]:.1f} s'
                     + (f", {group['not_run']} not run" if group["not_run"] else "") + ")</span></h3>")
        parts += [_figure(plot) for plot in (plots.get(key) or group_plots(key, cases))]
        parts.append(_counterexamples(group, source))
    return "".join(parts) + "</section>"


def render_html(report: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                plots: Mapping[tuple, tuple[Plot, Plot]] | None = None) -> str:
    """The page; ``plots``: the :func:`group_plots` of some groups, already drawn (the others are drawn here)."""
    cases_by_group = group_cases(records)
    title = headline(report)
    notes = completeness(report)
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f'<h1 class="{"pass" if report["summary"]["ok"] else "fail"}">{_e(title)}</h1>',
        f"<p>{_e(context_line(report))}</p>", f"<p><b>{_e(notes)}</b></p>" if notes else "",
        _summary_table(report),
        '<p class="muted">Plots: each point is one case (circle: instance, cross: negative control), coloured by '
        "status. Left: the measured statistic against its allowance (bound + tolerance); points above the dashed "
        "line exceed it. Right: statistic / allowance against the instance size. On these log axes a statistic "
        "at or below 0 is drawn in the grey band labelled &lt;= 0, beneath every positive value and so below "
        "the allowance line. Where an allowance is below 0 (a signed statistic, such as a fitted slope "
        "against -1/2), the axes are linear and the right panel shows statistic - allowance (at or below 0: within "
        "the allowance). Time series come from <code>details[\"series\"]</code> of the verdicts.</p>",
        *(_claim_section(claim_id, claim, cases_by_group, report["source"], plots or {})
          for claim_id, claim in report["claims"].items()),
        "<h2>Environment and settings</h2>", _environment_table(report),
        '<p class="muted">Schema of report.json and results.jsonl: theorycheck/report/SCHEMA.md.</p>',
        "</body></html>\n"])
