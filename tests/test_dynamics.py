"""Unit tests for the training engine (theorycheck.engines.dynamics) and the log-space losses."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import nn

import theorycheck as tc
from theorycheck.claims.margin import FlowInstance
from theorycheck.core.devices import dtype_of, gamma
from theorycheck.engines.dynamics import DEFAULT_RTOL, SNAPSHOT_LEVELS
from theorycheck.engines.flat_network import FlatNetwork, KinkPattern, twice_differentiable
from theorycheck.engines.trajectory import COLUMNS, Trajectory
from theorycheck.engines.losses import LOSSES, get_loss
from theorycheck.generate.models import NetworkSpec, build_network
from theorycheck.core.modules import PowerReLU

LINEAR = NetworkSpec(family="linear", in_shape=(3,), widths=())
SMOOTH = NetworkSpec(in_shape=(3,), widths=(4,), activation="relu_p", power=3.0)
LEAKY = NetworkSpec(in_shape=(3,), widths=(4,), activation="leaky_relu")


def _instance(spec=LINEAR, device="cpu", dtype="float64", **fields):
    return FlowInstance(spec=spec, seed=fields.pop("seed", 3), n=fields.pop("n", 8), **fields).build(device, dtype)


# --- losses ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["exp", "logistic", "square"])
def test_loss_derivatives_match_autograd(name):
    loss = LOSSES[name]
    q = torch.tensor([-3.0, -0.5, 0.3, 2.0, 9.0], dtype=torch.float64, requires_grad=True)
    direct = {"exp": lambda q: -q, "logistic": lambda q: torch.log(torch.log1p(torch.exp(-q))),
              "square": lambda q: torch.log((1 - q) ** 2 / 2)}[name](q)
    first = torch.autograd.grad(direct.sum(), q, create_graph=True)[0]
    second = (torch.autograd.grad(first.sum(), q)[0] if first.requires_grad else torch.zeros_like(q))
    assert torch.allclose(loss.log(q), direct, rtol=1e-13, atol=1e-14)
    assert torch.allclose(loss.dlog(q), first, rtol=1e-12, atol=1e-14)
    assert torch.allclose(loss.d2log(q), second, rtol=1e-10, atol=1e-14)


def test_logistic_is_finite_far_beyond_underflow():
    loss = LOSSES["logistic"]
    q = torch.tensor([-800.0, 745.0, 800.0, 1e5], dtype=torch.float64)
    assert torch.isfinite(loss.log(q)).all() and torch.isfinite(loss.dlog(q)).all()
    assert loss.log(q)[2] == pytest.approx(-800.0) and loss.log(q)[3] == pytest.approx(-1e5)
    assert loss.log(q)[0] == pytest.approx(math.log(800.0))


@pytest.mark.parametrize("name", ["exp", "logistic"])
def test_margin_numerator_inverts_the_loss(name):
    """l(l^{-1}(L)) = L: the numerator of the smoothed margin, from log L, even for L = e^-1000."""
    loss = LOSSES[name]
    log_total = torch.tensor([-1000.0, -30.0, -2.0, -0.5], dtype=torch.float64)
    q = loss.margin_numerator(log_total)
    assert torch.allclose(loss.log(q), log_total, rtol=1e-12)


def test_unknown_loss_is_bad_input():
    with pytest.raises(tc.InvalidArgument, match="expected a loss in .*Fix:"):
        get_loss("hinge")


# --- the flow -------------------------------------------------------------------------------------

def test_flow_reaches_the_default_target_and_records_the_run():
    model, X, y = _instance()
    trajectory = tc.train(model, X, y)
    r = trajectory.records
    assert trajectory.stop_reason == "log_loss_target" and r["log_loss"][-1] <= -700
    assert set(COLUMNS) <= set(r) and r["layer_norms"].shape == (len(trajectory), 1)
    assert np.all(np.diff(r["log_loss"]) <= 1e-12) and np.all(np.diff(r["log_t"][1:]) > 0)
    assert r["log_t"][-1] > 600  # t ~ 1/L: t itself would overflow float64, log t does not
    assert trajectory.degree == 1 and trajectory.homogeneous and trajectory.smooth
    assert [s.record for s in trajectory.snapshots] == sorted(s.record for s in trajectory.snapshots)
    levels = [-s.log_loss for s in trajectory.snapshots[:-1]]
    assert levels[0] >= SNAPSHOT_LEVELS[0] and len(trajectory.snapshots) >= 10
    # the model is left at the final state
    assert np.allclose(FlatNetwork(model, X, y).flatten().numpy(), trajectory.snapshots[-1].theta)
    # the smoothed margin sits between gamma-bar - log(N)/||theta|| and gamma-bar (exp loss)
    sandwich_low = r["normalized_margin"] - math.log(len(y)) / r["norm"]
    assert np.all(r["smoothed_margin"] <= r["normalized_margin"] + 1e-12)
    assert np.all(r["smoothed_margin"] >= sandwich_low - 1e-12)


def test_flow_follows_gradient_flow_in_original_time():
    """The clock change keeps the path: at the recorded t, theta matches a tight reference solution of
    theta' = -grad L in the original time, within the engine's own global-error estimate."""
    model, X, y = _instance(SMOOTH)
    net = FlatNetwork(model, X, y)
    theta0 = net.flatten()
    trajectory = tc.train(model, X, y, log_loss_target=-3.0, rtol=1e-7)

    def field(t, theta):
        theta = torch.as_tensor(theta).requires_grad_(True)
        (g,) = torch.autograd.grad(torch.exp(-net.margins(theta)).sum(), theta)
        return -g.numpy()

    t_end = math.exp(trajectory.records["log_t"][-1])
    reference = solve_ivp(field, (0.0, t_end), theta0.numpy(), method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    gap = np.linalg.norm(trajectory.snapshots[-1].theta - reference)
    assert gap <= 10 * trajectory.error_estimate + 1e-6 * np.linalg.norm(reference)


def test_tighter_tolerance_gives_smaller_error_estimates():
    model, X, y = _instance(SMOOTH)
    loose = tc.train(model, X, y, log_loss_target=-30.0, rtol=1e-3)
    model, X, y = _instance(SMOOTH)
    tight = tc.train(model, X, y, log_loss_target=-30.0, rtol=1e-6)
    assert tight.error_estimate < loose.error_estimate and tight.steps > loose.steps


def test_loss_far_below_float_range_is_reached_in_log_space():
    model, X, y = _instance()
    trajectory = tc.train(model, X, y, log_loss_target=-5000.0)
    assert trajectory.stop_reason == "log_loss_target" and trajectory.records["log_loss"][-1] <= -5000
    assert np.isfinite(trajectory.records["smoothed_margin"]).all()


def test_flow_on_a_relu_network(tc_device, tc_dtype):
    model, X, y = _instance(LEAKY, tc_device, tc_dtype)
    trajectory = tc.train(model, X, y, log_loss_target=-30.0)
    assert trajectory.stop_reason == "log_loss_target" and not trajectory.smooth
    assert trajectory.dtype == tc_dtype and trajectory.device.startswith(tc_device)
    assert trajectory.rtol == DEFAULT_RTOL[False, dtype_of(tc_dtype)]


def test_weight_decay_stops_at_a_stationary_point():
    model, X, y = _instance(n=6)
    trajectory = tc.train(model, X, y, weight_decay=0.1)
    assert trajectory.stop_reason == "stationary" and trajectory.records["log_loss"][-1] > -10


def test_inseparable_data_stops_short_of_separation():
    model, X, y = _instance(control="inseparable")
    trajectory = tc.train(model, X, y)
    assert trajectory.stop_reason in ("not_separated", "stationary")
    assert trajectory.records["log_loss"].min() >= 0.0  # a contradicting pair alone costs l(q) + l(-q) >= 2


# --- discrete methods -----------------------------------------------------------------------------

def test_gd_takes_plain_gradient_steps():
    model, X, y = _instance(SMOOTH)
    theta = FlatNetwork(model, X, y).flatten().requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch.exp(-FlatNetwork(model, X, y).margins(theta)).sum(), theta)
    trajectory = tc.train(model, X, y, method="gd", lr=0.05, steps=1)
    assert np.allclose(trajectory.snapshots[-1].theta, (theta - 0.05 * gradient).detach().numpy(), rtol=1e-14)
    assert trajectory.records["error"][-1] > 0  # the Euler-Heun estimate of the step's departure from the flow


def test_sgd_is_reproducible_and_has_no_flow_error():
    runs = []
    for _ in range(2):
        model, X, y = _instance()
        runs.append(tc.train(model, X, y, method="sgd", lr=0.05, batch_size=3, steps=40, seed=7))
    assert np.array_equal(runs[0].snapshots[-1].theta, runs[1].snapshots[-1].theta)
    assert np.isnan(runs[0].records["error"][1:]).all() and runs[0].batch_size == 3


def test_diverging_sgd_stops_non_finite():
    model, X, y = _instance()
    trajectory = tc.train(model, X, y, method="sgd", lr=1e6, batch_size=2, steps=50, seed=1)
    assert trajectory.stop_reason == "non_finite"


# --- structure helpers and records ----------------------------------------------------------------

def test_twice_differentiable_and_kink_detection():
    assert twice_differentiable(build_network(SMOOTH))[0]
    assert not twice_differentiable(build_network(NetworkSpec(activation="relu_p", power=2.0)))[0]
    smooth, reason = twice_differentiable(build_network(LEAKY))
    assert not smooth and "LeakyReLU" in reason

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 1, bias=False)

        def forward(self, x):
            return torch.relu(self.a(x))

    assert not twice_differentiable(Custom())[0]
    model, X, y = _instance(NetworkSpec(in_shape=(3,), widths=(4,)))
    net = FlatNetwork(model, X, y)
    kinks = KinkPattern(net, smooth=False)
    theta = net.flatten()
    assert kinks.known and torch.equal(kinks(theta), kinks(theta.clone()))
    assert not torch.equal(kinks(theta), kinks(-theta))  # flipping the first layer flips every ReLU
    assert not KinkPattern(FlatNetwork(Custom().double(), X, y), smooth=False).known


def test_trajectory_round_trips_through_json():
    model, X, y = _instance()
    trajectory = tc.train(model, X, y, log_loss_target=-20.0)
    data = json.loads(json.dumps(trajectory.to_dict()))
    again = Trajectory.from_dict(data)
    assert again.to_dict() == data and again.error_estimate == pytest.approx(trajectory.error_estimate)


def test_a_wrong_declared_degree_is_not_homogeneity():
    model, X, y = _instance()
    trajectory = tc.train(model, X, y, degree=2.0, log_loss_target=-5.0)
    assert not trajectory.homogeneous and "sum to 1" in trajectory.homogeneity_reason


@pytest.mark.parametrize("change, message", [
    (dict(y=lambda y: (y + 1) / 2), "expected labels in {-1, +1}"),
    (dict(y=lambda y: y[:-1]), "expected y of shape"),
    (dict(method="adam"), "expected method in"),
    (dict(method="gd"), "expected a step size lr > 0"),
    (dict(method="sgd", lr=0.1, batch_size=0), "expected 1 <= batch_size"),
    (dict(weight_decay=-1.0), "expected weight_decay >= 0"),
])
def test_bad_input_names_expected_received_fix(change, message):
    model, X, y = _instance()
    y = change.pop("y", lambda y: y)(y)
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        tc.train(model, X, y, **change)
    assert message in str(info.value)


def test_multi_output_model_is_bad_input():
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).double()
    _, X, y = _instance()
    with pytest.raises(tc.InvalidArgument, match="one output per sample"):
        tc.train(model, X, y)


def test_power_relu_modules_are_read():
    assert PowerReLU(3.0).p == 3.0  # the smoothness rule reads p from the module


# --- the margin Jacobian --------------------------------------------------------------------------

class _RowCentered(nn.Module):
    """Couples the samples (each row is centred on the batch mean): per-sample gradients do not apply."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 1, bias=False)

    def forward(self, x):
        return self.a(x - x.mean(0))


