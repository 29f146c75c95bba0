"""CPU threads per parallel worker: each pytest-xdist worker gets its share of the cores.

N workers that each run torch's default intra-op pool (one thread per core) oversubscribe the machine:
on 2 cores with ``-n 2`` the suite ran 5.8x slower than with one thread per worker. A thread count the
user set (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or ``torch.set_num_threads`` in a conftest, which runs later) wins.
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_thread_share() -> int | None:
    """This xdist worker's share of the cores (at least 1), or None outside xdist or when the user set
    ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    user_set = any(os.environ.get(variable) for variable in THREAD_VARIABLES)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not workers or user_set:
        return None
    return max(1, available_cores() // max(1, int(workers)))


def core_budget() -> int:
    """Cores this process may keep busy: an xdist worker's share, else OMP_NUM_THREADS / MKL_NUM_THREADS where
    set (by the user, or by :func:`pin_worker_threads`), else the available cores."""
    share = worker_thread_share()
    if share is not None:
        return share
    for variable in THREAD_VARIABLES:
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return available_cores()


def pin_worker_threads() -> int | None:
    """Set this xdist worker's torch (and OpenMP/MKL) threads to its share of the cores; returns the
    share, or None when nothing was changed."""
    share = worker_thread_share()
    if share is None:
        return None
    for variable in THREAD_VARIABLES:
        os.environ.setdefault(variable, str(share))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(share)
    return share
