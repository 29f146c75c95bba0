"""Report plots read from their SVG: every drawn panel has data, at most 6 legend entries per panel,
statistics at or below 0 beneath the allowance line, series not in SCHEMA.md's form named in a note."""

import io
import math
import re
import xml.etree.ElementTree as ET

import pytest

from theorycheck.harness.audit import run_audit
from theorycheck.harness.plan import AuditSettings
from theorycheck.core.registry import CLAIMS
from theorycheck.report import case_record, read_results
from theorycheck.report.plots import MAX_LEGEND, measurement_plot, plain_tick_label, series_plot, slug
from theorycheck.report.summary import measured

SVG = "{http://www.w3.org/2000/svg}"


def _verdict(statistic, bound=0.0, tolerance=1e-12, series=None):
    status = "holds" if statistic <= bound + tolerance else "violated"
    return {"claim": "fake", "status": status, "statistic": statistic, "bound": bound, "tolerance": tolerance,
            "details": {"series": series} if series is not None else {}}


def _case(name, kind="instance", series=None, size=7, statistic=1e-13, status=None, **allowance):
    verdict = _verdict(statistic, series=series, **allowance)
    verdict["status"] = status or verdict["status"]
    expected = {"holds"} if kind == "instance" else {"violated"}
    return case_record(claim="fake", device="cpu", dtype="float64", case=name, kind=kind, expected=expected,
                       status=verdict["status"], reproduce="", size=size, seconds=0.0, verdict=verdict)


def svgs(text):
    return [ET.fromstring(m[0]) for m in re.finditer(r"<svg.*?</svg>", text, re.S)]


def _groups(node, role):
    return [g for g in node.iter(f"{SVG}g") if re.search(rf"-{role}(-|_)\d+$", g.get("id", ""))]


def _points(group):
    """Display coordinates of what a data group draws: marker positions, path vertices."""
    points = [(float(u.get("x")), float(u.get("y"))) for u in group.iter(f"{SVG}use")]
    for path in group.findall(f"{SVG}path"):
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", path.get("d", ""))]
        points += list(zip(numbers[::2], numbers[1::2]))
    return points


def check_panels(svg):
    """Each axes draws data; each legend has at most MAX_LEGEND entries. Returns the axes."""
    axes = _groups(svg, "axes")
    assert axes, "a figure without axes"
    for axis in axes:
        assert any(len(_points(g)) >= 1 for g in _groups(axis, "data")), f"blank panel {axis.get('id')}"
        for legend in _groups(axis, "legend"):
            entries = legend.findall(f".//{SVG}text")
            assert 1 <= len(entries) <= MAX_LEGEND, [e.text for e in entries]
    return axes


def floored_below_allowance(axis):
    """Points in the "<= 0" band of the y axis lie below the allowance line wherever their allowance is
    positive (right of the line's start; SVG y grows downwards). Returns how many were checked."""
    [band] = _groups(axis, "floor")
    low, high = min(y for _, y in _points(band)), max(y for _, y in _points(band))
    (x0, y0), (x1, y1) = _points(_groups(axis, "allowance")[0])[:2]
    floored = [p for g in _groups(axis, "data") for p in _points(g) if low <= p[1] <= high and p[0] >= x0 - 1e-6]
    for x, y in floored:
        line_y = y0 + (x - x0) * (y1 - y0) / (x1 - x0)
        assert y > line_y + 3, ((x, y), line_y)
    return len(floored)


@pytest.mark.parametrize("statistic", [0.0, -0.004])
def test_non_positive_statistic_below_the_allowance_line(statistic):
    cases = [_case("zero", statistic=statistic, tolerance=1e-15, size=9)]
    cases += [_case(f"i{k}", statistic=10.0 ** -k, tolerance=10.0 ** -k * 3, size=5 + k) for k in range(1, 6)]
    cases += [_case("c", "control", statistic=0.5, size=4)]  # ratios 1e11 > 1: the floor sits below 1 anyway
    plot = measurement_plot(cases, "m")
    [svg] = svgs(plot.svg)
    measured_axis, ratio_axis = check_panels(svg)
    assert floored_below_allowance(measured_axis) == floored_below_allowance(ratio_axis) == 1
    assert "&lt;= 0" in plot.svg and any("1 statistic(s) at or below 0" in note for note in plot.notes)


@pytest.mark.parametrize("label, plain", [
    (r"$\mathdefault{10^{3}}$", "10³"), (r"$\mathdefault{10^{-12}}$", "10⁻¹²"),
    (r"$\mathdefault{2\times10^{-3}}$", "2×10⁻³"), (r"$\mathdefault{-10^{1}}$", "-10¹"), (r"$\mathdefault{0}$", "0"),
    ("", ""), ("0.5", "0.5"), (r"$\alpha$", r"$\alpha$"), (r"$\mathdefault{10^{x}}$", r"$\mathdefault{10^{x}}$")])
