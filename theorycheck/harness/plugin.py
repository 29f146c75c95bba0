"""The pytest plugin (entry point ``pytest11``): device/dtype parametrization, verdict collection.

- A test asking for the fixtures ``tc_device`` / ``tc_dtype`` runs once per device and dtype, with ids
  like ``test_homogeneity[cpu-float64]``; CUDA cases skip with a stated reason when no GPU is present.
- Every Verdict decided during a test (setup, call, teardown) is collected and attached to that
  phase's report as the extra attribute ``theorycheck_verdicts`` (reports carry extra attributes
  through xdist's serialization; unlike ``user_properties`` they stay out of JUnit XML), so the
  workers' verdicts reach the controller with the reports and the merged counts equal a serial run's.
- The terminal summary shows a claim x status table; ``--theorycheck-report DIR`` writes
  results.jsonl, report.json, report.md and report.html there (as ``theorycheck audit`` does), only
  into a new or empty folder or one theorycheck wrote (it holds ``.theorycheck-audit``), locked while
  written; a DIR already holding results.jsonl is refused (exit 2) unless ``--theorycheck-replace``.
- Hypothesis settings change only for theorycheck tests (using ``tc_device`` / ``tc_dtype`` or marked
  ``theorycheck``) without their own ``@settings``: ``--theorycheck-profile`` / ``$THEORYCHECK_PROFILE``
  if given, else ``ci`` unless the user chose a profile (``settings.load_profile`` in a conftest,
  ``--hypothesis-profile``), which then stays. Hypothesis' own ``ci`` profile, which it loads by itself
  when it sees a CI environment variable, is not the user's choice. Other tests keep the user's settings.
- Under pytest-xdist each worker is pinned to one GPU before any conftest can start CUDA, and to its
  share of the CPU cores (cores // workers torch threads) unless ``OMP_NUM_THREADS`` is set.

Importing this module is cheap and nothing here starts CUDA.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

REPORT_ATTRIBUTE = "theorycheck_verdicts"
_PHASE_VERDICTS = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("theorycheck", "theorycheck: theorems under test")
    group.addoption("--theorycheck-devices", default="cpu,cuda",
                    help="comma-separated devices for claim tests (default: cpu,cuda; cuda skips without a GPU)")
    group.addoption("--theorycheck-dtypes", default="float64,float32",
                    help="comma-separated dtypes for claim tests (default: float64,float32)")
    group.addoption("--theorycheck-profile", default=None,
                    help="Hypothesis profile for theorycheck tests (tc_device/tc_dtype fixtures or the theorycheck "
                         "marker, without their own @settings): ci (fast), thorough (long runs) or dev; other tests "
                         "are never changed (default: $THEORYCHECK_PROFILE, else ci unless a conftest or "
                         "--hypothesis-profile chose a profile)")
    group.addoption("--theorycheck-report", default=None, metavar="DIR",
                    help="write the verdicts of the session to DIR: results.jsonl, report.json, report.md, "
                         "report.html; refused if DIR holds results.jsonl (default: no report)")
    group.addoption("--theorycheck-replace", action="store_true", default=False,
                    help="let --theorycheck-report replace the audit or report already in DIR (default: refuse)")


def _pin_worker() -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from ..core.threads import pin_worker_threads

        pin_worker_threads()  # before torch is imported, so its thread pool starts at the worker's share
        from ..core.devices import pin_xdist_worker_to_gpu

        pin_xdist_worker_to_gpu()


def pytest_load_initial_conftests(early_config, parser, args):
    """Pin this xdist worker to its GPU before conftests are imported (they may start CUDA); note the
    Hypothesis profile the environment chose before any conftest could choose one."""
    _pin_worker()
    from hypothesis import settings

    name = _current_profile()
    early_config.stash[_AMBIENT_PROFILE] = (name, settings.get_profile(name))


_AMBIENT_PROFILE = pytest.StashKey[tuple]()  # (name, settings) before conftests: Hypothesis' choice, not the user's


def pytest_configure(config):
    _pin_worker()  # idempotent; covers `-p theorycheck.harness.plugin` registered after the early hook
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped with a reason without one)")
    config.addinivalue_line("markers", "theorycheck: a theorycheck test: the --theorycheck-profile Hypothesis "
                                       "profile applies (as for tests using tc_device / tc_dtype)")
    chosen_profile(config)  # a bad name is a usage error before anything runs
    if not hasattr(config, "workerinput"):  # the controller (or a serial run) merges and reports
        config.pluginmanager.register(VerdictSession(config), "theorycheck-verdicts")


def chosen_profile(config) -> str | None:
    """The profile named by ``--theorycheck-profile`` or ``$THEORYCHECK_PROFILE``, else None."""
    name = config.getoption("--theorycheck-profile") or os.environ.get("THEORYCHECK_PROFILE") or None
    if name is not None:
        from ..core.profiles import PROFILES

        if name not in PROFILES:
            raise pytest.UsageError(f"expected a theorycheck Hypothesis profile in {PROFILES}, but got {name!r} "
                                    "(--theorycheck-profile or $THEORYCHECK_PROFILE). Fix: --theorycheck-profile=ci")
    return name


def is_theorycheck_test(item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return "tc_device" in fixtures or "tc_dtype" in fixtures or item.get_closest_marker("theorycheck") is not None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Give theorycheck tests the theorycheck profile (see the module docstring); touch no other test."""
    tests = [item for item in items if is_theorycheck_test(item)]
    name = chosen_profile(config)
    if not tests or name is None and _user_chose_a_profile(config):
        return
    from ..core.profiles import profile_settings

    profile = profile_settings(name or "ci")
    for item in tests:
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        inner = getattr(getattr(test, "hypothesis", None), "inner_test", None)
        if getattr(test, "is_hypothesis_test", False) and not any(
                getattr(f, "_hypothesis_internal_settings_applied", False) for f in (test, inner)):
            test._hypothesis_internal_use_settings = profile  # what @given reads when the test runs


