"""Property: on any n distinct Gaussian points, Zhang et al.'s 2n + d-weight ReLU construction fits any
labels (random signs or arbitrary reals) within its roundoff bound, in float64 and float32."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@given(n=st.integers(1, 128), d=st.integers(1, 12), signs=st.booleans(), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float64, torch.float32]))
def test_any_labels_are_fitted(n, d, signs, seed, dtype):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    y = torch.randn(n, generator=generator, dtype=dtype)
    y = torch.sign(y) if signs else y
    verdict = tc.check_random_labels(X, y, seed=seed)
    assert verdict.status in ("holds", "vacuous"), verdict.summary()  # vacuous: two projections within roundoff
    if verdict.status == "vacuous":
        assert verdict.failed_assumptions == [tc.CLAIMS["random_labels"].assumptions[0]]
