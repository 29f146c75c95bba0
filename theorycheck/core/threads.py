"""CPU threads: each pytest-xdist worker gets its share of the cores, and a problem too small to gain
from several intra-op threads runs on one.

N workers that each run torch's default intra-op pool (one thread per core) oversubscribe the machine:
on 2 cores with ``-n 2`` the suite ran 5.8x slower than with one thread per worker. A small problem (a
training run or a kernel of parameters x samples below :data:`SMALL_WORK`) runs on one intra-op thread
(:func:`threads_for`): its operations are too small to split, and two threads only hand work back and
forth (docs/benchmarks.md has the measured crossover). A thread count the user set (``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, or ``torch.set_num_threads`` to another count than torch's default) wins.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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


# parameters x samples below which one intra-op thread is faster than two. Measured on the shared 2-core machine
# (load 2.5-6.6, docs/benchmarks.md): every tc.train flow and GD run up to 7.4e7 ran 0.6-49x slower on two
# threads (median 12x; a descheduled thread stalls every parallel region), the empirical NTK at 5e7-2e8 within
# 0.88-1.26x of one thread
SMALL_WORK = 2**27


@functools.cache
def torch_default_threads() -> int:
    """The intra-op thread count torch starts with where OMP_NUM_THREADS / MKL_NUM_THREADS are unset: the
    physical cores as torch counts them (one per (package, core) pair in /sys; elsewhere os.cpu_count())."""
    try:
        cores = {(Path(cpu, "topology/physical_package_id").read_text(), Path(cpu, "topology/core_id").read_text())
                 for cpu in Path("/sys/devices/system/cpu").glob("cpu[0-9]*")}
    except OSError:
        cores = set()
    return len(cores) or os.cpu_count() or 1


def user_chose_threads() -> bool:
    """Whether the thread count is the user's: OMP_NUM_THREADS / MKL_NUM_THREADS set, or torch's count
    differs from its default (torch.set_num_threads called, by the user or by theorycheck's own workers)."""
    import torch

    return any(os.environ.get(v) for v in THREAD_VARIABLES) or torch.get_num_threads() != torch_default_threads()


@contextlib.contextmanager
def threads_for(work: float, device="cpu") -> Iterator[None]:
    """One torch intra-op thread while a CPU problem of ``work`` (parameters x samples) below
    :data:`SMALL_WORK` runs, restored after; nothing changes for a larger problem, another device, or a
    thread count the user chose (:func:`user_chose_threads`)."""
    import torch

    threads = torch.get_num_threads()
    one = (torch.device(device).type == "cpu" and work < SMALL_WORK and threads > 1 and not user_chose_threads())
    if one:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if one:
            torch.set_num_threads(threads)


def one_thread_when_small(size: Callable[..., tuple[float, object]]) -> Callable:
    """Decorator: run the function under :func:`threads_for` of ``size(*args, **kwargs)`` = (work, device)."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def sized(*args, **kwargs):
            with threads_for(*size(*args, **kwargs)):
                return function(*args, **kwargs)
        return sized
    return decorate
