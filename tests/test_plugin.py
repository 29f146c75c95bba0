"""The pytest plugin in real pytest sessions (pytester): options, device/dtype parametrization,
verdict summary and reports, xdist merging, GPU pinning per worker.

Sessions that run tests go through subprocesses: an in-process run would unload the torch modules
first imported inside it, and torch cannot register its operators twice in one process."""

import json

import pytest
from hypothesis import given, strategies as st

from theorycheck.core import threads
from theorycheck.core.verdict import STATUSES

SUITE = '''
import pytest, torch
from hypothesis import given, strategies as st
import theorycheck as tc
from theorycheck.core.devices import dtype_of
from theorycheck.generate.models import NetworkSpec, build_network

SEEDED = lambda seed: torch.Generator().manual_seed(seed)

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("width", [3, 5, 8])
def test_homogeneity(width, bias, tc_device, tc_dtype):
    model = build_network(NetworkSpec(widths=(width,), bias=bias), seed=width, device=tc_device, dtype=dtype_of(tc_dtype))
    verdict = tc.check_homogeneity(model, torch.randn(6, 4, generator=SEEDED(width), dtype=dtype_of(tc_dtype)))
    assert verdict.status == ("vacuous" if bias else "holds")

@pytest.mark.theorycheck  # the theorycheck profile (ci: no deadline), as for tc_device tests
@given(width=st.integers(1, 6))
def test_property(width):
    model = build_network(NetworkSpec(widths=(width,)), seed=width)
    verdict = tc.check_homogeneity(model, torch.randn(3, 4, generator=SEEDED(width), dtype=torch.float64))
    assert verdict.status in ("holds", "inconclusive")  # a dead width-1 ReLU net outputs 0: inconclusive

def test_fails_after_a_verdict():
    model = build_network(NetworkSpec(bias=True))
    tc.assert_homogeneity(model, torch.randn(3, 4, generator=SEEDED(0), dtype=torch.float64))
'''


def _verdict_table(lines):
    """The terminal summary's claim x status table as {claim: {status: n, "total": n}}."""
    start = next(i for i, line in enumerate(lines) if "theorycheck verdicts" in line)
    head = lines[start + 1].split()
    table = {}
    for line in lines[start + 2:]:
        cells = line.split()
        if len(cells) != len(head) or not cells[1].isdigit():
            break
        table[cells[0]] = dict(zip(head[1:], map(int, cells[1:])))
    return table


def _report(directory):
    return json.loads((directory / "report.json").read_text())


def test_help_lists_options_under_one_prefix(pytester):
    result = pytester.runpytest_inprocess("--help")
    text = result.stdout.str()
    assert "theorycheck: theorems under test" in text
    for option in ("--theorycheck-devices", "--theorycheck-dtypes", "--theorycheck-profile", "--theorycheck-report"):
        assert option in text
    assert "(default: no report)" in text


