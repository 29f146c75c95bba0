"""Audit cases run side by side in worker processes (``theorycheck audit --jobs N``).

An audit case runs on one CPU thread (:func:`theorycheck.harness.plan.run_case`), so one process leaves
the other cores idle. :class:`CaseWorkers` starts N processes (spawned: safe with CUDA and with torch's
thread pools) that rebuild each claim's plan from the registry and run cases by name; a case goes to the
worker chosen by a hash of its stream (the claim it draws from, device, dtype, stream name), so cases that
share a run (kkt on the margin claim's flows, a control on its instance's run) land in the same process and
the run is still trained once. Each case seeds itself from its own id, so the records equal those of one
process. Workers ignore Ctrl-C: the audit process stops them and keeps every finished case. At the end the
workers also draw the report's plots (:meth:`CaseWorkers.plots`).
"""

from __future__ import annotations

import multiprocessing
import signal
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

_PLANS: dict[tuple, dict] = {}  # in a worker: (claim, device, dtype, settings) -> {case name: AuditCase}


def _start_worker(imports: Sequence[str]) -> None:
    """A worker's start: one thread, Ctrl-C left to the audit process, the user's claim modules imported."""
    import importlib

    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    importlib.import_module("theorycheck.claims")
    for name in imports:
        importlib.import_module(name)


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
    """The claims a spawned worker would not have: registered by a module that is neither one of
    theorycheck's claims nor among ``imports`` (a claim registered by a test or a script's own code)."""
    from ..core.registry import CLAIMS

    roots = ("theorycheck.claims", *imports)
    return [claim for claim in claims
            if not any(CLAIMS[claim].checker.__module__ == root or CLAIMS[claim].checker.__module__.startswith(root + ".")
                       for root in roots)]


class CaseWorkers:
    """N single-process pools, one per stream partition; use as a context manager."""

    def __init__(self, jobs: int, imports: Sequence[str] = ()):
        context = multiprocessing.get_context("spawn")
        self.pools = [ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker, initargs=(tuple(imports),))
                      for _ in range(jobs)]
        for pool in self.pools:  # start (and import in) every worker now, while this process plans the audit
            pool.submit(_started)

    def submit(self, key: tuple[str, str, str], settings: dict[str, Any], name: str, stream: str = "") -> Future:
        """Run case ``name`` in the worker of its stream (``AuditCase.stream``, default: the name)."""
        claim, device, dtype = key
        worker = zlib.crc32(f"{stream_of(claim)}/{device}/{dtype}/{stream or name}".encode()) % len(self.pools)
        return self.pools[worker].submit(_run_in_worker, key, settings, name)

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
        for pool in self.pools:  # on an interruption the queued cases are dropped, running ones finish
            pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
