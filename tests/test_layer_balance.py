"""Unit tests and negative controls for the Recorder and the layer-balance checker."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.layer_balance import _has_gradient, recorded_run
from theorycheck.claims import layer_balance as layer_balance_module
from theorycheck.core.devices import dtype_of
from theorycheck.generate.models import NetworkSpec
from theorycheck.generate.sampling import network_and_batch
from theorycheck.claims.layer_balance import kit as balance_kit

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
    assert verdict.assumptions[balance_kit.assumptions["plain"]] is False
    assert not verdict.conclusion_held
    with pytest.raises(tc.ClaimViolation, match=r'layer_balance: vacuous.*"updates are plain gradient steps'):
        tc.assert_layer_balance(_run(SPECS["mlp"], tc_device, tc_dtype, optimizer=optimizer))


def test_bias_control_names_the_assumption():
    verdict = tc.check_layer_balance(_run(NetworkSpec(bias=True)))
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["no_bias"]] is False
    assert not verdict.conclusion_held and "bias" in verdict.reason


def test_weights_changed_outside_the_optimizer_are_an_assumption_not_met():
    """Plain steps, but the loop rescales a layer between steps: the run is outside the theorem
    (vacuous, the edit named), and the drift is still reported."""
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
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["unedited"]] is False, verdict.summary()
    assert not verdict.conclusion_held and "drifted by" in verdict.reason and "outside the optimizer" in verdict.reason


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
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["homogeneous"]] is False


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


def _balanced_linear_run():
    """An audit float64 draw: a depth-4 linear network on balanced labels, where sum_n l'_n f_n cancels to
    4.5e-4 while the per-sample terms are O(1): its Euler sums differ by 2.3e-16, beyond gamma_K sum|W*g|."""
    model, X = network_and_batch(NetworkSpec(family="linear", in_shape=(1,), widths=(6, 5, 8)), seed=1141580672,
                                 batch=16, device="cpu", dtype="float64")
    y = torch.where(torch.arange(16) % 2 == 0, 1.0, -1.0).to(X)
    return recorded_run(model, X, y, optimizer="sgd", lr=0.02623497207372906, steps=25, seed=1141580672)


def test_cancelling_gradient_is_judged_against_its_roundoff_scale():
    """Plain SGD holds: the Euler sums' spread is within gamma_K S (S from the backward pass), not judged a
    penalty; without S (a loop the Recorder could not see) the same spread is undecided, never vacuous."""
    traj = _balanced_linear_run()
    assert np.all(traj.grad_scale > 1e3 * np.abs(traj.inner[:, :1]).min())
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["euler_sums"]["rigorous_steps"] == traj.steps
    unseen = dataclasses.replace(traj, grad_scale=np.full(traj.steps, np.nan))
    verdict = tc.check_layer_balance(unseen)
    assert verdict.status == "inconclusive" and "undecided" in verdict.reason, verdict.summary()


def test_small_penalty_on_a_power_relu_network_is_seen_in_float32():
    """A 1% L2 penalty on a depth-3 ReLU^3 network (an audit float32 draw): the roundoff scale follows the real
    activation pattern, so the penalty's Euler spread (1.3e-2) stands far above the bound (7e-6)."""
    spec = NetworkSpec(in_shape=(2,), widths=(7, 8, 11), activation="relu_p", power=3.0)
    model, X = network_and_batch(spec, seed=29449228, batch=9, device="cpu", dtype="float32")
    y = torch.where(torch.arange(9) % 2 == 0, 1.0, -1.0).to(X)
    traj = recorded_run(model, X, y, optimizer="sgd", lr=0.05, steps=10, seed=29449228, loop_control="l2_penalty")
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "vacuous" and balance_kit.assumptions["euler"] in verdict.failed_assumptions, verdict.summary()


@pytest.mark.parametrize("optimizer, status", [("sgd", "inconclusive"), ("weight_decay", "vacuous"),
                                               ("momentum", "vacuous")])