class _SharedLayer(nn.Module):
    """One Linear layer applied twice: its per-sample gradient is a sum over the calls (vmap's job)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 3, bias=False), nn.Linear(3, 1, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(torch.relu(self.a(x)))))


class _StandardizedConv(nn.Conv2d):
    """A convolution that standardizes its weight in forward: dq/dW is not delta x patches (vmap's job)."""

    def forward(self, x):
        w = self.weight
        return self._conv_forward(x, (w - w.mean()) / w.std(), self.bias)


class _HalvedLinear(nn.Linear):
    """A Linear layer applying half its weight: the outer-product rule would be off by 2."""

    def forward(self, x):
        return nn.functional.linear(x, self.weight / 2, self.bias)


def _frozen_weight(layer: nn.Module) -> nn.Module:
    """``layer`` with its weight frozen and its bias trained."""
    layer.weight.requires_grad_(False)
    return layer


def _image(channels, height, width, *layers):
    """A conv net on (12, channels * height * width) rows, unflattened to images."""
    return nn.Sequential(nn.Unflatten(1, (channels, height, width)), *layers)


# (model, input width, the path expected: "layerwise", "vmap" or "batched")
JACOBIAN_CASES = {
    "linear": (lambda: build_network(LINEAR), 3, "layerwise"),
    "leaky-mlp": (lambda: build_network(LEAKY), 3, "layerwise"),
    "relu3-mlp": (lambda: build_network(SMOOTH), 3, "layerwise"),
    "biased-mlp": (lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)), 3, "layerwise"),
    "conv1d": (lambda: nn.Sequential(nn.Unflatten(1, (1, 3)), nn.Conv1d(1, 2, 2, bias=False), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(4, 1, bias=False)), 3, "layerwise"),
    "conv1d-strided": (lambda: nn.Sequential(nn.Unflatten(1, (2, 7)), nn.Conv1d(2, 3, 3, stride=2, dilation=2,
                                                                                 padding=1), nn.LeakyReLU(0.1),
                                             nn.Flatten(), nn.Linear(9, 1)), 14, "layerwise"),
    "conv2d-maxpool": (lambda: _image(1, 4, 4, nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Flatten(), nn.Linear(12, 1)), 16, "layerwise"),
    "conv2d-avgpool": (lambda: _image(1, 4, 4, build_network(NetworkSpec(family="cnn", in_shape=(1, 4, 4), widths=(3,),
                                                                        pooling="avg"))), 16, "layerwise"),
    "conv2d-strided": (lambda: _image(2, 5, 5, nn.Conv2d(2, 3, (3, 2), stride=(2, 1), dilation=(1, 2), padding=(1, 0)),
                                      nn.ReLU(), nn.Flatten(), nn.Linear(27, 1, bias=False)), 50, "layerwise"),
    "conv2d-valid": (lambda: _image(1, 4, 4, nn.Conv2d(1, 2, 3, padding="valid", bias=False), nn.ReLU(),
                                    nn.Flatten(), nn.Linear(8, 1, bias=False)), 16, "layerwise"),
    "conv2d-grouped": (lambda: _image(2, 4, 4, nn.Conv2d(2, 4, 3, groups=2, bias=False), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(16, 1, bias=False)), 32, "vmap"),
    "conv2d-same": (lambda: _image(1, 4, 4, nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.Flatten(),
                                   nn.Linear(32, 1)), 16, "vmap"),
    "frozen-biased-backbone": (lambda: nn.Sequential(nn.Linear(3, 5).requires_grad_(False), nn.ReLU(),
                                                     nn.Linear(5, 1, bias=False)), 3, "layerwise"),
    "frozen-middle-trained-bias": (lambda: nn.Sequential(nn.Linear(3, 5, bias=False), nn.ReLU(),
                                                         nn.Linear(5, 4).requires_grad_(False), nn.ReLU(),
                                                         _frozen_weight(nn.Linear(4, 1))), 3, "layerwise"),
    "shared-layer": (lambda: _SharedLayer(), 3, "vmap"),
    "conv2d-subclass": (lambda: _image(1, 4, 4, _StandardizedConv(1, 2, 3), nn.ReLU(), nn.Flatten(),
                                       nn.Linear(8, 1)), 16, "vmap"),
    "linear-subclass": (lambda: nn.Sequential(_HalvedLinear(3, 4), nn.ReLU(), nn.Linear(4, 1)), 3, "vmap"),
    "batchnorm-train": (lambda: nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(),
                                              nn.Linear(4, 1, bias=False)), 3, "batched"),
    "batchnorm-plain": (lambda: nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4, affine=False), nn.ReLU(),
                                              nn.Linear(4, 1, bias=False)), 3, "batched"),
    "row-coupled": (lambda: _RowCentered(), 3, "batched"),
}


