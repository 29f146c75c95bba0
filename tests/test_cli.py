"""The ``theorycheck`` command: list, audit (exit codes, resume, budget, bad input), report."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_fake_claim

import theorycheck as tc
from theorycheck.core import devices, registry
from theorycheck.harness.cli import main


def run_cli(*argv):
    return main([str(a) for a in argv])


def case_records(directory):
    lines = (Path(directory) / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["record"] == "case"]


def verdicts_by_case(directory):
    """(claim, device, dtype, case) -> verdict, without timings."""
    return {(r["claim"], r["device"], r["dtype"], r["case"]): (r["status"], r["verdict"]) for r in case_records(directory)}


def test_list_prints_every_claim(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    for claim in tc.CLAIMS.values():
        assert claim.id in out and claim.statement in out and claim.source in out
        assert all(assumption in out for assumption in claim.assumptions)


def test_audit_passes_and_writes_every_file(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    out = tmp_path / "audit"
    assert run_cli("audit", "--claims", "fake", "--examples", 4, "--out", out) == 0
    assert sorted(p.name for p in out.iterdir()) == [".theorycheck-audit", "report.html", "report.json", "report.md",
                                                     "results.jsonl"]
    printed = capsys.readouterr().out
    assert "fake" in printed and " s " in printed and "8/8 cases" in printed  # time per claim
    report = json.loads((out / "report.json").read_text())
    group = report["claims"]["fake"]["results"][0]
    assert report["summary"]["exit_code"] == 0 and report["complete"]
    assert group["by_status"] == {"control": {"holds": 0, "violated": 4, "vacuous": 0, "inconclusive": 0},
                                  "instance": {"holds": 4, "violated": 0, "vacuous": 0, "inconclusive": 0}}
    assert report["settings"]["seed"] == 0 and report["environment"]["versions"]["torch"]


@pytest.mark.parametrize("flaw, status", [("uncaught", "holds"), ("violated", "violated"), ("raises", "error")])
def test_audit_exits_1_on_a_counterexample(tmp_path, fake_claims, capsys, flaw, status):
    fake_claims(make_fake_claim("fake", flaw=flaw))
    assert run_cli("audit", "--claims", "fake", "--examples", 3, "--out", tmp_path) == 1
    printed = capsys.readouterr().out
    assert "UNEXPECTED fake" in printed and "reproduce: fake_case(0," in printed
    [found] = json.loads((tmp_path / "report.json").read_text())["claims"]["fake"]["results"][0]["counterexamples"]
    assert found["status"] == status and found["reproduce"].startswith("fake_case(0,")
    assert {"uncaught": "negative control not caught", "violated": "too big", "raises": "fake checker bug"}[flaw] \
        in found["reason"]


def test_a_failing_case_generator_is_recorded_and_the_audit_goes_on(tmp_path, fake_claims, capsys):
    import dataclasses

    def broken(**_):
        raise RuntimeError("generator bug")
        yield

    fake_claims(dataclasses.replace(make_fake_claim("broken"), audit_cases=broken), make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "broken,fake", "--examples", 2, "--out", tmp_path) == 1
    printed = capsys.readouterr().out
    assert "generator bug" in printed and "tc.CLAIMS['broken'].audit_cases(n=2, seed=0" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["claims"]["broken"]["results"][0]["by_status"] == {
        "instance": {"holds": 0, "violated": 0, "vacuous": 0, "inconclusive": 0, "error": 1}}
    assert report["claims"]["fake"]["results"][0]["ok"]


def test_same_seed_gives_same_verdicts(tmp_path, fake_claims):
    fake_claims(make_fake_claim("fake"))
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        assert run_cli("audit", "--claims", "fake", "--examples", 3, "--budget", 0, "--seed", seed,
                       "--out", tmp_path / name) == 0
    assert verdicts_by_case(tmp_path / "a") == verdicts_by_case(tmp_path / "b")
    assert verdicts_by_case(tmp_path / "a") != verdicts_by_case(tmp_path / "c")


def test_budget_stops_a_claim_early_after_both_kinds(tmp_path, fake_claims):
    fake_claims(make_fake_claim("slow", delay=0.05), make_fake_claim("fast"))
    assert run_cli("audit", "--claims", "slow,fast", "--examples", "fast=2,10", "--budget", "0.12,fast=0",
                   "--out", tmp_path) == 3  # INCOMPLETE
    report = json.loads((tmp_path / "report.json").read_text())
    slow, fast = (report["claims"][c]["results"][0] for c in ("slow", "fast"))
    assert slow["planned"] == 20 and 2 <= slow["run"] < 20 and slow["not_run"] == 20 - slow["run"]
    assert set(slow["by_status"]) == {"instance", "control"}  # interleaved: both kinds ran
    assert fast["run"] == fast["planned"] == 4
    assert "not run" in (tmp_path / "report.md").read_text()
    assert run_cli("report", tmp_path) == 3 and run_cli("report", tmp_path, "--allow-incomplete") == 0


def test_report_command_rerenders(tmp_path, fake_claims):
    fake_claims(make_fake_claim("fake", flaw="uncaught"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 1
    for name in ("report.json", "report.md", "report.html"):
        (tmp_path / name).unlink()
    assert run_cli("report", tmp_path) == 1
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["counterexamples"] == 1
    assert (tmp_path / "report.html").read_text().count("<svg") >= 2


def _usage_error(capsys, *argv):
    code = run_cli(*argv)
    err = capsys.readouterr().err
    assert code == 2, err
    return err


@pytest.mark.parametrize("argv, message", [
    (("--claims", "homogeneity,nope"), "unknown: ['nope']"),
    (("--devices", "tpu"), "expected a comma-separated list of devices"),
    (("--dtypes", "float16"), "expected a comma-separated list of dtypes"),
    (("--examples", "many"), "expected --examples as N"),
    (("--examples", "0"), "at least 1 example"),
    (("--budget", "5,nope=3"), "expected --budget as N"),
    (("--budget", "nan"), "expected --budget as N"),
])
def test_bad_audit_options_exit_2(tmp_path, capsys, argv, message):
    err = _usage_error(capsys, "audit", *argv, "--out", tmp_path / "out")
    assert message in err and "Fix:" in err
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.skipif(devices.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_exits_2(tmp_path, capsys):
    err = _usage_error(capsys, "audit", "--devices", "cpu,cuda", "--out", tmp_path)
    assert "torch sees no CUDA GPU" in err and "Fix:" in err


def test_unwritable_output_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    err = _usage_error(capsys, "audit", "--out", blocker / "sub")
    assert "expected a writable --out folder" in err and "Fix:" in err
    assert blocker.read_text() == "keep me"


def test_existing_audit_is_never_overwritten(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    err = _usage_error(capsys, "audit", "--claims", "fake", "--out", tmp_path)
    assert "--resume" in err and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    err = _usage_error(capsys, "audit", "--resume", tmp_path, "--seed", "3")
    assert "expected --resume alone" in err and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_folders_theorycheck_did_not_write_are_refused_untouched(tmp_path, fake_claims, capsys, monkeypatch):
    """Only a new or empty folder, or one holding theorycheck's marker, is written into: a user's folder
    (report.md of their own, no results.jsonl) is refused by audit, report and merge; so is an empty name."""
    fake_claims(make_fake_claim("fake"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    (tmp_path / "empty").mkdir()
    assert run_cli("audit", "--claims", "fake", "--examples", 1, "--shard", "1/1", "--out", tmp_path / "empty") == 0
    foreign = "expected --out to name a new or empty folder, or one theorycheck wrote (it holds .theorycheck-audit)"
    for argv in (("audit", "--claims", "fake", "--out", mine), ("audit", "--claims", "fake", "--replace", "--out", mine),
                 ("report", "--merge", tmp_path / "empty", "--out", mine)):
        err = _usage_error(capsys, *argv)
        assert foreign in err and "holds report.md and no .theorycheck-audit" in err and "Fix:" in err
    (tmp_path / "empty" / ".theorycheck-audit").unlink()  # as an audit of an earlier theorycheck left it
    assert "touch " in _usage_error(capsys, "report", tmp_path / "empty")
    monkeypatch.chdir(mine)
    for flag in ("--out", "--resume"):
        assert f"expected {flag} to name a folder, but got an empty name" in _usage_error(capsys, "audit", flag, "")
    assert [p.name for p in mine.iterdir()] == ["report.md"] and (mine / "report.md").read_text() == "my notes"


def test_resume_across_versions_needs_force_and_records_both(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 3, "--out", tmp_path) == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    installed = header["environment"]["versions"]["torch"]
    header["environment"]["versions"]["torch"] = "1.0.0"
    (tmp_path / "results.jsonl").write_text(json.dumps(header) + "\n" + "".join(lines[1:5]))  # interrupted
    before = (tmp_path / "results.jsonl").read_bytes()
    err = _usage_error(capsys, "audit", "--resume", tmp_path)
    assert f"started with torch 1.0.0 (installed: {installed})" in err and "--force-version" in err
    assert (tmp_path / "results.jsonl").read_bytes() == before
    assert run_cli("audit", "--resume", tmp_path, "--force-version") == 0
    assert f"resumed with torch {installed} (started with 1.0.0)" in (tmp_path / "report.md").read_text()
    assert "versions changed" in (tmp_path / "report.html").read_text()


def test_the_commit_is_the_audited_projects_only_when_named(tmp_path, fake_claims, capsys, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    git = ("git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t")
    for args in (("init", "-q"), ("commit", "-q", "--allow-empty", "-m", "x")):
        subprocess.run([*git, *args], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    fake_claims(make_fake_claim("fake"))
    monkeypatch.chdir(tmp_path)  # not a git checkout
    assert run_cli("audit", "--claims", "fake", "--examples", 1, "--commit-from", project, "--out", "named") == 0
    assert run_cli("audit", "--claims", "fake", "--examples", 1, "--out", "unnamed") == 0
    named, unnamed = (json.loads((tmp_path / d / "report.json").read_text())["environment"]["git"]
                      for d in ("named", "unnamed"))
    assert named["commit"] == head and named["of"] == "audited project"
    assert f"commit {head[:10]} of the audited project" in (tmp_path / "named" / "report.md").read_text()
    assert unnamed is None  # the working directory is no checkout: no commit claimed
    monkeypatch.chdir(project)
    assert run_cli("audit", "--claims", "fake", "--examples", 1, "--out", tmp_path / "cwd") == 0
    assert "of the working directory" in (tmp_path / "cwd" / "report.md").read_text()
    assert "expected --commit-from to name a folder inside a git checkout" in _usage_error(
        capsys, "audit", "--claims", "fake", "--commit-from", tmp_path, "--out", tmp_path / "x")


@pytest.mark.parametrize("source, message", [
    ("import math\nVALUE = 1 / 0\n", "raised ZeroDivisionError: division by zero (at {path}:2)"),
    ("def broken(:\n", "raised SyntaxError: invalid syntax (at {path}:1)"),
    ("import a_package_nobody_has\n", "raised ModuleNotFoundError: No module named 'a_package_nobody_has' (at {path}:1)"),
])
def test_a_failing_import_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, source, message):
    (tmp_path / "user_claims_tc.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(tmp_path)
    err = _usage_error(capsys, "audit", "--import", "user_claims_tc", "--out", tmp_path / "out")
    assert message.format(path=tmp_path / "user_claims_tc.py") in err and "Fix:" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("corruption, message", [
    (lambda text: text.replace("\n", "\n{not json\n", 2), "line 2 is not JSON"),
    (lambda text: text.split("\n", 1)[1], "does not start with a header"),
    (lambda text: text.replace('"schema_version": 1', '"schema_version": 99', 1), "schema version 99"),
])
def test_corrupt_results_on_resume_exit_2_untouched(tmp_path, fake_claims, capsys, corruption, message):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    results = tmp_path / "results.jsonl"
    results.write_text(corruption(results.read_text()))
    before = results.read_bytes()
    err = _usage_error(capsys, "audit", "--resume", tmp_path)
    assert message in err and "Fix:" in err and results.read_bytes() == before
    assert "Fix:" in _usage_error(capsys, "report", tmp_path)
    assert "there is none" in _usage_error(capsys, "audit", "--resume", tmp_path / "missing")


def test_resume_refuses_a_pytest_report(tmp_path, capsys):
    from theorycheck.report import ResultsWriter

    (tmp_path / ".theorycheck-audit").touch()
    with ResultsWriter(tmp_path / "results.jsonl") as writer:
        writer.write({"record": "header", "schema_version": 1, "source": "pytest", "settings": {}})
    assert "holds the report of a 'pytest' session" in _usage_error(capsys, "audit", "--resume", tmp_path)


def test_resume_finishes_a_cut_audit_with_identical_verdicts(tmp_path, fake_claims):
    """In-process: cut results.jsonl after a few cases (and a torn line), resume, compare."""
    fake_claims(make_fake_claim("fake"))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert run_cli("audit", "--claims", "fake", "--examples", 4, "--budget", 0, "--out", whole) == 0
    cut.mkdir()
    (cut / ".theorycheck-audit").touch()
    lines = (whole / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:6]) + lines[6][:25])  # torn last write
    assert run_cli("audit", "--resume", cut) == 0
    assert verdicts_by_case(cut) == verdicts_by_case(whole)
    records = [json.loads(line) for line in (cut / "results.jsonl").read_text().splitlines()]
    assert [r["record"] for r in records].count("resume") == 1 and records[-1]["record"] == "end"


KILL_ARGS = ("audit", "--claims", "slow,homogeneity", "--examples", "10", "--budget", "0")
SLOW_AUDIT = """import sys
sys.path.insert(0, {tests!r})
from conftest import make_fake_claim
from theorycheck.harness.cli import main
from theorycheck.core.registry import register
register(make_fake_claim("slow", delay=0.1))
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "audit"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._CLAIMS, "slow", make_fake_claim("slow"))
        code = run_cli(*KILL_ARGS, "--out", out)
    return out, code


