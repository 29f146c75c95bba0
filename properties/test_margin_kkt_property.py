"""Properties of gradient flow on every generated homogeneous network (MLP, CNN, linear; ReLU, leaky ReLU,
ReLU^p) and separable data, on the exp or logistic loss; each flow is judged by both claims (one run each):
- margin_monotone (Lyu & Li 2020, Thm 4.1): the smoothed margin never falls after the summed loss falls
  below l(0); a run that never separates is reported as saying nothing.
- kkt (Lyu & Li 2020, Thm 4.4; Soudry et al. 2018): the (eps, delta)-KKT residuals of the max-margin
  problem decrease; the multipliers are non-negative and the support is where the margins are smallest, and
  a large multiplier put on a sample off the support is rejected. Never a violation; at kinks a short run
  may leave the trend undecided."""

import copy
import functools
import math

import numpy as np
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
def test_gradient_flow_raises_the_smoothed_margin_and_approaches_a_kkt_point(instance, tc_device, tc_dtype):
    model, X, y, trajectory = flow(instance, tc_device, tc_dtype)
    smoothed_margin_never_decreases_after_separation(instance, trajectory)
    approaches_a_kkt_point(instance, model, X, y, trajectory)


def smoothed_margin_never_decreases_after_separation(instance, trajectory):
    """margin_monotone on the run: never violated; says nothing only where the run never separated."""
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status != "violated", f"{verdict.summary()}\nreproduce: {instance!r}"
    if verdict.status == "inconclusive":  # only where the homogeneity checks could not decide (a dead network)
        assert not trajectory.homogeneity_decided and not verdict.failed_assumptions, verdict.summary()
    elif verdict.status != "holds":  # only a run that never separated (a dead sample, a stalled flow) says nothing
        assert verdict.failed_assumptions == [margin_kit.assumptions["t0"]], f"{verdict.summary()}\nreproduce: {instance!r}"


def approaches_a_kkt_point(instance, model, X, y, trajectory):
    """kkt on the run's last state: never violated; multipliers and support as the theorem says, and a large
    multiplier off the support is rejected."""
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    message = f"{verdict.summary()}\nreproduce: {instance!r}"
    assert verdict.status != "violated", message
    if verdict.status == "vacuous":
        assert margin_kit.assumptions["t0"] in verdict.failed_assumptions, message
        return
    if verdict.status == "inconclusive":  # a short run, or homogeneity the run's checks could not decide
        assert "run too short" in verdict.reason or not trajectory.homogeneity_decided, message
    details = verdict.details
    assert min(details["multipliers"]) >= 0 and details["support"] == sorted(details["support"]), message
    margins = (y * model(X).reshape(-1)).detach().double().cpu().numpy()
    assert int(np.argmin(margins)) in details["support"], message
    if "svm" in details and verdict.status == "holds":  # one-layer linear: the direction error shrinks
        angles = details["svm"]["angles"]  # unless it already sits at the roundoff of the model's dtype
        assert angles[-1] < angles[0] or angles[-1] <= details["svm"]["angle_roundoff"], message
    # the same state with a large multiplier on the largest-margin sample, when it is off the support
    outsider = int(np.argmax(margins))
    if outsider not in details["support"]:
        wrong = np.array(details["multipliers"])
        wrong[outsider] += 10 * max(wrong.max(), 1.0)
        rejected = tc.check_kkt(model, X, y, multipliers=wrong)
        assert rejected.status == "violated" or (rejected.status == "vacuous" and not rejected.conclusion_held), \
            f"{rejected.summary()}\nreproduce: {instance!r}"


@given(instance=flow_instances(control="weight_decay"))
def test_weight_decay_is_never_covered(instance, tc_device, tc_dtype):
    *_, trajectory = flow(instance, tc_device, tc_dtype, steps=40)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status in ("vacuous", "inconclusive"), verdict.summary()
    assert verdict.status == "inconclusive" or "no weight decay" in verdict.failed_assumptions
