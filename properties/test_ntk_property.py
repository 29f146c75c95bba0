"""Property: on any few Gaussian points, depth 1 or 2, the empirical NTK's relative error decays as
width^-1/2 (the fitted slope's 99.9% interval contains -1/2), in float64 and float32."""

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import theorycheck as tc

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@settings(max_examples=10, deadline=None)  # each example builds 42 kernels up to width 1024
@given(n=st.integers(2, 5), d=st.integers(1, 8), depth=st.integers(1, 2), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float64, torch.float32]))
@example(n=4, d=2, depth=1, seed=312, dtype=torch.float64)  # a false alarm while widths shared weight streams
def test_empirical_ntk_converges_as_width_to_the_minus_half(n, d, depth, seed, dtype):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    verdict = tc.check_ntk(X, depth=depth, seeds=tuple(range(seed, seed + 6)))
    assert verdict.status == "holds", verdict.summary()
