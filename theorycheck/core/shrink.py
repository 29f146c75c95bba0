"""Audit instances drawn from a claim's Hypothesis strategy, and counterexamples shrunk by Hypothesis.

An instance is drawn deterministically: Hypothesis, seeded with the case's stream seed, generates
:data:`DRAWS` examples (its first is always the simplest) and the last one is the instance, so the same
seed gives the same instance on every machine. When the instance's verdict is unexpected, Hypothesis
runs again from the same seed and shrinks it, counting as failing only examples whose status is the
unexpected one, from the original instance on: the smallest such example within a time budget is the
minimal counterexample (Hypothesis' own shrinker, its order: fewer and smaller choices first).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

DRAWS = 2  # the simplest example, then the instance


class _Unexpected(Exception):
    """Raised inside the shrinking run for an example that keeps the unexpected status."""


def _settings(phases) -> settings:
    return settings(max_examples=DRAWS, database=None, phases=phases, deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)


def draw(strategy, stream_seed: int) -> Any:
    """The instance the strategy gives for ``stream_seed`` (the same on every run and machine)."""
    drawn: list = []

    @seed(stream_seed)
    @_settings([Phase.generate])
    @given(strategy)
    def collect(value):
        drawn.append(value)

    collect()
    return drawn[-1]


@dataclasses.dataclass(frozen=True)
class Shrunk:
    """The smallest example found that keeps the unexpected status, its verdict, and how the search went."""

    params: Any
    verdict: Any
    examples: int  # failing examples the shrinker accepted (1: none smaller than the original)
    seconds: float
    complete: bool  # False: the time budget ended the search


def shrink(strategy, stream_seed: int, original: Any, status_of: Callable[[Any], Any], *, keeps: Callable[[Any], bool],
           seconds: float) -> Shrunk | None:
    """Shrink ``original`` (drawn by :func:`draw` with ``stream_seed``): ``status_of(params)`` runs the
    instance and returns its verdict; ``keeps(verdict)`` says whether it is still the unexpected one.
    Returns None when the original does not reproduce."""
    accepted: list[tuple[Any, Any]] = []
    start = time.perf_counter()
    reached = []

    @seed(stream_seed)
    @_settings([Phase.generate, Phase.shrink])
    @given(strategy)
    def search(params):
        if not reached and params != original:
            return  # examples before the original are not its shrinks
        reached.append(True)
        if time.perf_counter() - start > seconds:
            return
        verdict = status_of(params)
        if keeps(verdict):
            accepted.append((params, verdict))
            raise _Unexpected

    try:
        search()
    except Exception:  # noqa: BLE001 - Hypothesis re-raises the last failure, or reports a flaky replay
        pass
    if not accepted:
        return None
    params, verdict = accepted[-1]
    elapsed = time.perf_counter() - start
    return Shrunk(params=params, verdict=verdict, examples=len(accepted), seconds=elapsed,
                  complete=elapsed <= seconds)


class HypothesisRng:
    """The part of ``numpy.random.Generator`` the case generators use (``integers``, ``uniform``), drawing
    from Hypothesis: a generator written for numpy becomes a strategy (:func:`rng_strategy`) whose draws
    shrink (integers toward their low end, floats toward simple values)."""

    def __init__(self, draw):
        self.draw = draw

    def integers(self, low, high=None, size=None):
        low, high = (0, low) if high is None else (low, high)  # numpy's: [low, high)
        one = lambda: np.int64(self.draw(st.integers(int(low), int(high) - 1)))  # noqa: E731
        return one() if size is None else np.array([one() for _ in range(int(size))])

    def uniform(self, low=0.0, high=1.0, size=None):
        one = lambda: float(low) if low == high else self.draw(  # noqa: E731  (a float, as numpy's scalar)
            st.floats(float(low), float(high), exclude_max=True, allow_nan=False))
        return one() if size is None else np.array([one() for _ in range(int(size))])


def rng_strategy(make: Callable[[HypothesisRng], Any]):
    """The strategy of ``make(rng)``, a generator written against numpy's Generator API."""
    return st.composite(lambda draw: make(HypothesisRng(draw)))()