@pytest.mark.parametrize("name", JACOBIAN_CASES)
def test_per_sample_margin_jacobian_matches_the_batched_backward_passes(name):
    """Both paths evaluate the same products; their difference is within 2 gamma_K |dq/dtheta|(|theta|, |x|)
    (Higham's forward error of each, on the absolute network). Linear and convolution layers take the
    layerwise products, layers those do not cover (grouped or 'same'-padded convolutions, a layer called
    twice, subclasses that transform their weight) vmap, coupled samples the batched path."""
    make, width, path = JACOBIAN_CASES[name]
    torch.manual_seed(0)
    model = make().double()
    X, y = torch.randn(12, width, dtype=torch.float64), torch.randn(12, dtype=torch.float64).sign()
    net = FlatNetwork(model, X, y)
    theta = net.flatten()
    q, A = net.margin_jacobian(theta)
    q_old, A_old = net.batched_margin_jacobian(theta)
    scale = FlatNetwork(model, X.abs(), y.abs()).batched_margin_jacobian(theta.abs())[1].abs()
    allowed = 2 * gamma(net.dot_product_terms(), torch.float64) * scale
    assert A.shape == (12, theta.numel()) and bool(((A - A_old).abs() <= allowed).all())
    assert torch.equal(q, q_old.detach()) or bool(((q - q_old).abs() <= 1e-15 * q_old.abs().max()).all())
    assert net._per_sample is (path != "batched")
    assert path == "batched" or bool(net._layers) is (path == "layerwise")