def test_log_tick_labels_as_plain_text(label, plain):
    assert plain_tick_label(label) == plain


def test_log_axes_carry_plain_tick_labels_at_matplotlib_ticks():
    cases = [_case(f"i{k}", statistic=10.0 ** -k, tolerance=10.0 ** -k * 3, size=5 + k) for k in range(1, 6)]
    svg = measurement_plot(cases, "m").svg
    assert "mathdefault" not in svg and "$" not in svg
    assert re.search(r">10⁻[⁰¹²³⁴⁵⁶⁷⁸⁹]+<", svg), "decade labels of the log axes"


def test_non_finite_cases_are_noted_and_no_ratio_panel_without_ratios():
    plot = measurement_plot([_case("a", statistic=math.inf), _case("b", statistic=1e-3, tolerance=0.0)], "m")
    [svg] = svgs(plot.svg)
    assert len(check_panels(svg)) == 1  # allowance 0: no ratio, so no second (blank) panel
    assert plot.notes[0].startswith("1 case(s) with a non-finite statistic")
    assert measurement_plot([_case("a", statistic=math.nan)], "m").svg is None


def test_legend_by_status_past_six_kind_status_pairs():
    statuses = ("holds", "violated", "vacuous", "inconclusive")
    cases = [_case(f"{kind}-{status}", kind, statistic=0.1, status=status) for kind in ("instance", "control")
             for status in statuses]
    [svg] = svgs(measurement_plot(cases, "m").svg)
    for axis in check_panels(svg):
        [legend] = _groups(axis, "legend")
        assert [t.text for t in legend.iter(f"{SVG}text")] == sorted(statuses)


def _layered(k, scale):
    return {"norms": {"x": list(range(5)), "y": {f"layer {j}": [scale * (j + t) for t in range(5)] for j in range(k)}},
            "loss": {"x": [1, 10, 100, 1000, 1e4], "y": [scale, 0.5 * scale, 0.0, -1.0, math.nan],
                     "xscale": "log", "yscale": "log"}}


@pytest.mark.parametrize("layers", [2, 4, 9])
def test_many_cases_and_layers_keep_legends_short(layers):
    cases = [_case(f"i{j}", series=_layered(layers, 1 + j), statistic=j * 1e-14) for j in range(12)]
    cases += [_case(f"c{j}", "control", series=_layered(layers, 20 + j), statistic=0.1 * (j + 1)) for j in range(12)]
    plot = series_plot(cases, "s")
    [svg] = svgs(plot.svg)
    norms, loss = check_panels(svg)
    assert len(_groups(norms, "data")) == 2 * layers  # one instance, one control, every layer
    assert len(_groups(loss, "data")) == 6  # worst, median, best instance and control
    assert "worst instance: i11" in plot.svg and "weakest control: c0" in plot.svg
    lowest = max((p for g in _groups(loss, "data") for p in _points(g)), key=lambda p: p[1])
    band_y = [y for _, y in _points(_groups(loss, "floor")[0])]
    assert min(band_y) <= lowest[1] <= max(band_y)  # y = 0 and -1 drawn in the <= 0 band
    assert "instances" in plot.caption and "controls" in plot.caption


def test_counterexamples_come_first():
    cases = [_case(f"i{j}", series=_layered(1, 1), statistic=j * 1e-14) for j in range(5)]
    cases.append(_case("bad", series=_layered(1, 3), statistic=0.5))  # violated instance: unexpected
    assert "counterexample instance: bad (violated)" in series_plot(cases, "s").svg


def test_series_not_in_schema_form_give_a_note_not_a_panel():
    columns = {"step": [0, 1, 2], "distance_mean": [0.0, 0.1, 0.2], "bound_mean": [0.0, 0.2, 0.4]}
    plot = series_plot([_case("i", series=columns), _case("c", "control", series=columns)], "s")
    assert plot.svg is None
    [note] = plot.notes
    assert "'step', 'distance_mean', 'bound_mean' (in 2 case(s)) not in SCHEMA.md's form" in note
    mixed = dict(columns, margin={"x": [0, 1], "y": [1.0, 2.0]}, empty={"x": [], "y": []},
                 gaps={"x": [0, 1], "y": [math.nan, "nan"]})
    plot = series_plot([_case("i", series=mixed)], "s")
    [svg] = svgs(plot.svg)
    assert len(check_panels(svg)) == 1
    assert any("'empty', 'gaps': no finite values" in note for note in plot.notes)
    listed = series_plot([_case("i", series=[[0, 1], [1.0, 2.0]])], "s")
    assert listed.svg is None and "not a mapping of series names in 1 case(s)" in listed.notes[0]


def _audit(tmp_path, examples):
    settings = AuditSettings(claims=tuple(CLAIMS), examples=dict.fromkeys(CLAIMS, examples),
                             budget=dict.fromkeys(CLAIMS, 0))
    run_audit(settings, tmp_path, out=io.StringIO(), err=io.StringIO())
    return read_results(tmp_path / "results.jsonl"), (tmp_path / "report.html").read_text()


