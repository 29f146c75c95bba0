"""Property: GD on any under-determined least-squares problem with eta s_1^2 < 2 is the spectral filter
at every step; the same run checked against a start of 0 when it began elsewhere is not."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorycheck.claims.min_norm import MinNormCase

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@given(n=st.integers(1, 8), extra=st.integers(1, 12), steps=st.integers(1, 60), scale=st.floats(0.05, 1.95),
       start=st.sampled_from(["zero", "random"]), seed=st.integers(0, 2**16))
def test_gd_is_the_spectral_filter(n, extra, steps, scale, start, seed, tc_device, tc_dtype):
    case = MinNormCase(n=n, d=n + extra, steps=steps, step_scale=scale, start=start, seed=seed)
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case}"


@given(n=st.integers(1, 8), extra=st.integers(1, 12), steps=st.integers(1, 60), scale=st.floats(0.05, 1.95),
       control=st.sampled_from(["adam", "weight-decay", "null-start-declared-zero"]), seed=st.integers(0, 2**16))
def test_controls_are_caught(n, extra, steps, scale, control, seed, tc_device, tc_dtype):
    steps = max(steps, 2)  # from 0, a weight-decayed first step equals the plain one
    case = MinNormCase(n=n, d=n + extra, steps=steps, step_scale=scale, seed=seed, control=control)
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    expected = "violated" if control == "null-start-declared-zero" else "vacuous"  # Adam, decay: not plain GD
    assert verdict.status == expected, f"{verdict.summary()}\nreproduce: {case}"


@given(n=st.integers(2, 30), d=st.integers(1, 40), sigma=st.floats(0.0, 5.0), seed=st.integers(0, 2**16))
def test_gradient_flow_risk_within_akt_constant_of_ridge(n, d, sigma, seed):
    from theorycheck.claims.min_norm import EarlyStoppingCase

    case = EarlyStoppingCase(n=n, d=d, sigma=sigma, seed=seed)
    verdict = case.verdict()
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case}"