def _current_profile() -> str:
    from hypothesis import settings

    return getattr(settings, "_current_profile", None) or "default"  # settings.get_current_profile_name()


def _user_chose_a_profile(config) -> bool:
    """``--hypothesis-profile``, or a conftest loaded a profile other than the one active before conftests
    (``default``, or ``ci`` that Hypothesis loads by itself when it sees a CI environment variable)."""
    if config.getoption("hypothesis_profile", None):
        return True
    from hypothesis import settings

    name = _current_profile()
    ambient_name, ambient_settings = config.stash.get(_AMBIENT_PROFILE, ("default", None))
    return name != "default" and (name != ambient_name or settings.get_profile(name) is not ambient_settings)


def pytest_generate_tests(metafunc):
    wanted = [name for name in ("tc_device", "tc_dtype") if name in metafunc.fixturenames]
    if not wanted:
        return
    from ..core.devices import DTYPES, device_marks, parse_list

    devices = (parse_list(metafunc.config.getoption("--theorycheck-devices"), {"cpu", "cuda"}, "devices")
               if "tc_device" in wanted else [None])
    dtypes = (parse_list(metafunc.config.getoption("--theorycheck-dtypes"), set(DTYPES), "dtypes")
              if "tc_dtype" in wanted else [None])
    params = []
    for device in devices:
        for dtype in dtypes:
            values = tuple(v for v in (device, dtype) if v)
            params.append(pytest.param(*values, marks=device_marks(device) if device else (), id="-".join(values)))
    metafunc.parametrize(",".join(wanted), params)