def test_overflow_after_a_broken_assumption_is_vacuous(optimizer, status):
    """An audit float32 draw (ReLU^3 CNN, lr 0.09) overflows at step 9: plain SGD has nothing decided
    (inconclusive), while weight decay or momentum were seen in the finite steps before, so the theorem is
    silent (vacuous); NaN records must not count as a broken assumption."""
    spec = NetworkSpec(family="cnn", in_shape=(3, 4, 4), widths=(1, 4), activation="relu_p", power=3.0)
    model, X = network_and_batch(spec, seed=1823976179, batch=10, device="cpu", dtype="float32")
    y = torch.where(torch.arange(10) % 2 == 0, 1.0, -1.0).to(X)
    traj = recorded_run(model, X, y, optimizer=optimizer, lr=0.09062088621339007, steps=22, seed=1823976179)
    assert not np.isfinite(traj.sq_norms[-1]).all()
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == status, verdict.summary()
    assert "non-finite" in verdict.reason
    assert verdict.failed_assumptions == ([] if optimizer == "sgd" else [balance_kit.assumptions["plain"]])


def test_controls_redraw_a_network_without_gradient():
    """A max-pool CNN dead on its batch (an audit float32 draw): no optimizer moves it, so Adam there is
    indistinguishable from SGD (inconclusive), and the controls redraw such networks."""
    spec = NetworkSpec(family="cnn", in_shape=(2, 3, 3), widths=(1, 2), pooling="max")
    assert not _has_gradient(spec, 1347389378, 2, "float32")
    model, X = network_and_batch(spec, seed=1347389378, batch=2, device="cpu", dtype="float32")
    traj = recorded_run(model, X, torch.tensor([1.0, -1.0]), optimizer="adam", lr=0.0025, steps=27, seed=1)
    assert tc.check_layer_balance(traj).status == "inconclusive"
    rng = np.random.default_rng(0)
    controls = [layer_balance_module._sgd_case(rng, "cpu", "float32", control="adam") for _ in range(40)]
    assert all(case.run().status == "vacuous" for case in controls)


@pytest.mark.parametrize("weight_decay, status", [(0.0, "inconclusive"), (0.5, "vacuous")])
def test_frozen_run_is_inconclusive_unless_it_shows_a_broken_assumption(weight_decay, status):
    """Every lr*||g|| below the weights' roundoff: plain SGD tests nothing (inconclusive); weight decay is still
    seen in the updates (lr * wd * ||W|| above roundoff), so the theorem is silent (vacuous), as on the audit's
    float32 draw where a weight-decay control came back inconclusive."""
    model, X = network_and_batch(SPECS["mlp"], 1, 4, "cpu", "float32")
    y = torch.tensor([1.0, -1.0, 1.0, -1.0])
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, weight_decay=weight_decay)
    with tc.Recorder(model, opt) as rec:
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.softplus(-y * model(X).squeeze(1)).sum().backward()
            for parameter in model.parameters():
                parameter.grad.mul_(1e-8)  # lr * ||g|| ~ 1e-12 ||g||: far below float32 roundoff of ||W||
            opt.step()
    verdict = tc.check_layer_balance(rec.trajectory)
    assert verdict.details["plain_steps"]["informative_steps"] == 0
    assert verdict.status == status, verdict.summary()
    assert (balance_kit.assumptions["plain"] in verdict.failed_assumptions) == (weight_decay > 0)


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


# --- loops outside the theorem: the gradient is not a loss gradient of f --------------------------

def _loop(model, X, y, opt, *, steps=8, edit_grads=None, penalty=0.0, check_X=None, degrees=None, between=None):
    """The user's loop: logistic loss (+ penalty sum ||W||^2), optional gradient edits before each step
    and weight edits after it."""
    with tc.Recorder(model, opt, check_X, degrees=degrees) as rec:
        for _ in range(steps):
            opt.zero_grad()
            loss = nn.functional.softplus(-y * model(X).reshape(-1)).sum()
            if penalty:
                loss = loss + penalty * sum((p ** 2).sum() for p in model.parameters())
            loss.backward()
            if edit_grads is not None:
                edit_grads(model)
            opt.step()
            if between is not None:
                between(model)
    return rec.trajectory


