"""Plots for the HTML report, as inline SVG (matplotlib, no pyplot state, no network).

- :func:`measurement_plot`: statistic vs allowance (bound + tolerance) per case, and the ratio
  statistic/allowance vs instance size; values at or below 0 sit in a "<= 0" band beneath every
  positive value, so below the allowance line on the log axes;
- :func:`series_plot`: the time series verdicts carry in ``details["series"]`` (SCHEMA.md), one
  figure per claim x device x dtype, at most :data:`MAX_LEGEND` legend entries per panel.

Each returns a :class:`Plot`: the SVG (None when nothing is drawable), a caption and notes (what is
not drawn and why). Drawn data carry SVG ids ``<salt>-data-N``, allowance lines ``<salt>-allowance-N``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .summary import measured

STATUS_COLORS = {"holds": "#2e7d32", "violated": "#c62828", "vacuous": "#8d6e63", "inconclusive": "#1565c0",
                 "error": "#000000"}
KIND_MARKERS = {"instance": "o", "test": "o", "control": "x"}
CASE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
MAX_SERIES_CASES = 6  # 3 instances (worst, median, best) + 3 controls (weakest, median, strongest)
MAX_SERIES_NAMES = 4  # panels per series figure
MAX_LEGEND = 6  # entries per panel
MAX_LABEL_COLORS = 4  # line labels per case coloured one by one; more go on a colour scale
MAX_SYMLOG_TICKS = 9  # major ticks per symlog axis
FLOOR_DECADES = 2  # the "<= 0" band sits this many decades below the smallest positive value
DECADES_FOR_LOG = 3  # a series' x axis is logarithmic (unless it says otherwise) when x spans this many decades
MAX_CASE_NAME = 32  # characters of a case name in a legend (the panel's width)
SERIES_FORM = '{"x": [...], "y": [...] | {label: [...]}}'


@dataclasses.dataclass(frozen=True)
class Plot:
    svg: str | None
    caption: str = ""
    notes: tuple[str, ...] = ()


SUPERSCRIPTS = str.maketrans("0123456789-+", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺")


def plain_tick_label(text: str) -> str:
    """A log-axis tick label of matplotlib's (``$\\mathdefault{2\\times10^{-3}}$``) as plain text (2×10⁻³);
    anything else it does not recognise is returned unchanged."""
    if not (len(text) > 1 and text[0] == text[-1] == "$"):
        return text
    body = re.sub(r"^\\mathdefault\{(.*)\}$", r"\1", text[1:-1]).replace(r"\times", "×")
    body = re.sub(r"\^\{([-+]?\d+)\}", lambda m: m[1].translate(SUPERSCRIPTS), body)
    return text if re.search(r"[\\{}$^]", body) else body


def _plain_log_ticks(figure) -> None:
    """Plain-text tick labels on every log and symlog axis: matplotlib's mathtext labels are parsed one by
    one (measured: ~60% of the report's plot time after the fixed layout); the ticks chosen are unchanged."""
    from matplotlib.ticker import Formatter, LogFormatterMathtext

    class PlainText(Formatter):
        def __init__(self, inner):
            self.inner = inner

        def set_axis(self, axis):
            super().set_axis(axis)
            self.inner.set_axis(axis)

        def set_locs(self, locs):
            self.inner.set_locs(locs)

        def __call__(self, x, pos=None):
            return plain_tick_label(self.inner(x, pos))

    for axes in figure.axes:
        for axis in (axes.xaxis, axes.yaxis):
            for get, put in ((axis.get_major_formatter, axis.set_major_formatter),
                             (axis.get_minor_formatter, axis.set_minor_formatter)):
                if isinstance(get(), LogFormatterMathtext):
                    put(PlainText(get()))


def to_svg(figure, salt: str) -> str:
    """The figure as an ``<svg>`` element: text kept as text, ids prefixed by ``salt`` (unique per page)."""
    import matplotlib

    _plain_log_ticks(figure)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib numbers its group ids per figure (figure_1, axes_1, ...): prefix every id and reference
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{salt}-{m[1]}"', text)
    return re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m[1]}{salt}-{m[2]}", text)


