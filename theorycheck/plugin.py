"""The pytest plugin (entry point ``pytest11``): device/dtype parametrization, verdict collection.

- A test asking for the fixtures ``tc_device`` / ``tc_dtype`` runs once per device and dtype, with ids
  like ``test_homogeneity[cpu-float64]``; CUDA cases skip with a stated reason when no GPU is present.
- Every Verdict decided during a test (setup, call, teardown) is collected and attached to that
  phase's report as the extra attribute ``theorycheck_verdicts`` (reports carry extra attributes
  through xdist's serialization; unlike ``user_properties`` they stay out of JUnit XML), so the
  workers' verdicts reach the controller with the reports and the merged counts equal a serial run's.
- The terminal summary shows a claim x status table; ``--theorycheck-report DIR`` writes
  results.jsonl, report.json, report.md and report.html there (as ``theorycheck audit`` does).
- Under pytest-xdist each worker is pinned to one GPU before any conftest can start CUDA, and to its
  share of the CPU cores (cores // workers torch threads) unless ``OMP_NUM_THREADS`` is set.

Importing this module is cheap; configuring a session imports theorycheck (and torch) for the
Hypothesis profiles, and nothing here starts CUDA.
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
                    help="Hypothesis profile: ci (fast), thorough (long runs) or dev "
                         "(default: $THEORYCHECK_PROFILE, else ci)")
    group.addoption("--theorycheck-report", default=None, metavar="DIR",
                    help="write the verdicts of the session to DIR: results.jsonl, report.json, report.md, "
                         "report.html; DIR's previous report files are replaced (default: no report)")


def _pin_worker() -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from .threads import pin_worker_threads

        pin_worker_threads()  # before torch is imported, so its thread pool starts at the worker's share
        from .devices import pin_xdist_worker_to_gpu

        pin_xdist_worker_to_gpu()


def pytest_load_initial_conftests(early_config, parser, args):
    """Pin this xdist worker to its GPU before conftests are imported (they may start CUDA)."""
    _pin_worker()


def pytest_configure(config):
    from .profiles import load_profile

    _pin_worker()  # idempotent; covers `-p theorycheck.plugin` registered after the early hook
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped with a reason without one)")
    load_profile(config.getoption("--theorycheck-profile") or os.environ.get("THEORYCHECK_PROFILE", "ci"))
    if not hasattr(config, "workerinput"):  # the controller (or a serial run) merges and reports
        config.pluginmanager.register(VerdictSession(config), "theorycheck-verdicts")


def pytest_generate_tests(metafunc):
    if "tc_device" not in metafunc.fixturenames:
        return
    from .devices import DTYPES, parse_list

    devices = parse_list(metafunc.config.getoption("--theorycheck-devices"), {"cpu", "cuda"}, "devices")
    dtypes = (parse_list(metafunc.config.getoption("--theorycheck-dtypes"), set(DTYPES), "dtypes")
              if "tc_dtype" in metafunc.fixturenames else [None])
    params = []
    for device in devices:
        for dtype in dtypes:
            values = (device, dtype) if dtype else (device,)
            params.append(pytest.param(*values, marks=device_marks(device), id="-".join(values)))
    names = "tc_device,tc_dtype" if dtypes != [None] else "tc_device"
    metafunc.parametrize(names, params)


def device_marks(device: str) -> list:
    """The ``cuda`` mark and a skip with its reason for a CUDA device on a machine without a GPU."""
    if not device.startswith("cuda"):
        return []
    from .devices import cuda_available

    return [pytest.mark.cuda, pytest.mark.skipif(not cuda_available(),
                                                 reason="CUDA requested but torch sees no GPU on this machine")]


def _collect_phase(item, when: str):
    from .verdict import collecting_verdicts

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


class VerdictSession:
    """Controller side: merge the verdicts arriving with test reports; summarize and write reports."""

    def __init__(self, config):
        self.config = config
        self.records: list[dict] = []
        directory = config.getoption("--theorycheck-report")
        self.directory = Path(directory) if directory else None
        if self.directory is not None:
            from .errors import InvalidArgument
            from .report.records import ensure_writable_directory

            try:
                ensure_writable_directory(self.directory, "--theorycheck-report directory")
            except InvalidArgument as error:
                raise pytest.UsageError(str(error)) from None

    def pytest_runtest_logreport(self, report):
        from .report import case_record

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
        from .registry import CLAIMS
        from .report import RESULTS, SCHEMA_VERSION, ResultsWriter, environment, write_reports
        from .report.records import now, write_text_atomic

        config = self.config
        settings = {"devices": config.getoption("--theorycheck-devices").split(","),
                    "dtypes": config.getoption("--theorycheck-dtypes").split(","),
                    "profile": config.getoption("--theorycheck-profile") or os.environ.get("THEORYCHECK_PROFILE", "ci"),
                    "args": list(config.invocation_params.args),
                    "workers": getattr(config.option, "numprocesses", None) or 0}
        claims = sorted({r["claim"] for r in self.records})
        header = {"record": "header", "schema_version": SCHEMA_VERSION, "source": "pytest", "started": now(),
                  "settings": settings, "environment": environment(("cpu",)),
                  "claims": {c: CLAIMS[c].to_dict() for c in claims if c in CLAIMS}}
        records = [header, *self.records, {"record": "end", "time": now()}]
        path = self.directory / RESULTS
        write_text_atomic(path, "")
        with ResultsWriter(path) as writer:
            for record in records:
                writer.write(record)
        write_reports(self.directory, records)

    def pytest_terminal_summary(self, terminalreporter):
        from .verdict import STATUSES

        table = self.counts()
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
        if self.directory is not None:
            write(f"theorycheck report: {self.directory / 'report.html'} (also report.md, report.json, results.jsonl)")