def _noise(model):
    for p in model.parameters():
        p.grad.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)).to(p.grad))


GRADIENT_EDITS = {  # name: (edit, penalty); none of them is visible in update = -lr * recorded grad
    "l2-penalty": (None, 0.01),
    "per-layer-clipping": (lambda m: [nn.utils.clip_grad_norm_([p], 1e-2) for p in m.parameters()], 0.0),
    "clip-grad-value": (lambda m: nn.utils.clip_grad_value_(m.parameters(), 1e-2), 0.0),
    "gradient-noise": (_noise, 0.0),
}


@pytest.mark.parametrize("name", GRADIENT_EDITS)
def test_gradient_edits_break_the_euler_assumption(name, tc_device, tc_dtype):
    model, X = network_and_batch(SPECS["mlp"], 1, 12, tc_device, tc_dtype)
    y = torch.where(torch.arange(12, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    edit, penalty = GRADIENT_EDITS[name]
    traj = _loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.05), edit_grads=edit, penalty=penalty)
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[balance_kit.assumptions["euler"]] is False and verdict.assumptions[balance_kit.assumptions["plain"]] is True
    assert "Euler sums" in verdict.reason


def test_global_norm_clipping_is_a_loss_gradient_and_holds(tc_device, tc_dtype):
    """clip_grad_norm_ over all layers scales every g_k alike: the gradient of c L, so the identity holds
    with the recorded (clipped) gradient (an edge instance: clipping active at every step)."""
    model, X = network_and_batch(SPECS["mlp"], 1, 12, tc_device, tc_dtype)
    y = torch.where(torch.arange(12, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    norms = []
    traj = _loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.05),
                 edit_grads=lambda m: norms.append(float(nn.utils.clip_grad_norm_(m.parameters(), 1e-2))))
    assert min(norms) > 1e-2  # clipped at every step
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["euler_sums"]["worst_spread"] <= verdict.details["euler_sums"]["allowed"]


# --- per-neuron pairs follow the graph -------------------------------------------------------------

