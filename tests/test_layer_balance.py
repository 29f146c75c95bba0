"""Unit tests and negative controls for the Recorder and the layer-balance checker."""

import numpy as np
import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.layer_balance import ASSUME_HOMOGENEOUS, ASSUME_NO_BIAS, ASSUME_PLAIN, recorded_run
from theorycheck.models import NetworkSpec
from theorycheck.sampling import network_and_batch

SPECS = {
    "mlp": NetworkSpec(widths=(8, 6)),
    "cnn": NetworkSpec(family="cnn", in_shape=(2, 6, 6), widths=(3, 4), pooling="max"),
    "linear": NetworkSpec(family="linear", widths=(3, 3)),
    "leaky": NetworkSpec(widths=(5,), activation="leaky_relu"),
}


def _run(spec, device="cpu", dtype="float64", optimizer="sgd", steps=15, **kw):
    model, X = network_and_batch(spec, 3, 12, device, dtype)
    y = torch.where(torch.arange(12, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    return recorded_run(model, X, y, optimizer=optimizer, lr=0.05, steps=steps, batch=6, **kw)


@pytest.mark.parametrize("name", SPECS)
def test_plain_sgd_holds_to_roundoff(name, tc_device, tc_dtype):
    verdict = tc.check_layer_balance(_run(SPECS[name], tc_device, tc_dtype))
    assert verdict.status == "holds", verdict.summary()
    assert all(pair["ratio"] <= 1 for pair in verdict.details["pairs"].values())
    assert verdict.details["neurons"], "a chain of layers has per-neuron pairs"
    assert all(pair["ratio"] <= 1 for pair in verdict.details["neurons"].values())
    assert verdict.dtype == tc_dtype


@pytest.mark.parametrize("optimizer", ["momentum", "weight_decay", "adam"])
def test_optimizer_controls_break_the_plain_step_assumption(optimizer, tc_device, tc_dtype):
    verdict = tc.check_layer_balance(_run(SPECS["mlp"], tc_device, tc_dtype, optimizer=optimizer))
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[ASSUME_PLAIN] is False
    assert not verdict.conclusion_held
    with pytest.raises(tc.ClaimViolation, match=r'layer_balance: vacuous.*"updates are plain gradient steps'):
        tc.assert_layer_balance(_run(SPECS["mlp"], tc_device, tc_dtype, optimizer=optimizer))


def test_bias_control_names_the_assumption():
    verdict = tc.check_layer_balance(_run(NetworkSpec(bias=True)))
    assert verdict.status == "vacuous" and verdict.assumptions[ASSUME_NO_BIAS] is False
    assert not verdict.conclusion_held and "bias" in verdict.reason


def test_weights_changed_outside_the_optimizer_are_a_violation():
    """Plain steps, but the loop rescales a layer between steps: the drift is caught."""
    model, X = network_and_batch(SPECS["mlp"], 1, 8, "cpu", "float64")
    y = torch.ones(8, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tc.Recorder(model, opt) as rec:
        for _ in range(5):
            opt.zero_grad()
            nn.functional.softplus(-y * model(X).reshape(-1)).sum().backward()
            opt.step()
            with torch.no_grad():
                model[0][0].weight.mul_(1.01)
    verdict = tc.check_layer_balance(rec.trajectory)
    assert verdict.status == "violated", verdict.summary()
    assert "drifted by" in verdict.reason


def test_recorder_with_X_checks_homogeneity_and_records_outputs():
    model, X = network_and_batch(NetworkSpec(activation="tanh", widths=(4,)), 1, 8, "cpu", "float64")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tc.Recorder(model, opt, X) as rec:
        for _ in range(3):
            opt.zero_grad()
            model(X).sum().backward()
            opt.step()
    traj = rec.trajectory
    assert traj.outputs.shape == (3, 8)
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "vacuous" and verdict.assumptions[ASSUME_HOMOGENEOUS] is False


def test_user_loop_unchanged_and_forward_order_found():
    """Layers registered out of forward order are paired in the order they run."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(5, 1, bias=False)
            self.body = nn.Linear(3, 5, bias=False)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    model = Net().double()
    X, y = torch.randn(10, 3, dtype=torch.float64), torch.ones(10, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = tc.Recorder(model, opt)
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.softplus(-y * model(X).squeeze(1)).sum().backward()
        opt.step()
    rec.close()
    traj = rec.trajectory
    assert traj.layers == ("body.weight", "head.weight")
    assert [(p.lower, p.upper, p.units) for p in traj.pairs] == [("body.weight", "head.weight", 5)]
    assert tc.check_layer_balance(traj).status == "holds"


def test_no_steps_is_inconclusive():
    model, _ = network_and_batch(SPECS["mlp"], 1, 4, "cpu", "float64")
    rec = tc.Recorder(model, torch.optim.SGD(model.parameters(), lr=0.1))
    verdict = tc.check_layer_balance(rec.trajectory)
    assert verdict.status == "inconclusive" and "no optimizer step" in verdict.reason


def test_overflow_is_inconclusive():
    model, X = network_and_batch(SPECS["mlp"], 1, 4, "cpu", "float32")
    opt = torch.optim.SGD(model.parameters(), lr=1e30)
    with tc.Recorder(model, opt) as rec:
        for _ in range(3):
            opt.zero_grad()
            (model(X) ** 2).sum().backward()
            opt.step()
    assert tc.check_layer_balance(rec.trajectory).status == "inconclusive"


def test_discrete_identity_is_the_eta_squared_term():
    """The drift of D equals the eta^2 sum (not 0): the flow statement needs the exact correction."""
    details = tc.check_layer_balance(_run(SPECS["mlp"], steps=30)).details
    for pair in details["pairs"].values():
        assert abs(pair["drift"]) > 1e3 * pair["tolerance"]
        assert pair["drift"] == pytest.approx(pair["eta2_term"], abs=pair["tolerance"])


def test_bad_input():
    with pytest.raises(tc.InvalidArgument, match="expected a BalanceTrajectory"):
        tc.check_layer_balance(np.zeros(3))
    model, _ = network_and_batch(SPECS["mlp"], 1, 4, "cpu", "float64")
    with pytest.raises(tc.InvalidArgument, match="torch.optim.Optimizer"):
        tc.Recorder(model, "sgd")
