"""xdist workers run torch on their share of the cores; a user's thread setting wins."""

import pytest

from theorycheck.core import threads


@pytest.mark.parametrize("env, cores, expected", [
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2"}, 2, 1),
    ({"PYTEST_XDIST_WORKER": "gw1", "PYTEST_XDIST_WORKER_COUNT": "2"}, 16, 8),
    ({"PYTEST_XDIST_WORKER": "gw3", "PYTEST_XDIST_WORKER_COUNT": "8"}, 2, 1),
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "OMP_NUM_THREADS": "2"}, 2, None),
    ({"PYTEST_XDIST_WORKER": "gw0", "PYTEST_XDIST_WORKER_COUNT": "2", "MKL_NUM_THREADS": "1"}, 2, None),
    ({}, 2, None),
])
def test_worker_thread_share(monkeypatch, env, cores, expected):
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", *threads.THREAD_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(threads, "available_cores", lambda: cores)
    assert threads.worker_thread_share() == expected


PROBE = """
import os, torch
def test_probe():
    with open("threads.txt", "a") as out:  # xdist workers' stdout does not reach the controller
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {torch.get_num_threads()}\\n")
"""


def test_xdist_workers_get_their_share(pytester, monkeypatch):
    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess("-n", "2", "-q")
    result.assert_outcomes(passed=1)
    expected = max(1, threads.available_cores() // 2)
    worker, count = (pytester.path / "threads.txt").read_text().split()
    assert worker.startswith("gw") and int(count) == expected
