"""Reproducible audits: every planned case by default, an opt-in budget reported as not run, an
INCOMPLETE headline, --replace, fresh default output, --resume refusing an inconsistent file."""

import functools
import json
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import make_fake_claim
from test_cli import _usage_error, case_records, interruptible, run_cli, verdicts_by_case, wait_for_cases

from theorycheck.report import render_reports
from theorycheck.report.summary import report_result


def _report(directory):
    return json.loads((Path(directory) / "report.json").read_text())


def _lines(directory):
    return (Path(directory) / "results.jsonl").read_text().splitlines(keepends=True)


def test_default_audit_runs_every_planned_case_without_a_budget(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 5, "--out", tmp_path) == 0
    report = _report(tmp_path)
    [group] = report["claims"]["fake"]["results"]
    assert report["settings"]["budget"] == {"fake": 0.0}
    assert group["planned"] == group["run"] == 10 and report_result(report) == "PASS"
    printed = capsys.readouterr().out
    assert f"{report['summary']['seconds']:.1f} s" in printed.splitlines()[-1]  # one time, as in the report
    assert (tmp_path / "report.md").read_text().startswith("# theorycheck audit: PASS")
    context = (tmp_path / "report.md").read_text().splitlines()[2]
    assert re.match(r"10 cases in \d+\.\d s wall time \(\d+\.\d s summed over the cases\)", context), context
    assert " · budget none · " in context and "budget 0.0" not in (tmp_path / "report.html").read_text()


def test_a_budget_cap_is_reported_as_not_run_and_incomplete(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("slow", delay=0.05))
    assert run_cli("audit", "--claims", "slow", "--examples", 10, "--budget", 0.12, "--out", tmp_path) == 3
    report = _report(tmp_path)
    not_run = report["summary"]["not_run"]
    assert not_run > 0 and report_result(report) == "INCOMPLETE" and not report["summary"]["ok"]
    assert f"({not_run} not run: budget)" in capsys.readouterr().out
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith(f"# theorycheck audit: INCOMPLETE: {not_run} of 20 planned cases not run")
    assert f"| {not_run} |" in markdown and "incomplete" in markdown


def test_an_interrupted_or_empty_audit_is_not_pass(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 3, "--out", tmp_path) == 0
    lines = _lines(tmp_path)
    (tmp_path / "results.jsonl").write_text("".join(lines[:-1]))  # no end record: interrupted
    assert run_cli("report", tmp_path) == 3
    assert "INCOMPLETE" in capsys.readouterr().out
    assert (tmp_path / "report.md").read_text().startswith("# theorycheck audit: INCOMPLETE: interrupted")
    (tmp_path / "results.jsonl").write_text(lines[0])  # header only: 0 cases
    assert run_cli("report", tmp_path) == 1
    report = _report(tmp_path)
    assert report_result(report) == "INCOMPLETE" and report["summary"]["cases"] == 0
    assert "no cases" in (tmp_path / "report.md").read_text().splitlines()[0]


