"""Property (Lee et al. 2019, Thm 2.1): on any few Gaussian points and targets, GD with eta = 1/lambda_max moves
the NTK of an erf or tanh network by O(width^-1/2): never a violation, and an undecided fit only where the slope's
interval straddles -1/2; in float64 and float32."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import theorycheck as tc

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@settings(max_examples=10, deadline=None)  # each example trains 80 networks up to width 2048
@given(n=st.integers(2, 6), d=st.integers(1, 8), seed=st.integers(0, 2**16),
       activation=st.sampled_from(["erf", "tanh"]), dtype=st.sampled_from([torch.float64, torch.float32]))
def test_the_kernel_moves_at_most_as_width_to_the_minus_half(n, d, seed, activation, dtype):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    y = torch.randn(n, generator=generator, dtype=dtype)
    verdict = tc.check_ntk_movement(X, y, activation=activation, seeds=tuple(range(seed, seed + 10)))
    assert verdict.status in ("holds", "inconclusive"), verdict.summary()
    assert verdict.status == "holds" or "straddles" in verdict.reason, verdict.summary()