class ChannelsLast(nn.Module):
    """conv -> ReLU -> permute to (N, H, W, C) -> flatten -> linear: channel i's units are every 3rd input of
    the linear layer (strided), not a channel-major block."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, bias=False)
        self.head = nn.Linear(3 * 4 * 4, 1, bias=False)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).permute(0, 2, 3, 1).flatten(1))


class PoolAcrossUnits(nn.Module):
    """A max-pool over neighbouring hidden units (shapes unchanged): no unit can be rescaled alone."""

    def __init__(self):
        super().__init__()
        self.inp, self.pool, self.out = nn.Linear(4, 6, bias=False), nn.MaxPool1d(3, 1, 1), nn.Linear(6, 1, bias=False)

    def forward(self, x):
        return self.out(self.pool(torch.relu(self.inp(x)).unsqueeze(1)).squeeze(1))


def _frozen_middle():
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 6, bias=False), nn.ReLU(),
                          nn.Linear(6, 1, bias=False))
    model[2].weight.requires_grad_(False)
    return model


@pytest.mark.parametrize("make", [_frozen_middle, PoolAcrossUnits])
def test_layers_without_a_unit_symmetry_are_declared_and_the_layers_still_judged(make, tc_device, tc_dtype):
    torch.manual_seed(0)
    model = make().to(device=tc_device, dtype=dtype_of(tc_dtype))
    X = torch.randn(10, 4, device=tc_device, dtype=dtype_of(tc_dtype))
    y = torch.where(torch.arange(10, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    traj = _loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.05))
    assert traj.pairs == () and {layer for _, layer, _ in traj.unpaired} == set(traj.layers)
    verdict = tc.check_layer_balance(traj)  # the layer-wise identity needs no pairing: it holds
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["neurons"] == {} and verdict.details["per_neuron"]["status"] == "vacuous"
    assert "per-neuron identity vacuous" in verdict.reason


def test_channel_major_flatten_strided_flatten_and_pooling_are_paired(tc_device, tc_dtype):
    model, X = network_and_batch(SPECS["cnn"], 3, 6, tc_device, tc_dtype)
    y = torch.where(torch.arange(6, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    traj = _loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.05))
    assert {(p.lower, p.upper) for p in traj.pairs} == set(zip(traj.layers, traj.layers[1:])) and not traj.unpaired
    assert tc.check_layer_balance(traj).status == "holds"
    torch.manual_seed(0)
    model = ChannelsLast().to(device=tc_device, dtype=dtype_of(tc_dtype))
    X = torch.randn(10, 2, 6, 6, device=tc_device, dtype=dtype_of(tc_dtype))
    traj = _loop(model, X, torch.ones(10, device=X.device, dtype=X.dtype), torch.optim.SGD(model.parameters(), lr=0.05))
    assert [[(m.layer, m.layout, m.exponent) for m in p.members] for p in traj.pairs] == [
        [("conv.weight", "whole", 1.0), ("head.weight", "strided", -1.0)]]
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "holds" and verdict.details["per_neuron"]["status"] == "judged", verdict.summary()


def test_recorder_passes_its_degrees_to_the_homogeneity_check(tc_device, tc_dtype):
    from theorycheck.core.modules import PowerReLU

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5, bias=False), PowerReLU(2.0), nn.Linear(5, 1, bias=False)).to(
        device=tc_device, dtype=dtype_of(tc_dtype))
    X = torch.randn(8, 3, device=tc_device, dtype=dtype_of(tc_dtype))
    y = torch.where(torch.arange(8, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    right = _loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.01), check_X=X, degrees=[2.0, 1.0])
    assert right.homogeneity.homogeneous is True, right.homogeneity.summary()
    assert tc.check_layer_balance(right).status == "holds"
    wrong = tc.check_layer_balance(_loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.01), degrees=[1.0, 1.0]))
    assert wrong.status == "vacuous" and wrong.assumptions[balance_kit.assumptions["euler"]] is False, wrong.summary()


def test_an_optimizer_that_does_not_own_the_weights_is_refused():
    model, _ = network_and_batch(SPECS["mlp"], 1, 4, "cpu", "float64")
    other, _ = network_and_batch(SPECS["mlp"], 2, 4, "cpu", "float64")
    with pytest.raises(tc.InvalidArgument, match="expected an optimizer that owns every trainable weight.*Fix"):
        tc.Recorder(model, torch.optim.SGD(other.parameters(), lr=0.1))


@pytest.mark.parametrize("control", ["l2_penalty", "clip_per_layer", "clip_value", "noise", "edit_between"])
def test_audit_loop_controls_name_their_assumption(control, tc_device, tc_dtype):
    verdict = tc.check_layer_balance(_run(SPECS["cnn"], tc_device, tc_dtype, loop_control=control))
    assumption = balance_kit.assumptions["unedited"] if control == "edit_between" else balance_kit.assumptions["euler"]
    assert verdict.status == "vacuous" and verdict.failed_assumptions == [assumption], verdict.summary()


def test_headline_is_the_deciding_part():
    """Layer pairs and neurons are parts of one conclusion: statistic <= bound + tolerance iff it held."""
    for case in tc.CLAIMS["layer_balance"].audit_cases(n=3, seed=0, device="cpu", dtype="float64"):
        verdict = case.run()
        if np.isfinite(verdict.statistic):
            assert (verdict.statistic <= verdict.bound + verdict.tolerance) == verdict.conclusion_held, verdict.summary()


def test_a_failing_neuron_is_the_headline_when_the_layers_balance():
    """Between steps, norm moves from unit 0's incoming row to unit 1's (||W_1|| kept): the layer pair
    still balances, the neurons do not; the headline reports the failing neuron."""
    model, X = network_and_batch(SPECS["mlp"], 1, 8, "cpu", "float64")
    y = torch.where(torch.arange(8) % 2 == 0, 1.0, -1.0).double()
    first = next(iter(model.parameters()))

    @torch.no_grad()
    def move_norm(model):
        a, b = (first[0] ** 2).sum(), (first[1] ** 2).sum()
        first[0].mul_(0.5)
        first[1].mul_(torch.sqrt((b + 0.75 * a) / b))

    verdict = tc.check_layer_balance(_loop(model, X, y, torch.optim.SGD(model.parameters(), lr=0.01), steps=4,
                                           between=move_norm))
    layers = [p for p in verdict.details["comparisons"] if p["name"].startswith("D ")]
    failing = [p for p in verdict.details["comparisons"] if not p["held"]]
    assert all(p["held"] for p in layers) and failing and all(p["name"].startswith("neuron") for p in failing)
    assert verdict.statistic > verdict.bound + verdict.tolerance
    assert verdict.statistic == max(p["measured"] for p in failing)
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["unedited"]] is False


def test_layers_used_outside_modules_are_paired_by_measurement():
    """Weights applied with F.linear in forward: no module holds them, and the symmetry is still measured."""

    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.first_weight = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))
            self.second_weight = nn.Parameter(torch.randn(1, 5, dtype=torch.float64))

        def forward(self, x):
            return nn.functional.linear(torch.relu(nn.functional.linear(x, self.first_weight)), self.second_weight)

    torch.manual_seed(0)
    model, X = Functional(), torch.randn(10, 3, dtype=torch.float64)
    traj = _loop(model, X, torch.ones(10, dtype=torch.float64), torch.optim.SGD(model.parameters(), lr=0.05))
    assert [(p.lower, p.upper, p.units) for p in traj.pairs] == [("first_weight", "second_weight", 5)]
    assert tc.check_layer_balance(traj).status == "holds"


def test_homogeneity_undecided_on_x_makes_the_run_inconclusive_not_vacuous():
    """A ReLU net dead on every sample of X: its homogeneity check has nothing to test (inconclusive), which is
    neither the assumption met nor unmet."""
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(-torch.ones(4, 3))
    X = torch.rand(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # positive: all dead
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tc.Recorder(model, opt, X) as rec:
        for _ in range(3):
            opt.zero_grad()
            (model(X) + model(X + 1)).sum().backward()
            opt.step()
    assert rec.trajectory.homogeneity.homogeneous is None, rec.trajectory.homogeneity.summary()
    verdict = tc.check_layer_balance(rec.trajectory)
    assert verdict.status == "inconclusive" and balance_kit.assumptions["homogeneous"] not in verdict.assumptions, verdict.summary()
    assert verdict.details["undecided_assumptions"] == [balance_kit.assumptions["homogeneous"]] and not verdict.failed_assumptions


# --- closure-based optimizers: the gradient is computed inside step(closure) ------------------------------

class _TwoLayer(nn.Module):
    """A user's own bias-free ReLU net (not from the generators)."""

    def __init__(self, d=4, width=7):
        super().__init__()
        self.inp = nn.Linear(d, width, bias=False)
        self.out = nn.Linear(width, 1, bias=False)

    def forward(self, x):
        return self.out(torch.relu(self.inp(x))).squeeze(-1)