PANEL_INCHES = (5.2, 3.2)  # width, height of one panel with its labels
MARGIN_INCHES = {"left": 0.75, "right": 0.15, "bottom": 0.5, "top": 0.32, "across": 0.9, "down": 0.75}


def _figure(panels: int, columns: int = 2):
    """A figure of ``panels`` axes, ``columns`` per row, each about 5.2 x 3.2 inches. The margins are fixed
    (MARGIN_INCHES: tick labels, axis labels, title) rather than found by a layout engine, whose text
    measurements took 55% of a default audit's report time (measured: 16.1 s -> 6.9 s for 800 cases)."""
    from matplotlib.figure import Figure

    rows, columns = -(-panels // columns), min(panels, columns)
    width, height = PANEL_INCHES[0] * columns, PANEL_INCHES[1] * rows
    m = MARGIN_INCHES
    axis_width = (width - m["left"] - m["right"] - (columns - 1) * m["across"]) / columns
    axis_height = (height - m["bottom"] - m["top"] - (rows - 1) * m["down"]) / rows
    figure = Figure(figsize=(width, height))
    figure.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width, bottom=m["bottom"] / height,
                           top=1 - m["top"] / height, wspace=m["across"] / axis_width, hspace=m["down"] / axis_height)
    return figure, [figure.add_subplot(rows, columns, i + 1) for i in range(panels)]


class _Ids:
    """SVG ids for drawn artists: ``data-N`` for data, ``allowance-N`` for allowance lines."""

    def __init__(self):
        self.count = 0

    def __call__(self, artist, role: str = "data"):
        self.count += 1
        artist.set_gid(f"{role}-{self.count}")
        return artist


def _log_minor_labels(axis) -> None:
    """Unlabelled minor ticks on log axes whose view holds a power of 10 (its labels then suffice; the
    minor ones, 2x10^0 3x10^0 ..., overlap)."""
    from matplotlib.ticker import NullFormatter

    for ax, (low, high) in ((axis.xaxis, axis.get_xlim()), (axis.yaxis, axis.get_ylim())):
        low, high = sorted((low, high))
        if ax.get_scale() == "log" and low > 0 and math.floor(math.log10(high)) >= math.ceil(math.log10(low)):
            ax.set_minor_formatter(NullFormatter())


def _floor(values: Sequence[float], *references: float) -> float:
    """Where values <= 0 go on a log axis: FLOOR_DECADES below the smallest positive value or reference."""
    positive = [v for v in (*values, *references) if math.isfinite(v) and v > 0]
    return min(positive) / 10 ** FLOOR_DECADES if positive else 1.0


def _floor_band(axis, floor: float, ids: _Ids, which: str = "y") -> None:
    """A grey band a decade around ``floor`` labelled "<= 0" (SVG id ``floor-N``, ``xfloor-N`` for x)."""
    from matplotlib.transforms import blended_transform_factory

    low, high = floor / 10 ** 0.5, floor * 10 ** 0.5
    if which == "y":
        ids(axis.axhspan(low, high, color="#e0e0e0", zorder=0, lw=0), "floor")
        axis.text(0.01, floor, "<= 0", transform=blended_transform_factory(axis.transAxes, axis.transData),
                  fontsize=7, va="center", color="#555555")
    else:
        ids(axis.axvspan(low, high, color="#e0e0e0", zorder=0, lw=0), "xfloor")
        axis.text(floor, 0.99, "<= 0", transform=blended_transform_factory(axis.transData, axis.transAxes),
                  fontsize=7, ha="center", va="top", color="#555555")


def _scatter(axis, xs, ys, cases, ids: _Ids) -> None:
    """One scatter per (kind, status): colour by status, marker by kind; past MAX_LEGEND pairs the legend
    lists the statuses alone (square swatches)."""
    from matplotlib.lines import Line2D

    groups: dict[tuple[str, str], tuple[list, list]] = {}
    for x, y, case in zip(xs, ys, cases):
        points = groups.setdefault((case["kind"], case["status"]), ([], []))
        points[0].append(x)
        points[1].append(y)
    for (kind, status), (gx, gy) in sorted(groups.items()):
        ids(axis.scatter(gx, gy, s=22, marker=KIND_MARKERS.get(kind, "o"), color=STATUS_COLORS.get(status, "#555555"),
                         label=f"{kind}: {status}"))
    if len(groups) > MAX_LEGEND:
        statuses = sorted({status for _, status in groups})
        axis.legend([Line2D([], [], ls="", marker="s", color=STATUS_COLORS.get(s, "#555555")) for s in statuses],
                    statuses, fontsize=7, loc="best", frameon=False)
    else:
        axis.legend(fontsize=7, loc="best", frameon=False)


