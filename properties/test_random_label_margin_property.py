"""Property: the random-label margin verdict depends only on the order of the pairs' medians: the same on
margins scaled by any c > 0 (both arms), and swapping the arms exchanges holds and violated."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

SWAPPED = {"holds": "violated", "violated": "holds", "inconclusive": "inconclusive", "vacuous": "vacuous"}


@given(pairs=st.integers(1, 12), samples=st.integers(1, 40), seed=st.integers(0, 2**16),
       shift=st.floats(-1.0, 1.0), scale=st.floats(1e-6, 1e6))
def test_the_verdict_sees_only_the_order_of_the_medians(pairs, samples, seed, shift, scale):
    rng = np.random.default_rng(seed)
    true = rng.lognormal(shift, 1.0, size=(pairs, samples))
    rand = rng.lognormal(0.0, 1.0, size=(pairs, samples))
    verdict = tc.check_random_label_margin(true, rand)
    scaled = tc.check_random_label_margin(true * scale, rand * scale)
    assert (scaled.status, scaled.details.get("wins")) == (verdict.status, verdict.details.get("wins"))
    assert tc.check_random_label_margin(rand, true).status == SWAPPED[verdict.status]
