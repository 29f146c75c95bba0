"""Audit cases run side by side in worker processes (``theorycheck audit --jobs N``).

An audit case runs on one CPU thread (:func:`theorycheck.harness.plan.run_case`), so one process leaves
the other cores idle. :class:`CaseWorkers` starts N processes (forked from a fork server that has imported
torch and the claims and run no tensor code, so safe with CUDA and torch's thread pools; spawned where the
platform has no fork server) that rebuild each claim's plan from the registry and run cases by name; a case
goes to the worker chosen by a hash of its stream (the claim it draws from, device, dtype, stream name), so cases that
share a run (kkt on the margin claim's flows, a control on its instance's run) land in the same process and
the run is still trained once. Each case seeds itself from its own id, so the records equal those of one
process. Workers ignore Ctrl-C: the audit process stops them and keeps every finished case. A worker that
dies (killed by a signal, the out-of-memory killer, a crash in native code) costs one case: the case it was
running is recorded as an error saying so, and the worker is started afresh for the cases queued behind it.
At the end the workers also draw the report's plots (:meth:`CaseWorkers.plots`).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..core.errors import InvalidArgument
from ..core.registry import AuditCase
from ..report import case_record
from . import lifeline

_PLANS: dict[tuple, dict] = {}  # in a worker: (claim, device, dtype, settings) -> {case name: AuditCase}


PRELOADED = ("theorycheck.harness.lifeline", "theorycheck.claims", "torch._dynamo", "matplotlib.figure",
             "matplotlib.backends.backend_svg")
# lifeline: the fork server dies with the audit; torch._dynamo: what torch.func imports on first use;
# matplotlib: what the report's plots import


@functools.cache
def _context():
    """Where the platform has it, a fork server that imports torch and theorycheck's claims once (it runs no
    tensor code: no thread pools, no CUDA) and forks each worker from that state, a restarted one too;
    elsewhere spawn (each worker imports afresh). The user's modules are imported in each worker."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOADED))
    return context


def _start_worker(imports: Sequence[str]) -> None:
    """A worker's start: it dies with the audit (:mod:`.lifeline`), leaves Ctrl-C and SIGTERM to the audit
    process, runs one thread, and imports PRELOADED (already there when forked from the fork server) and
    the user's claim modules."""
    import importlib

    import torch

    lifeline.die_with_parent()
    lifeline.watch_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)
    for name in (*PRELOADED, *imports):
        importlib.import_module(name)


def start_fork_server() -> None:
    """Start the fork server now (if it is not running), so that its imports (PRELOADED) run while this
    process plans: the workers, started later, fork from it at once. It dies with this process
    (:mod:`.lifeline`); call it from the thread that runs the audit (Linux ties the fork server's life
    to that thread). Nothing where the platform has no fork server."""
    if _context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        os.environ[lifeline.FORK_SERVER_OF] = str(os.getpid())
        try:
            forkserver.ensure_running()  # what the first worker's start would call
        finally:
            del os.environ[lifeline.FORK_SERVER_OF]


def _started() -> None:
    """A first task: makes the pool start its process."""


def _run_in_worker(key: tuple[str, str, str], settings: dict[str, Any], name: str) -> dict[str, Any]:
    from .plan import AuditSettings, planned_cases, run_case

    plan_key = (*key, repr(sorted(settings.items())))
    if plan_key not in _PLANS:
        _PLANS[plan_key] = {c.name: c for c in planned_cases(*key, AuditSettings.from_dict(settings))}
    claim, device, dtype = key
    return run_case(_PLANS[plan_key][name], claim=claim, device=device, dtype=dtype, seed=settings["seed"])


def _plots_in_worker(key: tuple[str, str, str], cases: list[dict[str, Any]]):
    from ..report.html import group_plots

    return group_plots(key, cases)


def stream_of(claim: str) -> str:
    """The claim whose random streams ``claim``'s cases draw (``ClaimKit.streams_from``), else itself."""
    from ..core.kit import KITS

    kit = KITS.get(claim)
    return (kit.streams_from if kit is not None else None) or claim


def unreachable(claims: Sequence[str], imports: Sequence[str]) -> list[str]:
    """The claims a worker process would not have: registered by a module that is neither one of
    theorycheck's claims nor among ``imports`` (a claim registered by a test or a script's own code)."""
    from ..core.registry import CLAIMS

    roots = ("theorycheck.claims", *imports)
    return [claim for claim in claims
            if not any(CLAIMS[claim].checker.__module__ == root or CLAIMS[claim].checker.__module__.startswith(root + ".")
                       for root in roots)]


DIED = ("the worker process died while running this case (killed by a signal: the out-of-memory killer, a "
        "crash in native code, or kill -9); the cases queued behind it ran in a fresh worker")