def test_serial_and_xdist_give_the_same_verdicts(pytester, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # no GPU needed: pinning only rewrites the variable
    # not when this suite itself runs under xdist, and no thread setting of the user's (which would win)
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", *threads.THREAD_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest('''
import os, pathlib, torch
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")
pathlib.Path("pinned-" + WORKER).write_text(f"{os.environ.get('CUDA_VISIBLE_DEVICES')} {torch.cuda.is_initialized()}")

def pytest_runtest_setup(item):  # xdist workers' stdout does not reach the controller
    pathlib.Path("threads-" + WORKER).write_text(str(torch.get_num_threads()))
''')
    serial = pytester.runpytest_subprocess("-p", "no:xdist", "-rs")
    serial.assert_outcomes(passed=13, failed=1, skipped=12)
    text = serial.stdout.str()
    assert "CUDA requested but torch sees no GPU" in text and "PytestUnknownMarkWarning" not in text
    assert "1 verdict(s) were decided in failing tests" in text

    parallel = pytester.runpytest_subprocess("--theorycheck-report", "parallel", "-n", "2", "-p", "xdist",
                                             "--junitxml", "junit.xml")
    parallel.assert_outcomes(passed=13, failed=1, skipped=12)
    assert "theorycheck report: parallel/report.html" in parallel.stdout.str()
    tables = [_verdict_table(run.stdout.lines) for run in (serial, parallel)]
    assert tables[0] == tables[1] and tables[0]["homogeneity"]["vacuous"] == 6 + 1
    assert tables[0]["homogeneity"]["holds"] >= 6 + 6 and tables[0]["homogeneity"]["violated"] == 0
    report = _report(pytester.path / "parallel")  # merged from both workers
    assert report["source"] == "pytest" and report["summary"]["cases"] == tables[0]["homogeneity"]["total"]
    assert report["settings"]["devices"] == ["cpu"] and report["settings"]["dtypes"] == ["float32", "float64"]
    assert report["summary"]["by_status"] == {s: tables[0]["homogeneity"][s] for s in STATUSES}
    [failing] = report["claims"]["homogeneity"]["results"][0]["counterexamples"]
    assert "test_fails_after_a_verdict" in failing["reproduce"] and report["summary"]["exit_code"] == 1
    assert "theorycheck_verdicts" not in (pytester.path / "junit.xml").read_text()  # kept out of JUnit XML
    assert {p.name for p in (pytester.path / "parallel").iterdir()} == \
        {"results.jsonl", "report.json", "report.md", "report.html", ".theorycheck-audit"}
    # conftests ran in each worker after its GPU was chosen (worker N takes entry N), CUDA not started
    assert (pytester.path / "pinned-gw0").read_text() == "3 False"
    assert (pytester.path / "pinned-gw1").read_text() == "5 False"
    assert (pytester.path / "pinned-main").read_text() == "3,5 False"
    # each worker runs torch on its share of the cores
    share = str(max(1, threads.available_cores() // 2))
    assert [(pytester.path / f"threads-gw{k}").read_text() for k in (0, 1)] == [share, share]


def test_an_unwritable_report_directory_exits_2(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    (pytester.path / "blocker").write_text("keep")
    result = pytester.runpytest_subprocess("--theorycheck-report", "blocker/sub", "-p", "no:xdist")
    assert result.ret == 2
    assert "expected a writable --theorycheck-report folder" in result.stderr.str() and "Fix:" in result.stderr.str()
    assert (pytester.path / "blocker").read_text() == "keep"


def test_a_folder_theorycheck_did_not_write_is_refused_untouched(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    (pytester.path / "mine").mkdir()
    (pytester.path / "mine" / "report.md").write_text("my notes")
    for folder, message in (("mine", "holds report.md and no .theorycheck-audit"), ("", "got an empty name")):
        result = pytester.runpytest_subprocess("--theorycheck-report", folder, "-p", "no:xdist")
        assert result.ret == 2 and message in result.stderr.str() and "Fix:" in result.stderr.str()
    assert [p.name for p in (pytester.path / "mine").iterdir()] == ["report.md"]
    assert (pytester.path / "mine" / "report.md").read_text() == "my notes"


PROBE = '''
import pytest
from hypothesis import given, settings, strategies as st

def seen(name, test):  # the settings @given runs this test with
    with open("seen.txt", "a") as out:
        out.write(f"{name} {test._hypothesis_internal_use_settings.max_examples}\\n")

@given(st.integers())
def test_plain(n):
    seen("plain", test_plain)

@given(n=st.integers())
def test_tc(n, tc_device):
    seen("tc", test_tc)

@pytest.mark.theorycheck
@given(st.integers())
def test_marked(n):
    seen("marked", test_marked)

@settings(max_examples=3)
@given(n=st.integers())
def test_own(n, tc_device):
    seen("own", test_own)
'''
USER_PROFILES = '''
from hypothesis import settings
settings.register_profile("mine", max_examples=7)
settings.register_profile("mine2", max_examples=9)
'''


# Hypothesis loads its own `ci` profile under $CI: with it and without it the theorycheck tests get the
# plugin's profile and the user's tests theirs (each scenario once with and once without $CI, spread over
# the scenarios: every run starts a pytest process)
@pytest.mark.parametrize("ci_variable, conftest, args, expected", [
    (None, "", (), {"plain": 100, "tc": 25, "marked": 25, "own": 3}),  # the user's tests keep Hypothesis' default
    ("true", "", (), {"plain": 100, "tc": 25, "marked": 25, "own": 3}),
    (None, USER_PROFILES + "settings.load_profile('mine')\n", (), {"plain": 7, "tc": 7, "marked": 7, "own": 3}),
    ("true", USER_PROFILES + "settings.load_profile('mine')\n", ("--hypothesis-profile", "mine2"),
     {"plain": 9, "tc": 9, "marked": 9, "own": 3}),
    (None, USER_PROFILES, ("--hypothesis-profile", "mine"), {"plain": 7, "tc": 7, "marked": 7, "own": 3}),
    ("true", "", ("--theorycheck-profile", "dev"), {"plain": 100, "tc": 60, "marked": 60, "own": 3}),
])
def test_hypothesis_settings_change_only_for_theorycheck_tests(pytester, monkeypatch, ci_variable, conftest, args,
                                                              expected):
    if ci_variable is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci_variable)
    pytester.makepyfile(test_probe=PROBE)
    pytester.makeconftest(conftest)
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--theorycheck-devices", "cpu", *args)
    result.assert_outcomes(passed=4)
    seen = dict(line.split() for line in set((pytester.path / "seen.txt").read_text().splitlines()))
    assert {name: int(n) for name, n in seen.items()} == expected


def test_an_existing_audit_needs_the_replace_flag(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    out = pytester.path / "out"
    out.mkdir()
    (out / ".theorycheck-audit").touch()
    (out / "results.jsonl").write_text("an audit\n")
    refused = pytester.runpytest_subprocess("--theorycheck-report", "out", "-p", "no:xdist")
    assert refused.ret == 2 and (out / "results.jsonl").read_text() == "an audit\n"
    message = refused.stderr.str()
    assert "already holds results.jsonl" in message and "Fix: --theorycheck-replace" in message
    replaced = pytester.runpytest_subprocess("--theorycheck-report", "out", "--theorycheck-replace", "-p", "no:xdist")
    assert replaced.ret == 0 and _report(out)["source"] == "pytest"
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "report.json", "report.md", "report.html",
                                               ".theorycheck-audit"}


def test_a_rejected_report_directory_is_not_created(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    result = pytester.runpytest_inprocess("--theorycheck-report", "new/out", "--theorycheck-profile", "nope",
                                          "-p", "no:xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "Fix: --theorycheck-profile=ci" in result.stderr.str()
    assert not (pytester.path / "new").exists()


def test_a_report_that_cannot_be_written_exits_2_and_writes_nothing(pytester):
    pytester.makepyfile(test_a="def test_a(): pass")
    (pytester.path / "out" / "report.html").mkdir(parents=True)  # the last file cannot be written
    (pytester.path / "out" / ".theorycheck-audit").touch()
    result = pytester.runpytest_subprocess("--theorycheck-report", "out", "-p", "no:xdist")
    assert result.ret == 2 and "report.html there is a directory" in result.stdout.str()
    assert sorted(p.name for p in (pytester.path / "out").iterdir()) == [".theorycheck-audit", "report.html"]


@given(n=st.integers())
def test_this_suite_runs_its_property_tests_under_the_theorycheck_profile(n, pytestconfig):
    """The project's conftest marks its tests as theorycheck tests: ``ci`` unless a profile was chosen."""
    from theorycheck.harness.plugin import _user_chose_a_profile, chosen_profile
    from theorycheck.core.profiles import profile_settings

    name = chosen_profile(pytestconfig) or (None if _user_chose_a_profile(pytestconfig) else "ci")
    used = test_this_suite_runs_its_property_tests_under_the_theorycheck_profile._hypothesis_internal_use_settings
    assert name is None or used is profile_settings(name)