def test_replace_flag(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    before = (tmp_path / "results.jsonl").read_bytes()
    assert "--replace" in _usage_error(capsys, "audit", "--claims", "fake", "--out", tmp_path)
    assert (tmp_path / "results.jsonl").read_bytes() == before
    assert "--replace" in _usage_error(capsys, "audit", "--resume", tmp_path, "--replace")
    assert "unknown" in _usage_error(capsys, "audit", "--claims", "nope", "--out", tmp_path, "--replace")
    assert (tmp_path / "results.jsonl").read_bytes() == before  # a refused replacement changes nothing
    assert run_cli("audit", "--claims", "fake", "--examples", 3, "--seed", 1, "--out", tmp_path, "--replace") == 0
    assert len(case_records(tmp_path)) == 6 and _report(tmp_path)["settings"]["seed"] == 1


def test_default_output_is_a_fresh_directory(tmp_path, fake_claims, monkeypatch):
    fake_claims(make_fake_claim("fake"))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run_cli("audit", "--claims", "fake", "--examples", 2) == 0
    first, second = sorted((tmp_path / "audit-out").iterdir())
    assert verdicts_by_case(first) == verdicts_by_case(second)


@pytest.mark.parametrize("edit, message", [
    (lambda lines: [lines[0].replace('"seed": 0', '"seed": 5'), *lines[1:]], "seed 0 (header: 5)"),
    (lambda lines: [*lines, lines[1].replace('"fake"', '"other"'), lines[2].replace('"fake"', '"other"')],
     "cpu/float64, outside the header's claims ['fake']"),
    (lambda lines: [*lines, lines[3]], "is recorded twice"),
    (lambda lines: [*lines, lines[2].replace('"instance-0"', '"instance-99"')], "'instance-99' of fake"),
])
def test_resume_refuses_an_inconsistent_results_file(tmp_path, fake_claims, capsys, edit, message):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    lines = _lines(tmp_path)[:-1]  # interrupted: no end record
    (tmp_path / "results.jsonl").write_text("".join(edit(lines)) + '{"record": "ca')  # and a torn tail
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for argv in (("audit", "--resume", tmp_path), ("report", tmp_path)):
        err = _usage_error(capsys, *argv)
        assert message in err and "Fix:" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_in_process_audits_keep_their_verdicts_out_of_enclosing_collectors(tmp_path, fake_claims):
    from theorycheck.core.verdict import collecting_verdicts

    fake_claims(make_fake_claim("fake"))
    with collecting_verdicts() as found:
        assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    assert found == [] and len(case_records(tmp_path)) == 4


def test_worker_processes_record_what_one_process_records(tmp_path, capsys):
    """--jobs 2 runs the cases in two worker processes; the records (order, statuses, verdicts, reproduce lines)
    equal those of --jobs 1, and kkt's cases still run on the margin claim's flows of the same name."""
    args = ("audit", "--claims", "homogeneity,margin_monotone,kkt", "--examples", "1")
    assert run_cli(*args, "--jobs", "1", "--out", tmp_path / "one") == 0
    assert run_cli(*args, "--jobs", "2", "--out", tmp_path / "two") == 0
    one, two = case_records(tmp_path / "one"), case_records(tmp_path / "two")
    assert [r["case"] for r in one] == [r["case"] for r in two]
    assert verdicts_by_case(tmp_path / "one") == verdicts_by_case(tmp_path / "two")
    assert [r["reproduce"] for r in one] == [r["reproduce"] for r in two]
    # the workers drew the page's plots: the page equals one drawn afresh in this process from the same records
    drawn_by_workers = (tmp_path / "two" / "report.html").read_text()
    render_reports(tmp_path / "two")
    same_time = functools.partial(re.sub, r"<td>generated</td><td><code>[^<]*</code>", "<td>generated</td>")
    assert same_time(drawn_by_workers) == same_time((tmp_path / "two" / "report.html").read_text())
    assert drawn_by_workers.count("<svg") >= 3


def test_an_interruption_keeps_the_cases_the_workers_finished(tmp_path):
    """Cases of later groups that finished before Ctrl-C are recorded (after their group's plan), so a resume
    does not run them again; queued, cancelled or failed ones are not, nor one the file already holds (the
    interruption came between its write and its bookkeeping), and a torn last line is cut off first."""
    from concurrent.futures import Future

    from theorycheck.harness.audit import _keep_finished, group_record
    from theorycheck.harness.plan import AuditSettings
    from theorycheck.report import SCHEMA_VERSION, ResultsWriter, case_record

    settings = AuditSettings(claims=("a", "b"), examples={"a": 2, "b": 2}, budget={"a": 0, "b": 0})
    plans = {key: ([types.SimpleNamespace(name=n) for n in ("x", "y", "z")], None)
             for key in (("a", "cpu", "float64"), ("b", "cpu", "float64"))}
    a, b = plans

    def case(key, name):
        return case_record(claim=key[0], device=key[1], dtype=key[2], case=name, kind="instance",
                           expected=None, status="holds")

    def future(state, key, name):
        f = Future()
        if state == "done":
            f.set_result(case(key, name))
        elif state == "failed":
            f.set_exception(RuntimeError("worker died"))
        elif state == "cancelled":
            f.cancel()
        return f

    states = {a: ("done", "done", "failed"), b: ("done", "queued", "cancelled")}
    submitted = {key: {n: future(state, key, n) for n, state in zip("xyz", states[key])} for key in plans}
    header = {"record": "header", "schema_version": SCHEMA_VERSION, "source": "audit", "settings": settings.to_dict()}
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as writer:
        for record in (header, group_record(a, settings, ["x", "y", "z"]), case(a, "x"), case(a, "y")):
            writer.write(record)  # a's case y is in the file although the audit had not counted it
        with open(path, "ab") as torn:
            torn.write(b'{"record": "case", "cla')  # a write cut short
        _keep_finished([a, b], plans, submitted, settings, writer)
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert written[4:] == [group_record(b, settings, ["x", "y", "z"]), case(b, "x")] and len(written) == 6


def test_jobs_default_to_the_cores_the_process_may_use(monkeypatch):
    from theorycheck.core.threads import available_cores
    from theorycheck.harness.cli import MAX_AUTO_JOBS, parse_jobs

    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert parse_jobs(None) == parse_jobs("auto") == min(MAX_AUTO_JOBS, available_cores())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's thread budget
    assert parse_jobs(None) == min(MAX_AUTO_JOBS, 3)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(available_cores()))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as pin_worker_threads leaves it in an xdist worker
    assert parse_jobs(None) == 1 and parse_jobs("3") == 3


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_bad_jobs_are_refused_before_anything_is_written(tmp_path, capsys, bad):
    code = run_cli("audit", "--claims", "homogeneity", "--jobs", bad, "--out", tmp_path / "out")
    assert code == 2 and not (tmp_path / "out").exists()
    assert "expected --jobs N with N >= 1, or auto" in capsys.readouterr().err