def _measured_panel(axis, points, ids: _Ids) -> list[str]:
    """Statistic vs allowance on log-log axes with the line y = x; returns notes on floored values."""
    stats = [m["statistic"] for m, _ in points]
    allowances = [m["bound"] + m["tolerance"] for m, _ in points]
    floor = _floor(stats + allowances)
    xs, ys = [a if a > 0 else floor for a in allowances], [s if s > 0 else floor for s in stats]
    _scatter(axis, xs, ys, [c for _, c in points], ids)
    positive = [v for v in xs + ys if v > floor] or [floor]
    ids(axis.plot([min(positive), max(positive)], [min(positive), max(positive)], color="#444444", lw=0.8,
                  ls="--")[0], "allowance")
    notes = []
    for which, values, what, where in (("y", stats, "statistic", "beneath the allowance line"),
                                       ("x", allowances, "allowance", "left of every positive allowance")):
        if any(v <= 0 for v in values):
            _floor_band(axis, floor, ids, which)
            notes.append(f"{sum(v <= 0 for v in values)} {what}(s) at or below 0 drawn in the band labelled "
                         f"<= 0, {where}")
    axis.set(xscale="log", yscale="log", xlabel="allowance = bound + tolerance", ylabel="measured statistic",
             title="measured vs allowed")
    _log_minor_labels(axis)
    return notes


def _ratio_panel(axis, ratios, ids: _Ids, signed: bool = False) -> None:
    """Statistic / allowance vs size (or case number), allowance line at 1, ratios <= 0 in the floor band;
    ``signed``: statistic - allowance on a symlog axis instead, allowance line at 0."""
    from matplotlib.ticker import MaxNLocator

    sized = any(c.get("size") for _, c in ratios)
    xs = [c.get("size") or 1 for _, c in ratios] if sized else list(range(1, len(ratios) + 1))
    if signed:
        values = [r for r, _ in ratios]
        _scatter(axis, xs, values, [c for _, c in ratios], ids)
        ids(axis.axhline(0.0, color="#444444", lw=0.8, ls="--"), "allowance")
        axis.set_yscale("symlog", linthresh=_linthresh(values))
    else:
        floor = _floor([r for r, _ in ratios], 1.0)
        _scatter(axis, xs, [r if r > 0 else floor for r, _ in ratios], [c for _, c in ratios], ids)
        ids(axis.axhline(1.0, color="#444444", lw=0.8, ls="--"), "allowance")
        if any(r <= 0 for r, _ in ratios):
            _floor_band(axis, floor, ids)
        axis.set_yscale("log")
    xscale = "log" if sized and max(xs) >= 10 * min(xs) else "linear"  # log ticks need a decade to show
    units = {c.get("size_unit", "parameters") for _, c in ratios}
    axis.set(xscale=xscale, xlabel=(f"instance size ({units.pop()})" if len(units) == 1 else "instance size")
             if sized else "case",
             ylabel="statistic - allowance" if signed else "statistic / allowance", title="residual vs size")
    if xscale == "linear":  # integer sizes or case numbers; after the scale, which resets the locator
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    _log_minor_labels(axis)


def _signed_panel(axis, points, ids: _Ids) -> None:
    """Statistic vs allowance on linear axes with the line y = x, for signed values (an allowance <= 0)."""
    stats = [m["statistic"] for m, _ in points]
    allowances = [m["bound"] + m["tolerance"] for m, _ in points]
    _scatter(axis, allowances, stats, [c for _, c in points], ids)
    ends = [min(stats + allowances), max(stats + allowances)]
    ids(axis.plot(ends, ends, color="#444444", lw=0.8, ls="--")[0], "allowance")
    axis.set(xlabel="allowance = bound + tolerance", ylabel="measured statistic", title="measured vs allowed")


