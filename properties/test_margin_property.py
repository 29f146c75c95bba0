"""Property (Lyu & Li 2020, Thm 4.1): on every generated homogeneous network (MLP, CNN, linear; ReLU,
leaky ReLU, ReLU^p) and separable data, gradient flow on the exp or logistic loss never lowers the smoothed
margin after the summed loss falls below l(0); a run that never separates is reported as saying nothing."""

import copy
import functools
import math

import pytest

from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.claims.margin import FlowInstance
from theorycheck.generate.strategies import network_specs
from theorycheck.claims.margin import kit as margin_kit

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

STEPS = 1000  # a cap per run (a flow that never separates runs to it): the ci profile's examples stay small


@st.composite
def flow_instances(draw, **fields):
    """A FlowInstance: ReLU^p only with one hidden layer (its degree is p^depth + ...), up to 2 hidden layers."""
    activation = draw(st.sampled_from(("relu", "leaky_relu", "relu_p")))
    depth = 1 if activation == "relu_p" else draw(st.integers(0, 2))
    spec = draw(network_specs(family=st.sampled_from(("mlp", "cnn", "linear")), depth=depth, width=st.integers(3, 6),
                              activation=activation, in_dim=st.integers(2, 5)))
    return FlowInstance(spec=spec, seed=draw(st.integers(0, 2**16)), n=draw(st.integers(4, 10)),
                        data_margin=draw(st.floats(0.05, 0.3)), loss=draw(st.sampled_from(("exp", "logistic"))),
                        log_loss_target=math.log(1e-30), **fields)


@functools.lru_cache(maxsize=256)
def _cached_flow(instance, device, dtype, steps):
    model, X, y = instance.build(device, dtype)
    kwargs = instance.train_kwargs()
    return model, X, y, tc.train(model, X, y, **{**kwargs, "steps": min(kwargs["steps"], steps)})


def flow(instance, device, dtype, steps=STEPS):
    """(model at the end of the run, X, y, Trajectory), one run per instance (shrinking and replays reuse it);
    the model is a copy."""
    model, X, y, trajectory = _cached_flow(instance, device, dtype, steps)
    return copy.deepcopy(model), X, y, trajectory


@given(instance=flow_instances())
def test_smoothed_margin_never_decreases_after_separation(instance, tc_device, tc_dtype):
    *_, trajectory = flow(instance, tc_device, tc_dtype)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status != "violated", f"{verdict.summary()}\nreproduce: {instance!r}"
    if verdict.status == "inconclusive":  # only where the homogeneity checks could not decide (a dead network)
        assert not trajectory.homogeneity_decided and not verdict.failed_assumptions, verdict.summary()
    elif verdict.status != "holds":  # only a run that never separated (a dead sample, a stalled flow) says nothing
        assert verdict.failed_assumptions == [margin_kit.assumptions["t0"]], f"{verdict.summary()}\nreproduce: {instance!r}"


@given(instance=flow_instances(control="weight_decay"))
def test_weight_decay_is_never_covered(instance, tc_device, tc_dtype):
    *_, trajectory = flow(instance, tc_device, tc_dtype, steps=40)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status in ("vacuous", "inconclusive"), verdict.summary()
    assert verdict.status == "inconclusive" or "no weight decay" in verdict.failed_assumptions
