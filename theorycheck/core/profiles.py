"""Hypothesis profiles: ``ci`` keeps the suite in minutes on 2 cores, ``thorough`` is for long runs.

They are registered as ``theorycheck-ci``, ``theorycheck-dev`` and ``theorycheck-thorough``, so they never
replace a profile of the user's or Hypothesis' own ``ci`` profile (which Hypothesis loads by itself when
it sees a CI environment variable). Registering them changes no setting; the pytest plugin applies
one to theorycheck tests only.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from .errors import InvalidArgument

_COMMON = dict(deadline=None,  # GPU warm-up and first-call compilation must not trip deadlines
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
PROFILES = ("ci", "dev", "thorough")
_OPTIONS = {"ci": dict(max_examples=25, derandomize=True), "dev": dict(max_examples=60),
            "thorough": dict(max_examples=1000)}


def hypothesis_name(name: str) -> str:
    """The name a theorycheck profile is registered under in Hypothesis."""
    return f"theorycheck-{name}"


for _name in PROFILES:
    settings.register_profile(hypothesis_name(_name), print_blob=True, **_OPTIONS[_name], **_COMMON)


def profile_settings(name: str) -> settings:
    """The settings of a theorycheck profile (``ci``, ``dev``, ``thorough``)."""
    if name not in PROFILES:
        raise InvalidArgument(f"expected a Hypothesis profile in {PROFILES}, but got {name!r}. "
                              "Fix: --theorycheck-profile=ci (fast) or thorough (long runs).")
    return settings.get_profile(hypothesis_name(name))


def load_profile(name: str) -> None:
    """Make a theorycheck profile the active Hypothesis profile (for a conftest that wants it everywhere)."""
    profile_settings(name)
    settings.load_profile(hypothesis_name(name))