def measurement_plot(cases: Sequence[Mapping[str, Any]], salt: str) -> Plot:
    """Measured vs allowed (log-log, y = x line) and, where ratios exist, ratio vs size; where an allowance is
    below 0 (a signed statistic, e.g. a fitted slope against -1/2), linear axes and statistic - allowance
    vs size."""
    points = [(measured(c), c) for c in cases]
    drawn = [(m, c) for m, c in points if math.isfinite(m["statistic"]) and math.isfinite(m["bound"] + m["tolerance"])]
    notes = [f"{len(points) - len(drawn)} case(s) with a non-finite statistic or allowance (nan, inf, none) "
             "not drawn"] if len(drawn) < len(points) else []
    if not drawn:
        return Plot(None, notes=tuple(notes))
    signed = any(m["bound"] + m["tolerance"] < 0 for m, _ in drawn)  # not magnitudes: no log axes, no ratio
    ratios = ([(m["statistic"] - m["bound"] - m["tolerance"], c) for m, c in drawn] if signed else
              [(m["ratio"], c) for m, c in drawn if math.isfinite(m["ratio"])])
    figure, axes = _figure(2 if ratios else 1)
    ids = _Ids()
    if signed:
        _signed_panel(axes[0], drawn, ids)
    else:
        notes += _measured_panel(axes[0], drawn, ids)
    if ratios:
        _ratio_panel(axes[1], ratios, ids, signed)
    return Plot(to_svg(figure, salt), notes=tuple(notes))


def measurement_figure(cases: Sequence[Mapping[str, Any]], salt: str) -> str | None:
    """The SVG of :func:`measurement_plot`."""
    return measurement_plot(cases, salt).svg


def _number(value) -> float:
    return math.nan if value is None else float(value)  # verdicts write non-finite numbers as "nan", "inf"


def _lines(entry) -> dict[str, tuple[list[float], list[float]]] | None:
    """``{"x": [...], "y": [...] | {label: [...]}}`` -> label -> (x, y), lines without points left out;
    None for an entry not in that form."""
    try:
        x = [_number(v) for v in entry["x"]]
        ys = entry["y"] if isinstance(entry["y"], Mapping) else {"": entry["y"]}
        lines = {str(k): (x, [_number(v) for v in y]) for k, y in ys.items()}
    except (KeyError, TypeError, ValueError):
        return None
    if any(len(y) != len(x) for _, y in lines.values()):
        return None
    return {k: v for k, v in lines.items() if v[0]}


@dataclasses.dataclass
class _Member:
    """One case's entry for one series name."""

    case: Mapping[str, Any]
    lines: dict[str, tuple[list[float], list[float]]]
    role: str = ""

    @property
    def control(self) -> bool:
        return self.case["kind"] == "control"


