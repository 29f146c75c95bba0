"""Hypothesis profiles: ``ci`` keeps the suite in minutes on 2 cores, ``thorough`` is for long runs.

Registering them changes no setting; the pytest plugin applies one to theorycheck tests only.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from .errors import InvalidArgument

_COMMON = dict(deadline=None,  # GPU warm-up and first-call compilation must not trip deadlines
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=60, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=1000, print_blob=True, **_COMMON)
PROFILES = ("ci", "dev", "thorough")


def profile_settings(name: str) -> settings:
    """The settings of a theorycheck profile (``ci``, ``dev``, ``thorough``)."""
    if name not in PROFILES:
        raise InvalidArgument(f"expected a Hypothesis profile in {PROFILES}, but got {name!r}. "
                              "Fix: --theorycheck-profile=ci (fast) or thorough (long runs).")
    return settings.get_profile(name)


def load_profile(name: str) -> None:
    """Make a theorycheck profile the active Hypothesis profile (for a conftest that wants it everywhere)."""
    profile_settings(name)
    settings.load_profile(name)
