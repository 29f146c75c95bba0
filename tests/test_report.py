"""Report files: results.jsonl reading, report.json schema, Markdown, self-contained HTML."""

import json
import math
import re

import pytest
from conftest import fake_verdict

from theorycheck.core.errors import InvalidArgument
from theorycheck.report import RESULTS, ResultsWriter, build_report, case_record, read_results, write_reports
from theorycheck.report.records import outcome_of
from theorycheck.report.summary import measured

HEADER = {"record": "header", "schema_version": 1, "source": "audit", "started": "2025-01-01T00:00:00+00:00",
          "settings": {"claims": ["fake"], "devices": ["cpu"], "dtypes": ["float64"], "examples": {"fake": 3},
                       "budget": {"fake": 0}, "seed": 0},
          "environment": {"machine": {"platform": "test"}, "python": "3", "versions": {"torch": "x"},
                          "git": {"commit": "0123456789abcdef", "dirty": False}},
          "claims": {"fake": {"id": "fake", "statement": "S", "assumptions": ["A"], "source": "src", "tolerance": "t"}}}
SERIES = {"margin": {"x": [1, 10, 100], "y": [0.1, 0.2, 0.3], "xscale": "log", "xlabel": "t"},
          "norms": {"x": [0, 1, 2], "y": {"layer 1": [1, 2, 3], "layer 2": [1, 2, 4]}},
          "broken": {"x": [0, 1], "y": [1]}}


def _case(name, kind, expected, statistic, **extra):
    verdict = fake_verdict("fake", statistic, series=extra.pop("series", None)).to_dict()
    return case_record(claim="fake", device="cpu", dtype="float64", case=name, kind=kind, expected=expected,
                       status=verdict["status"], reproduce=f"repro({name!r})", size=extra.pop("size", 5),
                       seconds=0.25, verdict=verdict, **extra)


def records(*, complete=True):
    found = [HEADER, {"record": "group", "claim": "fake", "device": "cpu", "dtype": "float64", "planned": 7},
             _case("i0", "instance", {"holds"}, 1e-13, series=SERIES),
             _case("i1", "instance", {"holds"}, 0.0),
             _case("i2", "instance", {"holds"}, 0.5),  # a counterexample
             _case("i3", "instance", {"holds"}, math.nan),  # inconclusive: accepted
             _case("c0", "control", {"violated"}, 0.3),
             _case("c1", "control", {"violated"}, 1e-14)]  # an uncaught control
    return found + ([{"record": "end", "time": "2025-01-01T00:01:00+00:00"}] if complete else [])


def test_outcomes():
    assert outcome_of("instance", ["holds"], "holds") == "expected"
    assert outcome_of("instance", ["holds"], "inconclusive") == "inconclusive"
    assert outcome_of("instance", ["holds"], "vacuous") == "unexpected"
    assert outcome_of("control", ["vacuous", "violated"], "violated") == "expected"
    assert outcome_of("control", ["violated"], "inconclusive") == "unexpected"
    assert outcome_of("control", ["violated"], "error") == "unexpected"


def test_report_json_schema():
    report = json.loads(json.dumps(build_report(records()), allow_nan=False))
    assert report["schema"] == "theorycheck-report" and report["schema_version"] == 1 and report["complete"]
    assert report["summary"] == {"ok": False, "exit_code": 1, "cases": 6, "not_run": 1, "seconds": 1.5, "wall_seconds": None,
                                 "by_status": {"holds": 3, "violated": 2, "vacuous": 0, "inconclusive": 1},
                                 "by_outcome": {"expected": 3, "inconclusive": 1, "unexpected": 2},
                                 "counterexamples": 2}
    claim = report["claims"]["fake"]
    assert claim["statement"] == "S" and claim["source"] == "src"
    [group] = claim["results"]
    assert (group["planned"], group["run"], group["not_run"]) == (7, 6, 1)
    assert group["by_status"]["instance"] == {"holds": 2, "violated": 1, "vacuous": 0, "inconclusive": 1}
    assert group["worst_instance"]["case"] == "i2" and group["worst_instance"]["ratio"] == pytest.approx(0.5e12)
    assert group["weakest_control"]["case"] == "c1"
    assert [c["case"] for c in group["counterexamples"]] == ["i2", "c1"]
    assert group["counterexamples"][1]["reproduce"] == "repro('c1')"
    assert "negative control not caught" in group["counterexamples"][1]["reason"]


def test_measured_ratio_guards_non_finite():
    assert measured(_case("a", "instance", {"holds"}, 1e-13))["ratio"] == pytest.approx(0.1)
    assert math.isnan(measured(_case("b", "instance", {"holds"}, math.nan))["ratio"])
    assert math.isnan(measured({"verdict": None})["ratio"])


def test_markdown_fits_a_job_summary(tmp_path):
    write_reports(tmp_path, records(complete=False))
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# theorycheck audit: FAIL: 2 counterexample(s)")
    assert "| `fake` | cpu | float64 | 2 | 1 | 0 | 1 | 1/2 | 2 |" in text
    assert "repro('i2')" in text and "repro('c1')" in text and "commit 0123456789" in text
    assert "**Incomplete**" in text and "--resume" in text


def test_html_is_one_self_contained_page(tmp_path):
    write_reports(tmp_path, records())
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert not re.search(r"url\((?!#)", page) and "@import" not in page  # only in-page references
    assert page.count("<svg") == 2  # measurements + series
    for text in ("measured vs allowed", "residual vs size", "margin", "norms", "layer 2", "repro(&#x27;c1&#x27;)"):
        assert text in page
    ids = re.findall(r'id="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat across inline SVGs"


def test_html_without_plottable_numbers(tmp_path):
    only_nan = [HEADER, _case("i", "instance", {"holds"}, math.nan), {"record": "end"}]
    write_reports(tmp_path, only_nan)
    assert "<svg" not in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["ok"]


def test_results_round_trip_and_torn_tail(tmp_path):
    path = tmp_path / RESULTS
    with ResultsWriter(path) as writer:
        for record in records():
            writer.write(record)
    assert read_results(path) == json.loads(json.dumps(records()))
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"record": "case", "cla')
    assert len(read_results(path)) == len(records())
    assert path.read_bytes() != whole  # reading alone changes nothing
    read_results(path, repair_torn_tail=True)
    assert path.read_bytes() == whole


def test_short_writes_still_append_whole_lines(tmp_path, monkeypatch):
    """``os.write`` may write fewer bytes than asked; the writer goes on until the line is whole."""
    import os

    write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: write(fd, bytes(data[:7])))
    with ResultsWriter(tmp_path / RESULTS) as writer:
        for record in records():
            writer.write(record)
    monkeypatch.undo()
    assert read_results(tmp_path / RESULTS) == json.loads(json.dumps(records()))


@pytest.mark.parametrize("content, message", [
    (b"", "does not start with a header"),
    (b'{"record": "header", "schema_version": 1}\n[1, 2]\n', "line 2 is not a record"),
    (b'{"record": "header", "schema_version": 1}\n{oops}\n{"record": "end"}\n', "line 2 is not JSON"),
])
def test_unreadable_results_name_the_line(tmp_path, content, message):
    (tmp_path / RESULTS).write_bytes(content)
    with pytest.raises(InvalidArgument, match="Fix:") as info:
        read_results(tmp_path / RESULTS, repair_torn_tail=True)
    assert message in str(info.value) and (tmp_path / RESULTS).read_bytes() == content