def _collect_phase(item, when: str):
    from ..core.verdict import collecting_verdicts

    with collecting_verdicts() as found:
        try:
            yield
        finally:
            item.stash.setdefault(_PHASE_VERDICTS, {})[when] = list(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _collect_phase(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _collect_phase(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item):
    return (yield from _collect_phase(item, "teardown"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    found = item.stash.get(_PHASE_VERDICTS, {}).pop(call.when, [])
    if found:  # the whole verdict only when a report will show it; the summary table needs just the status
        full = item.config.getoption("--theorycheck-report") is not None
        setattr(report, REPORT_ATTRIBUTE, [v.to_dict() if full else
                                           {"claim": v.claim, "status": v.status, "device": v.device, "dtype": v.dtype}
                                           for v in found])
    return report


def _session_profile(config) -> str:
    """The profile theorycheck tests ran under when none was named: the user's, else ``ci``."""
    return _current_profile() if _user_chose_a_profile(config) else "ci"


class VerdictSession:
    """Controller side: merge the verdicts arriving with test reports; summarize and write reports."""

    def __init__(self, config):
        self.config = config
        self.records: list[dict] = []
        self.write_error: str | None = None
        directory = config.getoption("--theorycheck-report")
        self.directory = None if directory is None else self._checked(directory)

    def _checked(self, directory: str) -> Path:
        """The report folder, if theorycheck may write there (:func:`check_output_folder`) and it holds no
        audit unless --theorycheck-replace; else the session stops (exit 2), having written nothing."""
        from ..core.errors import InvalidArgument
        from ..report import RESULTS
        from ..report.folder import check_output_folder

        try:
            directory = check_output_folder(directory, "--theorycheck-report")
        except InvalidArgument as error:
            pytest.exit(f"theorycheck: {error}", returncode=2)
        if (directory / RESULTS).exists() and not self.config.getoption("--theorycheck-replace"):
            pytest.exit(f"theorycheck: expected a --theorycheck-report directory without an audit in it, but "
                        f"{directory} already holds {RESULTS}. Fix: --theorycheck-replace to replace it, or "
                        "--theorycheck-report NEWDIR (nothing was changed).", returncode=2)
        return directory

    def pytest_runtest_logreport(self, report):
        from ..report import case_record

        verdicts = getattr(report, REPORT_ATTRIBUTE, None)
        if not verdicts:
            return
        failed = report.failed and not hasattr(report, "wasxfail")
        for index, verdict in enumerate(verdicts):
            suffix = f"::{report.when}" if report.when != "call" else ""
            self.records.append(case_record(
                claim=verdict["claim"], device=verdict["device"], dtype=verdict["dtype"],
                case=f"{report.nodeid}{suffix}#{index}", kind="test", expected=None, status=verdict["status"],
                reproduce=f"pytest {report.nodeid!r}", seconds=report.duration / len(verdicts), verdict=verdict,
                outcome="unexpected" if failed else "expected"))

    def counts(self) -> dict[str, Counter]:
        """claim -> Counter of statuses, over every verdict collected in the session."""
        table: dict[str, Counter] = {}
        for record in self.records:
            table.setdefault(record["claim"], Counter())[record["status"]] += 1
        return dict(sorted(table.items()))

    def pytest_sessionfinish(self, session):
        if self.directory is None:
            return
        from ..core.registry import CLAIMS
        from ..core.errors import InvalidArgument
        from ..report import RESULTS, SCHEMA_VERSION, environment, report_texts
        from ..report.folder import FolderLock
        from ..report.records import now, record_line, write_texts_atomic

        config = self.config
        settings = {"devices": sorted({str(r["device"]) for r in self.records if r["device"]}),  # what ran
                    "dtypes": sorted({str(r["dtype"]) for r in self.records if r["dtype"]}),
                    "profile": chosen_profile(config) or _session_profile(config),
                    "args": list(config.invocation_params.args),
                    "workers": getattr(config.option, "numprocesses", None) or 0}
        claims = sorted({r["claim"] for r in self.records})
        header = {"record": "header", "schema_version": SCHEMA_VERSION, "source": "pytest", "started": now(),
                  "settings": settings, "environment": environment(("cpu",)),
                  "claims": {c: CLAIMS[c].to_dict() for c in claims if c in CLAIMS}}
        records = [header, *self.records, {"record": "end", "time": now()}]
        _, texts = report_texts(self.directory, records)
        try:  # the four files together or none
            with FolderLock(self.directory, "--theorycheck-report"):
                write_texts_atomic({self.directory / RESULTS: "".join(map(record_line, records)), **texts})
        except InvalidArgument as error:
            self.write_error = str(error)
            session.exitstatus = 2

    def pytest_terminal_summary(self, terminalreporter):
        from ..core.verdict import STATUSES

        table = self.counts()
        if self.write_error:
            terminalreporter.write_line(f"theorycheck report: error: {self.write_error}", red=True)
        if not table:
            return
        write = terminalreporter.write_line
        terminalreporter.write_sep("=", "theorycheck verdicts")
        width = max(len("claim"), *map(len, table))
        write(f"{'claim':<{width}}  " + "  ".join(f"{s:>12}" for s in STATUSES) + f"  {'total':>7}")
        for claim, counts in table.items():
            write(f"{claim:<{width}}  " + "  ".join(f"{counts.get(s, 0):>12}" for s in STATUSES)
                  + f"  {sum(counts.values()):>7}")
        unexpected = sum(r["outcome"] == "unexpected" for r in self.records)
        if unexpected:
            write(f"{unexpected} verdict(s) were decided in failing tests.")
        if self.directory is not None and not self.write_error:
            write(f"theorycheck report: {self.directory / 'report.html'} (also report.md, report.json, results.jsonl)")