def test_claims_the_workers_cannot_import_run_in_this_process_and_say_so(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake,homogeneity", "--examples", 2, "--jobs", 2, "--out", tmp_path) == 0
    assert "worker processes would not have the claims ['fake']" in capsys.readouterr().err
    assert {r["claim"] for r in case_records(tmp_path)} == {"fake", "homogeneity"}


CLI = "import sys; from theorycheck.harness.cli import main; sys.exit(main(sys.argv[1:]))"


def test_ctrl_c_during_a_worker_audit_keeps_finished_cases_and_resumes_to_the_plan(tmp_path):
    """Ctrl-C while two workers run random_label_margin (about a second a case): the audit exits 130, keeps
    every case the workers had finished (later groups' too, each after its plan record) and --resume runs only
    the rest, to the whole plan."""
    out = tmp_path / "audit"
    process = subprocess.Popen([sys.executable, "-c", CLI, "audit", "--claims",
                                "homogeneity,random_label_margin,layer_balance", "--examples", "4", "--jobs", "2",
                                "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=interruptible)
    wait_for_cases(out / "results.jsonl", process, 10)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    kept = case_records(out)
    assert process.returncode == 130 and "--resume" in err and 10 <= len(kept) < 24
    assert len({(r["claim"], r["case"]) for r in kept}) == len(kept)
    assert run_cli("audit", "--resume", out) == 0
    resumed = case_records(out)
    assert len(resumed) == 24 and resumed[:len(kept)] == kept
    assert json.loads((out / "report.json").read_text())["complete"]


def test_workers_that_cannot_draw_the_plots_leave_them_to_this_process(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    from theorycheck.harness.workers import CaseWorkers

    def broken(self, cases_by_group):
        raise BrokenProcessPool("a worker died after the last case")

    monkeypatch.setattr(CaseWorkers, "plots", broken)
    assert run_cli("audit", "--claims", "homogeneity", "--examples", 2, "--jobs", 2, "--out", tmp_path) == 0
    assert (tmp_path / "report.html").read_text().count("<svg") >= 1


def _audit_with_dying_claims(out: Path, **environment) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", CLI, "audit", "--import", "dying_claims", "--claims",
                           "dying,homogeneity", "--examples", "6", "--jobs", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), **environment})


def test_a_worker_that_dies_costs_its_case_only(tmp_path):
    """instance-3 of the dying claim kills its worker: that case is an error saying so (exit 1: unexpected), the
    cases queued behind it run in a fresh worker, and the audit completes to its plan."""
    audit = _audit_with_dying_claims(tmp_path / "audit")
    records = case_records(tmp_path / "audit")
    assert audit.returncode == 1, audit.stderr
    assert len(records) == len({(r["claim"], r["case"]) for r in records}) == 24
    errors = [r for r in records if r["status"] == "error"]
    assert [(r["claim"], r["case"], r["outcome"]) for r in errors] == [("dying", "instance-3", "unexpected")]
    assert "worker process died while running this case" in errors[0]["error"]
    assert "UNEXPECTED dying cpu/float64 instance-3" in audit.stdout
    assert json.loads((tmp_path / "audit" / "report.json").read_text())["complete"]


def test_workers_that_die_at_their_start_are_an_error_naming_the_fix(tmp_path):
    audit = _audit_with_dying_claims(tmp_path / "audit", DYING_AT_START="1")
    assert audit.returncode == 2, audit.stderr
    assert "died while starting" in audit.stderr and "--jobs 1" in audit.stderr