def _pick(members: list[_Member], count: int) -> list[_Member]:
    """Counterexamples first, then the worst, median and best by statistic/allowance (instances: largest
    ratio worst; controls: smallest ratio weakest); cases without a ratio rank last."""
    if not members:
        return []
    control = members[0].control
    ranked = sorted(members, key=lambda m: (math.isnan(r := measured(m.case)["ratio"]), r if control else -r))
    chosen = [dataclasses.replace(m, role="counterexample") for m in ranked if m.case["outcome"] == "unexpected"]
    rest = [m for m in ranked if m.case["outcome"] != "unexpected"]
    names = ("weakest", "median", "strongest") if control else ("worst", "median", "best")
    taken: set[int] = set()
    for name, index in zip(names, (0, len(rest) // 2, len(rest) - 1)):
        if rest and index not in taken:  # a case once, in its first role
            taken.add(index)
            chosen.append(dataclasses.replace(rest[index], role=name))
    return chosen[:count]


def _clean(x: list[float], y: list[float], xlog: bool, ylog: bool, floor: float) -> tuple[list, list, int, int]:
    """Points for the axes: non-finite y -> gaps, x <= 0 dropped on a log x axis, y <= 0 at ``floor`` on
    a log y axis; also the numbers of points dropped (x <= 0) and floored (y <= 0)."""
    points = [(a, b if math.isfinite(b) else math.nan) for a, b in zip(x, y)
              if math.isfinite(a) and not (xlog and a <= 0)]
    floored = sum(ylog and b <= 0 for _, b in points)
    return [a for a, _ in points], [floor if ylog and b <= 0 else b for _, b in points], \
        sum(math.isfinite(a) and xlog and a <= 0 for a in x), floored


def _panel(name: str, members: list[_Member]) -> dict[str, Any] | None:
    """What one panel draws (cases chosen among those with a finite point on its axes), or None."""
    options = next(m.case["verdict"]["details"]["series"][name] for m in members)
    options = {**options, "xscale": options.get("xscale") or _span_scale([a for m in members for x, _ in
                                                                          m.lines.values() for a in x])}
    xlog, ylog = options["xscale"] == "log", options.get("yscale") == "log"
    members = [m for m in members if any(math.isfinite(a) and math.isfinite(b) and not (xlog and a <= 0)
                                         for x, y in m.lines.values() for a, b in zip(x, y))]
    multi = any(set(m.lines) != {""} for m in members)
    count = 1 if multi else MAX_SERIES_CASES // 2
    chosen = _pick([m for m in members if not m.control], count) + _pick([m for m in members if m.control], count)
    floor = _floor([v for m in chosen for _, y in m.lines.values() for v in y])
    lines, dropped, floored = [], 0, 0
    for member in chosen:
        for label, (x, y) in member.lines.items():
            xs, ys, cut, low = _clean(x, y, xlog, ylog, floor)
            dropped, floored = dropped + cut, floored + low
            if any(math.isfinite(v) for v in ys):
                lines.append((member, label, xs, ys))
    if not lines:
        return None
    notes = [f"{name}: {dropped} point(s) at x <= 0 not drawn on the log x axis"] if dropped else []
    return {"name": name, "options": options, "lines": lines, "multi": multi, "floor": floor if floored else None,
            "notes": notes}


def _span_scale(values: list[float]) -> str:
    """``log`` for x values whose positive part spans DECADES_FOR_LOG decades or more, else ``linear``."""
    positive = [v for v in values if math.isfinite(v) and v > 0]
    return "log" if positive and max(positive) >= min(positive) * 10 ** DECADES_FOR_LOG else "linear"


def _legend_name(member: _Member) -> str:
    """Role, kind, case name (a pytest node id without its file, at most MAX_CASE_NAME characters) and status."""
    kind = "control" if member.control else "instance"
    name = member.case["case"].rpartition("::")[2]
    name = name if len(name) <= MAX_CASE_NAME else name[:MAX_CASE_NAME - 1] + "…"
    return f"{member.role} {kind}: {name} ({member.case['status']})"


def _draw(axis, panel: Mapping[str, Any], ids: _Ids) -> None:
    """Lines of one panel: solid instances, dashed controls; colour by case, or by label when cases draw
    several lines (one instance and one control then, labels past MAX_LABEL_COLORS on a colour scale)."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D

    members = list(dict.fromkeys(id(m) for m, *_ in panel["lines"]))
    labels = list(dict.fromkeys(label for _, label, *_ in panel["lines"]))
    scale = colormaps["viridis"].resampled(len(labels)) if len(labels) > MAX_LABEL_COLORS else None
    handles: dict[str, Line2D] = {}
    cases: dict[str, Line2D] = {}
    for member, label, xs, ys in panel["lines"]:
        style = "--" if member.control else "-"
        if panel["multi"]:
            color = scale(labels.index(label)) if scale else CASE_COLORS[labels.index(label)]
            if not scale or label in (labels[0], labels[-1]):
                handles.setdefault(label or panel["name"], Line2D([], [], color=color, lw=1.4))
            cases.setdefault(_legend_name(member), Line2D([], [], color="#333333", lw=1.1, ls=style))
        else:
            color = CASE_COLORS[members.index(id(member)) % len(CASE_COLORS)]
            cases.setdefault(_legend_name(member), Line2D([], [], color=color, lw=1.1, ls=style))
        single = sum(math.isfinite(v) for v in ys) == 1  # a lone point: a line would not show it
        ids(axis.plot(xs, ys, lw=1.1, ls=style, color=color, marker="o" if single else None, ms=3)[0])
    options = panel["options"]
    axis.set(xlabel=str(options.get("xlabel", "x")), ylabel=str(options.get("ylabel", panel["name"])),
             title=panel["name"])
    for scale_name, setter in (("xscale", axis.set_xscale), ("yscale", axis.set_yscale)):
        if options.get(scale_name) == "symlog":
            column = 3 if scale_name == "yscale" else 2
            setter("symlog", linthresh=_linthresh([v for line in panel["lines"] for v in line[column]]))
            (axis.yaxis if column == 3 else axis.xaxis).get_major_locator().set_params(numticks=MAX_SYMLOG_TICKS)
        elif options.get(scale_name) in ("linear", "log"):
            setter(options[scale_name])
    if panel["floor"] is not None:
        _floor_band(axis, panel["floor"], ids)
    handles.update(cases)
    axis.legend(handles.values(), handles.keys(), fontsize=6, loc="best", frameon=False)
    _log_minor_labels(axis)


def _linthresh(values: list[float]) -> float:
    """The linear range of a symlog axis: the decade of the smallest non-zero |value| (ticks then fall on
    its edges, not inside it), at most 16 decades below the largest."""
    sizes = [abs(v) for v in values if math.isfinite(v) and v != 0]
    return 10.0 ** math.floor(math.log10(max(min(sizes), max(sizes) * 1e-16))) if sizes else 1.0


SERIES_CAPTION = (
    "Time series from the verdicts' details[\"series\"], one panel per series name: solid lines are instances, "
    "dashed lines negative controls. Chosen by statistic / allowance: counterexamples first, then the worst, "
    "median and best instance and the weakest, median and strongest control, coloured by case; where a case "
    "draws several lines (per layer, ...), one instance and one control, coloured by line label (on a colour "
    f"scale, legend at its ends, past {MAX_LABEL_COLORS} labels). On a log axis values at or below 0 sit in "
    "the band labelled <= 0.")


def _gather(cases: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list[_Member]], list[str]]:
    """Series name -> the cases with points under it (every name in SCHEMA.md's form, possibly with
    none), and notes on what is not in that form."""
    members: dict[str, list[_Member]] = {}
    malformed: dict[str, int] = {}
    not_mappings = 0
    for case in cases:
        series = ((case.get("verdict") or {}).get("details") or {}).get("series")
        not_mappings += series is not None and not isinstance(series, Mapping)
        for name, entry in (series.items() if isinstance(series, Mapping) else ()):
            lines = _lines(entry) if isinstance(entry, Mapping) else None
            if lines is None:
                malformed[str(name)] = malformed.get(str(name), 0) + 1
            else:
                members.setdefault(str(name), []).extend([_Member(case, lines)] if lines else [])
    notes = [f"series {', '.join(map(repr, malformed))} (in {max(malformed.values())} case(s)) not in SCHEMA.md's "
             f"form {SERIES_FORM}: not drawn"] if malformed else []
    notes += [f'details["series"] is not a mapping of series names in {not_mappings} case(s): not drawn'] \
        if not_mappings else []
    return members, notes


def series_plot(cases: Sequence[Mapping[str, Any]], salt: str) -> Plot:
    """One figure, one panel per series name in ``details["series"]`` with drawable data (SCHEMA.md)."""
    members, notes = _gather(cases)
    panels = [p for p in (_panel(n, m) for n, m in members.items() if m) if p]
    blank = [n for n in members if n not in {p["name"] for p in panels}]
    notes += [f"series {', '.join(map(repr, blank))}: no finite values, not drawn"] if blank else []
    notes += [f"{len(panels) - MAX_SERIES_NAMES} more series not drawn: "
              + ", ".join(repr(p["name"]) for p in panels[MAX_SERIES_NAMES:])] if len(panels) > MAX_SERIES_NAMES else []
    panels = panels[:MAX_SERIES_NAMES]
    notes += [note for p in panels for note in p["notes"]]
    if not panels:
        return Plot(None, notes=tuple(notes))
    figure, axes = _figure(len(panels))
    ids = _Ids()
    for axis, panel in zip(axes, panels):
        _draw(axis, panel, ids)
    return Plot(to_svg(figure, salt), SERIES_CAPTION, tuple(notes))


def series_figure(cases: Sequence[Mapping[str, Any]], salt: str) -> str | None:
    """The SVG of :func:`series_plot`."""
    return series_plot(cases, salt).svg


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")
