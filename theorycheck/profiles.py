"""Hypothesis profiles: ``ci`` keeps the suite in minutes on 2 cores, ``thorough`` is for long runs."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from .errors import InvalidArgument

_COMMON = dict(deadline=None,  # GPU warm-up and first-call compilation must not trip deadlines
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=60, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=1000, print_blob=True, **_COMMON)
PROFILES = ("ci", "dev", "thorough")


def load_profile(name: str) -> None:
    if name not in PROFILES:
        raise InvalidArgument(f"expected a Hypothesis profile in {PROFILES}, but got {name!r}. "
                              "Fix: --theorycheck-profile=ci (fast) or thorough (long runs).")
    settings.load_profile(name)
