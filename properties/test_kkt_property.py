"""Property (Lyu & Li 2020, Thm 4.4; Soudry et al. 2018): along gradient flow on every generated homogeneous
network and separable data, the (eps, delta)-KKT residuals of the max-margin problem decrease; the
multipliers are non-negative and the support is where the margins are smallest, and a large multiplier put
on a sample off the support is rejected. Never a violation; a run that never separates says nothing, and
at kinks a short run may leave the trend undecided."""

import numpy as np
import pytest
from hypothesis import given

import theorycheck as tc
from theorycheck.claims.margin import kit as margin_kit

from test_margin_property import flow, flow_instances

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@given(instance=flow_instances())
def test_gradient_flow_approaches_a_kkt_point(instance, tc_device, tc_dtype):
    model, X, y, trajectory = flow(instance, tc_device, tc_dtype)
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
