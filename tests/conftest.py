"""Shared test helpers: pytester for plugin tests, a fake claim registered for one test, and the
project's tests marked as theorycheck tests (the plugin's Hypothesis profile applies to them)."""

import math
import time
from pathlib import Path

import numpy as np
import pytest

from theorycheck.core import registry
from theorycheck.harness.plan import verdicts_kept_local
from theorycheck.core.registry import AuditCase, Claim
from theorycheck.core.kit import ClaimKit, comparison
from theorycheck.core.verdict import Verdict

pytest_plugins = ["pytester"]


def fake_verdict(claim: str, statistic: float, *, assumption: bool = True, seed=None, series=None) -> Verdict:
    """A verdict of the fake claim: holds iff statistic <= 1e-12 (and the assumption holds); kept out of
    the session's verdict table (a test-only claim)."""
    kit = ClaimKit(id=claim, statement="a fake claim for tests", source="tests/conftest.py", tolerance="1e-12",
                   assumptions={"fake": "fake assumption"})
    with verdicts_kept_local():
        return kit.decide(assumptions={"fake": assumption}, inconclusive=math.isnan(statistic), seed=seed,
                          comparisons=[comparison("fake", statistic, 0.0, 1e-12, "1e-12")],
                          details={"series": series} if series else {}, reason="" if statistic <= 1e-12 else "too big")


def make_fake_claim(claim_id: str = "fake", *, flaw: str | None = None, delay: float = 0.0) -> Claim:
    """A claim whose instances hold and whose controls are violated; ``flaw`` breaks one case:
    ``uncaught`` (control 1 holds), ``violated`` (instance 0 violated), ``raises`` (instance 0 raises)."""

    def audit_cases(*, n, seed, device, dtype):
        for index in range(2 * n):
            control = index >= n
            rng = np.random.default_rng([seed, index])
            statistic = float(rng.uniform(1e-3, 1.0) if control else rng.uniform(0, 1e-12))
            if (flaw == "uncaught" and index == n + 1) or (flaw == "violated" and index == 0):
                statistic = 0.0 if control else 0.5

            def run(statistic=statistic, index=index):
                time.sleep(delay)
                if flaw == "raises" and index == 0:
                    raise RuntimeError("fake checker bug")
                series = {"fake series": {"x": [0, 1, 2], "y": {"a": [1.0, 2.0, 3.0], "b": [3.0, 2.0, 1.0]}}}
                return fake_verdict(claim_id, statistic, seed=index, series=series if index < 2 else None)

            yield AuditCase(name=f"{'control' if control else 'instance'}-{index}",
                            kind="control" if control else "instance",
                            expected=frozenset({"violated"}) if control else frozenset({"holds"}),
                            reproduce=f"fake_case({seed}, {index}, {device!r}, {dtype!r})", run=run, size=10 + index)

    return Claim(id=claim_id, statement="a fake claim for tests", assumptions=("fake assumption",),
                 source="tests/conftest.py", checker=fake_verdict, tolerance="1e-12", audit_cases=audit_cases)


@pytest.fixture
def fake_claims(monkeypatch):
    """Register fake claims for one test only: ``fake_claims(make_fake_claim(...), ...)``."""

    def register(*claims):
        for claim in claims:
            monkeypatch.setitem(registry._CLAIMS, claim.id, claim)
        return [claim.id for claim in claims]

    return register


def pytest_collection_modifyitems(items):
    """The project's own tests are theorycheck tests: their Hypothesis tests run under the plugin's
    profile (``ci`` unless --theorycheck-profile or a user profile says otherwise)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.theorycheck)