def check_audit_page(records, page):
    """Every claim's section: panels with data, short legends; non-positive statistics in the floor band."""
    sections = dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, re.S))
    assert set(sections) == {slug(c) for c in CLAIMS}
    for claim in CLAIMS:
        section = sections[slug(claim)]
        cases = [r for r in records if r["record"] == "case" and r["claim"] == claim]
        for svg in svgs(section):
            check_panels(svg)
        figures = svgs(section)
        assert figures, f"{claim}: no plot"
        numbers = [measured(c) for c in cases]
        if any(m["statistic"] <= 0 < m["bound"] + m["tolerance"] < math.inf for m in numbers):
            assert floored_below_allowance(_groups(figures[0], "axes")[0]) >= 1  # measured vs allowed
        carried = [c for c in cases if ((c["verdict"] or {}).get("details") or {}).get("series")]
        assert not carried or len(figures) == 2 or "not in SCHEMA.md" in section, f"{claim}: series lost"


def test_every_claim_plots_from_a_small_audit(tmp_path):
    check_audit_page(*_audit(tmp_path, 1))


@pytest.mark.slow
def test_every_claim_plots_from_an_audit_of_two_examples(tmp_path):
    check_audit_page(*_audit(tmp_path, 2))


def test_series_spanning_decades_get_a_log_x_axis_and_the_claims_label():
    spread = {"x": [0.0, 7e-4, 1.0, 3e4, 2.5e17], "y": [1.0, 0.9, 0.8, 0.7, 0.6], "xlabel": "gradient-flow time t"}
    plot = series_plot([_case("i", series={"ratio": spread})], "s")
    assert "gradient-flow time t" in plot.svg and re.search(r">10¹⁷?<|>10¹⁵<|>10¹⁰<", plot.svg)
    assert any("1 point(s) at x <= 0 not drawn on the log x axis" in note for note in plot.notes)
    [axis] = check_panels(svgs(plot.svg)[0])
    assert len(_groups(axis, "data")) == 1  # one case, drawn once (not as worst, median and best)
    narrow = series_plot([_case("i", series={"ratio": {"x": [1, 2, 3], "y": [1.0, 2.0, 3.0]}})], "s")
    assert not re.search(r">10[⁰¹²³⁴⁵⁶⁷⁸⁹]+<", narrow.svg)  # a linear axis


def test_signed_statistics_are_drawn_on_linear_axes_with_their_residual():
    """A fitted slope against -1/2 (ntk_movement): no log axes and no "<= 0" band; the right panel shows
    statistic - allowance against the size."""
    cases = [_case(f"i{k}", statistic=-0.6 - 0.05 * k, bound=-0.5, tolerance=0.0, size=10 + k) for k in range(4)]
    cases.append(_case("c", "control", statistic=-0.3, bound=-0.5, tolerance=0.0, size=12))
    plot = measurement_plot(cases, "m")
    [svg] = svgs(plot.svg)
    measured_axis, residual_axis = check_panels(svg)
    assert "&lt;= 0" not in plot.svg and not _groups(svg, "floor")
    assert "statistic - allowance" in plot.svg and "residual vs size" in plot.svg


def test_an_unsized_case_axis_has_integer_ticks():
    cases = [_case(f"i{k}", statistic=10.0 ** -k, tolerance=1.0, size=0) for k in range(1, 4)]
    axis_labels = re.findall(r">([0-9.]+)<", measurement_plot(cases, "m").svg)
    assert "case" in measurement_plot(cases, "m").svg and axis_labels
    assert not [label for label in axis_labels if "." in label]  # 1, 2, 3 (not 1.00, 1.25, ...)


def test_long_case_names_are_cut_to_fit_the_legend():
    name = "tests/test_long.py::test_" + "x" * 80 + "[cpu-float64]#0"
    svg = series_plot([_case(name, series=_layered(1, 1))], "s").svg
    assert "tests/test_long.py" not in svg and "test_xxx" in svg and "…" in svg


def test_the_size_axis_names_what_the_cases_count():
    """A claim whose cases count samples (the dataclass cases: flat_minima's n) is not labelled parameters;
    records written before the unit was recorded read as parameters."""
    samples = [{**_case(f"i{k}", size=2 + k, tolerance=1.0, statistic=0.1), "size_unit": "samples"} for k in range(3)]
    old = [{key: value for key, value in c.items() if key != "size_unit"} for c in samples]
    assert "instance size (samples)" in measurement_plot(samples, "s").svg
    assert "instance size (parameters)" in measurement_plot(old, "p").svg
    case = next(iter(CLAIMS["flat_minima"].audit_cases(n=1, seed=0, device="cpu", dtype="float64")))
    assert case.size_unit == "samples" and next(iter(CLAIMS["homogeneity"].audit_cases(
        n=1, seed=0, device="cpu", dtype="float64"))).size_unit == "parameters"