class CaseFuture:
    """A case sent to a worker: its record when it ran, or an error record if its worker died running it."""

    def __init__(self, workers: "CaseWorkers", worker: int, key: tuple[str, str, str], settings: dict[str, Any],
                 case: AuditCase | None):
        self.workers, self.worker, self.key, self.settings, self.case = workers, worker, key, settings, case
        self.died: dict[str, Any] | None = None
        self.inner = self._send()

    def _send(self) -> Future:
        pool = self.workers.pools[self.worker]
        try:
            return pool.submit(_started) if self.case is None else pool.submit(_run_in_worker, self.key,
                                                                               self.settings, self.case.name)
        except BrokenProcessPool as broken:  # the worker died before this was sent: it fails like the rest
            failed = Future()
            failed.set_exception(broken)
            return failed

    def _lost(self) -> bool:
        """Whether its worker died before it finished (then it runs again, unless it was the one running)."""
        return (self.died is None and self.inner.done() and not self.inner.cancelled()
                and isinstance(self.inner.exception(), BrokenProcessPool))

    def done(self) -> bool:
        return self.died is not None or (self.inner.done() and not self._lost())

    def cancelled(self) -> bool:
        return self.died is None and self.inner.cancelled()

    def exception(self) -> BaseException | None:
        return None if self.died is not None else self.inner.exception()

    def result(self) -> dict[str, Any]:
        while self.died is None:
            try:
                return self.inner.result()
            except BrokenProcessPool:
                self.workers.recover(self.worker)  # records this case as died, or sends it to a fresh worker
        return self.died


class CaseWorkers:
    """N single-process pools, one per stream partition; use as a context manager."""

    def __init__(self, jobs: int, imports: Sequence[str] = ()):
        self.imports = tuple(imports)
        self.pools = [self._pool() for _ in range(jobs)]
        self.sent: list[list[CaseFuture]] = [[] for _ in range(jobs)]  # per worker, in the order it runs them
        for worker in range(jobs):  # start (and import in) every worker now, while this process plans the audit
            self.sent[worker].append(CaseFuture(self, worker, ("", "", ""), {}, None))

    def _pool(self) -> ProcessPoolExecutor:
        start_fork_server()  # here, not on the pool's first start: with the audit's PID (and a restart too)
        return ProcessPoolExecutor(1, mp_context=_context(), initializer=_start_worker, initargs=(self.imports,))

    def submit(self, key: tuple[str, str, str], settings: dict[str, Any], case: AuditCase) -> CaseFuture:
        """Run ``case`` in the worker of its stream (``AuditCase.stream``, default: the case's name)."""
        claim, device, dtype = key
        worker = zlib.crc32(f"{stream_of(claim)}/{device}/{dtype}/{case.stream or case.name}".encode()) % len(self.pools)
        future = CaseFuture(self, worker, key, settings, case)
        self.sent[worker].append(future)
        return future

    def recover(self, worker: int) -> None:
        """After ``worker`` died: the first case it had not finished (a worker runs its cases in order) was
        running and is recorded as an error; the rest go to a fresh worker. Dying at the start is an error."""
        # the broken pool fails its unfinished cases one by one: wait for all of them before looking
        wait([future.inner for future in self.sent[worker] if future.died is None])
        lost = [future for future in self.sent[worker] if future._lost()]
        if not lost:
            return
        running, queued = lost[0], lost[1:]
        if running.case is None:
            raise InvalidArgument(f"expected worker processes that start, but one died while starting (importing "
                                  f"theorycheck's claims and {list(self.imports)}). Fix: --jobs 1 runs every case in "
                                  "this process, where the error shows")
        claim, device, dtype = running.key
        case = running.case
        running.died = case_record(claim=claim, device=device, dtype=dtype, case=case.name, kind=case.kind,
                                   expected=case.expected, status="error", reproduce=case.reproduce, size=case.size,
                                   size_unit=case.size_unit, error=DIED)
        self.pools[worker].shutdown(wait=False)
        self.pools[worker] = self._pool()
        for future in queued:
            future.inner = future._send()
        self.sent[worker] = [future for future in self.sent[worker] if future.died is None]

    def plots(self, cases_by_group: dict[tuple, list]) -> dict[tuple, tuple]:
        """The report's plots of every group, drawn side by side (largest groups first, each to the worker
        with the least queued so far): the same SVG as drawn in one process."""
        queued = [0] * len(self.pools)
        futures = {}
        for key, cases in sorted(cases_by_group.items(), key=lambda item: -len(item[1])):
            worker = queued.index(min(queued))
            queued[worker] += len(cases)
            futures[key] = self.pools[worker].submit(_plots_in_worker, key, cases)
        return {key: future.result() for key, future in futures.items()}

    def __enter__(self) -> "CaseWorkers":
        return self

    def __exit__(self, kind, error, trace) -> None:
        interrupted = kind is not None
        # on an interruption the queued cases are dropped, running ones finish; the pools close side by side
        # (a worker's exit takes ~0.5 s, measured: one after another that is paid once per worker)
        with ThreadPoolExecutor(len(self.pools)) as closing:
            list(closing.map(lambda pool: pool.shutdown(wait=not interrupted, cancel_futures=interrupted), self.pools))