def interruptible() -> None:
    """A subprocess's Ctrl-C restored to the default (a shell starts background jobs with SIGINT ignored, and
    Python then installs no KeyboardInterrupt handler): for the tests that interrupt an audit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_cases(path: Path, process, count: int, seconds: float = 120) -> None:
    """Wait until the running audit has written ``count`` case lines to ``path``. The file is read while
    it is written, so only newline-terminated lines count (a reader can see a line half copied)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        written = path.read_bytes() if path.exists() else b""
        if written[: written.rfind(b"\n") + 1].count(b'"record": "case"') >= count:
            return
        time.sleep(0.01)
    raise AssertionError(f"audit finished or stalled before {count} cases: {process.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_audit_resumes_to_the_uninterrupted_counts(tmp_path, uninterrupted, fake_claims, sig):
    """A subprocess audits a slow fake claim (0.1 s a case) then homogeneity; killed during the first,
    resumed in this process: the same verdicts, case by case, as an uninterrupted run."""
    out = tmp_path / "killed"
    script = SLOW_AUDIT.format(tests=str(Path(__file__).parent))
    process = subprocess.Popen([sys.executable, "-c", script, *KILL_ARGS, "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    wait_for_cases(out / "results.jsonl", process, 3)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert 3 <= len(case_records(out)) < 40
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "--resume" in err
        assert json.loads((out / "report.json").read_text())["complete"] is False
    fake_claims(make_fake_claim("slow"))
    whole, code = uninterrupted
    assert run_cli("audit", "--resume", out) == code
    resumed, expected = (json.loads((d / "report.json").read_text()) for d in (out, whole))
    assert resumed["summary"]["by_status"] == expected["summary"]["by_status"]
    assert resumed["summary"]["cases"] == expected["summary"]["cases"] == 40 and resumed["complete"]
    assert verdicts_by_case(out) == verdicts_by_case(whole)


def test_progress_bar_only_on_a_terminal():
    import io

    from theorycheck.harness.audit import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    plain, terminal = io.StringIO(), Terminal()
    for stream in (plain, terminal):
        Progress(stream).show("fake cpu/float64", 3, 10, 1.5)
    assert plain.getvalue() == "" and "3/10" in terminal.getvalue()


def test_per_claim_values():
    from theorycheck.harness.cli import per_claim

    assert per_claim(None, ["a", "b"], "examples", int, 20) == {"a": 20, "b": 20}
    assert per_claim("b=3", ["a", "b"], "examples", int, 20) == {"a": 20, "b": 3}
    assert per_claim("5, b=3", ["a", "b"], "budget", float, 15.0) == {"a": 5.0, "b": 3.0}