def _closure_loop(optimizer_factory, dtype, *, steps=6, positional=True, zero_before=True):
    torch.manual_seed(3)
    model = _TwoLayer().to(dtype)
    X = torch.randn(10, 4, dtype=dtype)
    y = torch.where(torch.arange(10) % 2 == 0, 1.0, -1.0).to(dtype)
    opt = optimizer_factory(model.parameters())
    if zero_before:
        opt.zero_grad(set_to_none=True)  # no gradient in p.grad when step() is called

    def closure():
        opt.zero_grad()
        loss = nn.functional.softplus(-y * model(X)).sum()
        loss.backward()
        return loss

    with tc.Recorder(model, opt) as rec:
        for _ in range(steps):
            opt.step(closure) if positional else opt.step(closure=closure)
    return rec.trajectory


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("positional", [True, False])
def test_sgd_stepping_through_a_closure_is_plain_and_balances(dtype, positional):
    """SGD with step(closure): the gradient is computed inside the step; the Recorder reads the one the step
    used, so the steps are plain and the balance identity holds (no gradient missing)."""
    traj = _closure_loop(lambda ps: torch.optim.SGD(ps, lr=0.05), dtype, positional=positional)
    assert traj.missing_gradients == 0
    assert np.all(traj.grad_norm > 0)
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.assumptions[balance_kit.assumptions["plain"]] is True
    assert [(p.lower, p.upper) for p in traj.pairs] == [("inp.weight", "out.weight")], traj.unpaired


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lbfgs_is_not_a_plain_gradient_step(dtype):
    """LBFGS calls the closure many times and moves along a quasi-Newton direction: not plain (vacuous)."""
    traj = _closure_loop(lambda ps: torch.optim.LBFGS(ps, lr=0.5, max_iter=5), dtype, steps=3)
    assert traj.missing_gradients == 0
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[balance_kit.assumptions["plain"]] is False


