"""Property: for any finite family chosen independently of the validation sets the violation frequency
passes the exact binomial test and the exact union of tails is <= delta; reuse is always caught."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorycheck.claims.validation_bound import ValidationCase, repeats_for_power

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

cases = dict(K=st.integers(1, 50), m=st.integers(20, 500), delta=st.floats(0.01, 0.3),
             sided=st.sampled_from(["two", "one"]), seed=st.integers(0, 2**16))


@given(**cases)
def test_independent_families_hold(K, m, delta, sided, seed):
    """With the repetitions a holds needs (power against a violation rate 2 delta); fewer are inconclusive."""
    case = ValidationCase(K=K, m=m, repeats=max(1000, repeats_for_power(delta)), delta=delta, sided=sided, seed=seed)
    verdict = case.verdict()
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case}"
    assert verdict.details["exact_union_tail"] <= delta


@given(**cases)
def test_reuse_is_violated(K, m, delta, sided, seed):
    case = ValidationCase(K=K, m=m, repeats=300, delta=delta, sided=sided, seed=seed, control="reuse")
    verdict = case.verdict()
    assert verdict.status == "violated", f"{verdict.summary()}\nreproduce: {case}"
