"""xdist workers run torch on their share of the cores (in a real xdist session: tests/test_plugin.py);
a user's thread setting wins."""

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


@pytest.fixture
def two_default_threads(monkeypatch):
    """torch at its default of 2 intra-op threads, no thread variable set (as outside xdist on 2 cores)."""
    import torch

    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "torch_default_threads", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_small_problem_runs_on_one_thread_and_a_large_one_as_set(two_default_threads):
    import torch

    with threads.threads_for(threads.SMALL_WORK - 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    for work, device in ((threads.SMALL_WORK, "cpu"), (10, "cuda")):
        with threads.threads_for(work, device):
            assert torch.get_num_threads() == 2


def test_the_users_thread_setting_wins(two_default_threads, monkeypatch):
    import torch

    torch.set_num_threads(3)  # the user's torch.set_num_threads: not torch's default
    with threads.threads_for(10):
        assert torch.get_num_threads() == 3
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with threads.threads_for(10):
        assert torch.get_num_threads() == 2


def test_train_runs_a_small_network_on_one_thread(two_default_threads, monkeypatch):
    import torch

    import theorycheck as tc
    from theorycheck.engines import dynamics

    seen, state = [], dynamics._Problem.state
    monkeypatch.setattr(dynamics._Problem, "state",
                        lambda *a, **k: seen.append(torch.get_num_threads()) or state(*a, **k))
    X = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(), torch.nn.Linear(4, 1, bias=False))
    tc.train(model.double(), X, torch.where(X[:, 0] > 0, 1.0, -1.0).double(), steps=5)
    assert seen and set(seen) == {1} and torch.get_num_threads() == 2


def test_torch_starts_with_the_default_threads_counted_here():
    """The default compared with is torch's own in a fresh interpreter (no thread variable set)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in threads.THREAD_VARIABLES}
    started = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                             capture_output=True, text=True, check=True)
    assert int(started.stdout) == threads.torch_default_threads()
