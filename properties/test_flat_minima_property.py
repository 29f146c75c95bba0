"""Properties: every two-layer ReLU/LeakyReLU net keeps f and transforms its Hessian exactly under the
alpha-scale; at every teacher-labelled (interpolating) point H = J^T J; tanh and noisy labels do not."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorycheck.claims.flat_minima import HessianCase

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

cases = dict(n=st.integers(1, 6), d=st.integers(1, 5), m=st.integers(1, 10), k=st.integers(1, 2),
             activation=st.sampled_from(["relu", "leaky_relu"]), seed=st.integers(0, 2**16),
             hidden=st.integers(1, 2), bias=st.booleans())


def _expect(case: HessianCase, expected: str, device: str, dtype: str) -> None:
    verdict = case.verdict(device=device, dtype=dtype)
    if verdict.status == "inconclusive":  # every ReLU unit dead: f = 0, nothing to test
        assert "dead" in verdict.reason, verdict.summary()
        return
    assert verdict.status == expected, f"{verdict.summary()}\nreproduce: {case}"


@given(claim=st.sampled_from(["flat_minima", "gauss_newton"]), **cases)
def test_homogeneous_nets_hold(claim, n, d, m, k, activation, seed, hidden, bias, tc_device, tc_dtype):
    _expect(HessianCase(claim=claim, n=n, d=d, m=m, k=k, activation=activation, seed=seed, hidden=hidden, bias=bias),
            "holds",
            tc_device, tc_dtype)


@given(control=st.sampled_from([("flat_minima", "tanh", "vacuous"), ("flat_minima", "unbalanced", "violated"),
                                ("gauss_newton", "noisy-labels", "vacuous")]), **cases)
def test_controls_are_caught(control, n, d, m, k, activation, seed, hidden, bias, tc_device, tc_dtype):
    claim, name, expected = control
    _expect(HessianCase(claim=claim, n=n, d=d, m=m, k=k, activation=activation, seed=seed, control=name,
                        hidden=hidden, bias=bias), expected,
            tc_device, tc_dtype)
