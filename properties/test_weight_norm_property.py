"""Property: on every bias-free ReLU/LeakyReLU MLP with any layer norms, WN with ||v|| = 1 is the Lagrange
flow and Lagrange V' = rho_k^2 unconstrained V'; WN with ||v|| = 3, biases or tanh never pass."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from theorycheck.claims.weight_norm import WeightNormCase

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

nets = dict(widths=st.lists(st.integers(1, 8), min_size=2, max_size=4).map(lambda w: (*w, 1)),
            rhos=st.lists(st.floats(0.25, 4.0), min_size=4, max_size=4).map(tuple), n=st.integers(1, 16),
            activation=st.sampled_from(["relu", "leaky_relu"]), loss=st.sampled_from(["exp", "logistic"]),
            seed=st.integers(0, 2**16))


def _status(case: WeightNormCase, device: str, dtype: str):
    verdict = case.verdict(device=device, dtype=dtype)
    return verdict, f"{verdict.summary()}\nreproduce: {case}"


@given(**nets)
def test_weight_norm_is_the_lagrange_flow(widths, rhos, n, activation, loss, seed, tc_device, tc_dtype):
    verdict, message = _status(WeightNormCase(widths=widths, rhos=rhos, n=n, activation=activation, loss=loss,
                                              seed=seed), tc_device, tc_dtype)
    if verdict.status == "inconclusive":  # a dead ReLU network (f(V) = 0 on every sample)
        assert "nothing to test" in verdict.reason, message
        return
    assert verdict.status == "holds", message


@given(control=st.sampled_from(["bias", "tanh", "v-norm-3"]), **nets)
def test_controls_do_not_hold(control, widths, rhos, n, activation, loss, seed, tc_device, tc_dtype):
    assume(max(a * b for a, b in zip(widths, widths[1:])) >= 2)  # unit-norm 1 x 1 layers cannot turn: V' = 0
    verdict, message = _status(WeightNormCase(widths=widths, rhos=rhos, n=n, activation=activation, loss=loss,
                                              seed=seed, control=control), tc_device, tc_dtype)
    assert verdict.status in ({"violated", "inconclusive"} if control == "v-norm-3" else {"vacuous"}), message
