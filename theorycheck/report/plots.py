"""Plots for the HTML report, as inline SVG (matplotlib, no pyplot state, no network).

- :func:`measurement_figure`: statistic vs allowance (bound + tolerance) per case, and the ratio
  statistic/allowance vs instance size;
- :func:`series_figure`: the time series a verdict carries in ``details["series"]`` (SCHEMA.md).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .summary import measured

STATUS_COLORS = {"holds": "#2e7d32", "violated": "#c62828", "vacuous": "#8d6e63", "inconclusive": "#1565c0",
                 "error": "#000000"}
KIND_MARKERS = {"instance": "o", "test": "o", "control": "x"}
MAX_SERIES_CASES = 6
MAX_SERIES_NAMES = 4


def to_svg(figure, salt: str) -> str:
    """The figure as an ``<svg>`` element: text kept as text, ids prefixed by ``salt`` (unique per page)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib numbers its group ids per figure (figure_1, axes_1, ...): prefix every id and reference
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{salt}-{m[1]}"', text)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m[1]}{salt}-{m[2]}", text)


def _figure(panels: int, columns: int = 2):
    """A figure of ``panels`` axes, ``columns`` per row, each about 5.2 x 3.2 inches."""
    from matplotlib.figure import Figure

    rows = -(-panels // columns)
    figure = Figure(figsize=(5.2 * min(panels, columns), 3.2 * rows), layout="constrained")
    return figure, [figure.add_subplot(rows, min(panels, columns), i + 1) for i in range(panels)]


def _positive_or_floor(values: Sequence[float]) -> tuple[list[float], float, int]:
    """Values for a log axis: zeros and negatives drawn at a floor below the smallest positive value."""
    positive = [v for v in values if v > 0]
    floor = min(positive) / 10 if positive else 1e-300
    return [v if v > 0 else floor for v in values], floor, sum(1 for v in values if v <= 0)


def _scatter(axis, xs, ys, cases) -> None:
    """One scatter per (kind, status): colour by status, marker by kind."""
    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for x, y, case in zip(xs, ys, cases):
        points = groups.setdefault((case["kind"], case["status"]), ([], []))
        points[0].append(x)
        points[1].append(y)
    for (kind, status), (gx, gy) in sorted(groups.items()):
        axis.scatter(gx, gy, s=22, marker=KIND_MARKERS.get(kind, "o"), color=STATUS_COLORS.get(status, "#555555"),
                     label=f"{kind}: {status}")
    axis.legend(fontsize=7, loc="best", frameon=False)


def measurement_figure(cases: Sequence[Mapping[str, Any]], salt: str) -> str | None:
    """Two panels: statistic vs bound + tolerance (log-log, y = x line), ratio vs size."""
    points = [(measured(c), c) for c in cases]
    points = [(m, c) for m, c in points
              if math.isfinite(m["statistic"]) and math.isfinite(m["bound"] + m["tolerance"])]
    if not points:
        return None
    figure, (left, right) = _figure(2)
    stats, floor, zeros = _positive_or_floor([m["statistic"] for m, _ in points])
    allowances, _, _ = _positive_or_floor([m["bound"] + m["tolerance"] for m, _ in points])
    _scatter(left, allowances, stats, [c for _, c in points])
    low, high = min(stats + allowances), max(stats + allowances)
    left.plot([low, high], [low, high], color="#444444", lw=0.8, ls="--")
    left.set(xscale="log", yscale="log", xlabel="allowance = bound + tolerance", ylabel="measured statistic",
             title="measured vs allowed" + (f" ({zeros} at or below 0, drawn at {floor:.0e})" if zeros else ""))
    ratios = [(m["ratio"], c) for m, c in points if math.isfinite(m["ratio"])]
    if ratios:
        values, floor, zeros = _positive_or_floor([r for r, _ in ratios])
        sized = any(c.get("size") for _, c in ratios)
        xs = [c.get("size") or 1 for _, c in ratios] if sized else list(range(1, len(ratios) + 1))
        _scatter(right, xs, values, [c for _, c in ratios])
        right.axhline(1.0, color="#444444", lw=0.8, ls="--")
        if not sized:
            from matplotlib.ticker import MaxNLocator

            right.xaxis.set_major_locator(MaxNLocator(integer=True))
        right.set(xscale="log" if sized else "linear", yscale="log",
                  xlabel="instance size (parameters)" if sized else "case", ylabel="statistic / allowance",
                  title="residual vs size" + (f" ({zeros} at or below 0, drawn at {floor:.0e})" if zeros else ""))
    else:
        right.set_axis_off()
    return to_svg(figure, salt)


def _lines(entry: Mapping[str, Any]) -> dict[str, tuple[list[float], list[float]]]:
    """``{"x": [...], "y": [...] | {label: [...]}}`` -> label -> (x, y); malformed entries give {}."""
    try:
        x = [float(v) for v in entry["x"]]
        ys = entry["y"] if isinstance(entry["y"], Mapping) else {"": entry["y"]}
        lines = {str(k): (x, [float(v) for v in y]) for k, y in ys.items()}
    except (KeyError, TypeError, ValueError):
        return {}
    return {k: v for k, v in lines.items() if len(v[0]) == len(v[1]) > 0}


def series_figure(cases: Sequence[Mapping[str, Any]], salt: str) -> str | None:
    """One panel per series name in ``details["series"]``, one line per case (counterexamples first)."""
    carrying = [c for c in cases if isinstance(((c.get("verdict") or {}).get("details") or {}).get("series"), Mapping)]
    if not carrying:
        return None
    carrying.sort(key=lambda c: c["outcome"] != "unexpected")
    chosen = carrying[:MAX_SERIES_CASES]
    names: list[str] = []
    for case in chosen:
        names += [n for n in case["verdict"]["details"]["series"] if n not in names]
    names = names[:MAX_SERIES_NAMES]
    figure, axes = _figure(len(names))
    for axis, name in zip(axes, names):
        options = {}
        for case in chosen:
            entry = case["verdict"]["details"]["series"].get(name)
            if not isinstance(entry, Mapping):
                continue
            options = options or entry
            for label, (x, y) in _lines(entry).items():
                axis.plot(x, y, lw=1.1, color=STATUS_COLORS.get(case["status"]) if len(chosen) == 1 else None,
                          label=f"{case['case']}{' ' + label if label else ''} ({case['status']})")
        axis.set(xlabel=str(options.get("xlabel", "x")), ylabel=str(options.get("ylabel", name)), title=name)
        for scale, setter in (("xscale", axis.set_xscale), ("yscale", axis.set_yscale)):
            if options.get(scale) in ("linear", "log", "symlog"):
                setter(options[scale])
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=6, loc="best", frameon=False)
    return to_svg(figure, salt)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")