# --- observing never changes the run ------------------------------------------------------------------

class _DropoutNet(nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.inp = nn.Linear(5, 16, bias=False)
        self.norm = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(16, 1, bias=False)
        self.to(dtype)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.norm(self.inp(x))))).squeeze(-1)


def _seeded_dropout_loop(dtype, *, record: bool, closure: bool = False):
    torch.manual_seed(11)
    model = _DropoutNet(dtype)
    X = torch.randn(24, 5, dtype=dtype)
    y = torch.where(torch.arange(24) % 3 == 0, 1.0, -1.0).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = tc.Recorder(model, opt, X, y) if record else None

    def closure_fn():
        opt.zero_grad()
        batch = torch.randint(0, 24, (8,))
        loss = nn.functional.softplus(-y[batch] * model(X[batch])).sum()
        loss.backward()
        return loss

    for _ in range(6):
        if closure:
            opt.step(closure_fn)
        else:
            closure_fn()
            opt.step()
    if rec is not None:
        rec.close()
        assert rec.trajectory.outputs.shape == (6, 24)
    assert model.training  # the user's mode is left as it was
    return {**{n: p.detach().clone() for n, p in model.named_parameters()},
            **{n: b.clone() for n, b in model.named_buffers()}, "rng": torch.get_rng_state()}


@pytest.mark.parametrize("closure", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_recorder_leaves_a_seeded_dropout_loop_bit_identical(dtype, closure):
    """Dropout and BatchNorm in train mode, with X given (outputs recorded after every step): the final
    weights, the BatchNorm statistics and the random state are bit-identical to the loop without the Recorder."""
    plain = _seeded_dropout_loop(dtype, record=False, closure=closure)
    observed = _seeded_dropout_loop(dtype, record=True, closure=closure)
    assert plain.keys() == observed.keys()
    for name in plain:
        assert torch.equal(plain[name], observed[name]), name


@pytest.mark.parametrize("dtype, plain", [(torch.float16, "holds"), (torch.bfloat16, "inconclusive")])
@pytest.mark.parametrize("weight_decay", [0.0, 0.5])  # lr wd = 0.025 > 2u of bf16
def test_half_precision_runs_are_judged_with_their_own_roundoff(dtype, plain, weight_decay):
    """A float16/bfloat16 model (check_homogeneity accepts it) is recorded and judged with u of its dtype:
    plain SGD holds in float16; in bfloat16 the roundoff bound (13.5) exceeds the size of D itself (6.2), so a
    plain run is undecided rather than a holds that could not have failed; weight decay is still seen as a
    non-plain step in both."""
    status = plain if weight_decay == 0 else "vacuous"
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 12, bias=False), nn.ReLU(), nn.Linear(12, 1, bias=False)).to(dtype)
    X = torch.randn(16, 4).to(dtype)
    y = torch.where(torch.arange(16) % 2 == 0, 1.0, -1.0).to(dtype)
    assert tc.check_homogeneity(model, X).status == "holds"
    opt = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=weight_decay)
    with tc.Recorder(model, opt, X, y) as rec:
        for _ in range(8):
            opt.zero_grad()
            nn.functional.softplus(-y * model(X).squeeze(1)).sum().backward()
            opt.step()
    verdict = tc.check_layer_balance(rec.trajectory)
    assert verdict.status == status, verdict.summary()
    assert verdict.dtype == str(dtype).removeprefix("torch.")
    assert (balance_kit.assumptions["plain"] in verdict.failed_assumptions) == (weight_decay > 0)