@pytest.mark.parametrize("spec, resolved", [(LEAKY, False), (SMOOTH, True)])
def test_a_flow_that_raises_the_loss_says_it_is_not_resolving_the_flow(spec, resolved, tc_device, tc_dtype):
    """The exact flow lowers log J. A leaky-ReLU flow at the default rtol (1e-2) accepts steps chattering across
    kinks that raise it (measured: 44 of 161 steps, by up to 5.4, down to log J = -40); the run says so instead of
    passing as the flow. A C^2 network at its default rtol lowers it at every step."""
    model, X, y = FlowInstance(spec=spec, seed=1, n=10).build(tc_device, tc_dtype)
    trajectory = tc.train(model, X, y, log_loss_target=-40.0)
    assert trajectory.resolves_flow is resolved, (trajectory.log_loss_rises, trajectory.largest_log_loss_rise)
    assert ("NOT resolving the flow" in trajectory.integrator) is (not resolved)
    assert Trajectory.from_dict(json.loads(json.dumps(trajectory.to_dict()))).log_loss_rises == trajectory.log_loss_rises
    gd = tc.train(model, X, y, method="gd", lr=0.1, steps=3)
    assert gd.resolves_flow is None and gd.log_loss_rises == 0


@pytest.mark.parametrize("scale, hidden", [(0.0, True), (1e-300, True), (0.0, False), (1e-170, False)])
def test_a_start_at_zero_or_below_the_float_range_is_refused_naming_the_fix(scale, hidden):
    """At theta = 0 (or ||theta||^L underflowing) the clock and the normalized margins are 0/0: an
    InvalidArgument saying so, not a ZeroDivisionError."""
    X = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.where(X[:, 0] > 0, 1.0, -1.0).double()
    layers = [torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(), torch.nn.Linear(4, 1, bias=False)] if hidden \
        else [torch.nn.Linear(3, 1, bias=False)]  # a linear model from zeros: logistic regression's usual start
    model = torch.nn.Sequential(*layers).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(scale)
    for method in ("flow", "gd"):
        with pytest.raises(tc.InvalidArgument, match="positive normal numbers.*Fix: start from"):
            tc.train(model, X, y, method=method, lr=0.1, steps=3)