# --- the arithmetic the gradient was computed in, and gradients reused without a backward -----------------

def _autocast_loop(dtype, *, penalty=0.0, steps=6):
    torch.manual_seed(0)
    model = _TwoLayer().to(dtype)
    X = torch.randn(12, 4, dtype=dtype)
    y = torch.where(torch.arange(12) % 2 == 0, 1.0, -1.0).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with tc.Recorder(model, opt) as rec:
        for _ in range(steps):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(X)
            loss = nn.functional.softplus(-y * out.to(dtype).reshape(-1)).sum()
            (loss + penalty * sum((p ** 2).sum() for p in model.parameters())).backward()
            opt.step()
    return rec.trajectory


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_an_autocast_forward_is_judged_with_the_arithmetic_it_ran_in(dtype):
    """bfloat16 autocast on float32 weights rounds the gradient at 2^-8 (measured from the activations): there the
    bound exceeds the size of D itself, so plain SGD is undecided (a penalty the bound hides could not be seen);
    a float64 model is untouched by autocast, keeps its own roundoff and holds."""
    traj = _autocast_loop(dtype)
    expected = 2.0 ** -8 if dtype == torch.float32 else 2.0 ** -53
    assert np.all(traj.grad_roundoff == expected), traj.grad_roundoff
    verdict = tc.check_layer_balance(traj)
    if dtype == torch.float32:
        assert verdict.status == "inconclusive" and "cannot resolve D_k" in verdict.reason, verdict.summary()
    else:
        assert verdict.status == "holds", verdict.summary()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_penalty_under_autocast_is_still_seen(dtype):
    """A penalty whose Euler-sum spread exceeds the bfloat16 bound (2 gamma_K d S, K = 36: 0.14 S) is caught under
    autocast; in float64 (autocast leaves it alone) any penalty is."""
    verdict = tc.check_layer_balance(_autocast_loop(dtype, penalty=3.0))
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["euler"]] is False, \
        verdict.summary()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_gradient_reused_without_a_backward_is_decided_by_its_spread(dtype):
    """Two optimizer steps per backward: the second applies a gradient of the earlier weights. Its roundoff is the
    pass that computed it, so the spread it produces decides (vacuous), not 'undecided'."""
    torch.manual_seed(0)
    model = _TwoLayer().to(dtype)
    X, y = torch.randn(12, 4, dtype=dtype), torch.where(torch.arange(12) % 2 == 0, 1.0, -1.0).to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    traj = _loop(model, X, y, opt, steps=3, between=lambda _: opt.step())
    assert traj.grad_reused.tolist() == [False, True] * 3 and np.isfinite(traj.grad_scale).all()
    verdict = tc.check_layer_balance(traj)
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["euler"]] is False, \
        verdict.summary()
    assert verdict.details["euler_sums"]["reused_steps_off"] >= 1 and "reused" in verdict.reason


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_frozen_first_layer_with_x_given_is_judged_on_the_trained_layers(dtype):
    """Fine-tuning the head of a bias-free ReLU net (first layer frozen, X given to the Recorder): the
    homogeneity pre-check counts the frozen layer at degree 1 (no degrees were passed), plain SGD holds on the
    trained layers and weight decay is still caught."""
    statuses = []
    for weight_decay in (0.0, 1e-2):
        torch.manual_seed(0)
        X, y = torch.randn(32, 6, dtype=dtype), torch.sign(torch.randn(32, dtype=dtype))
        model = nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 8, bias=False), nn.ReLU(),
                              nn.Linear(8, 1, bias=False)).to(dtype)
        model[0].weight.requires_grad_(False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05, weight_decay=weight_decay)
        with tc.Recorder(model, opt, X, y) as recorder:
            for _ in range(5):
                opt.zero_grad()
                nn.functional.softplus(-y * model(X).squeeze(1)).sum().backward()
                opt.step()
        statuses.append(tc.check_layer_balance(recorder.trajectory).status)
    assert statuses == ["holds", "vacuous"]
