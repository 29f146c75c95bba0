"""Unit tests and negative controls for the kkt claim (Lyu & Li 2020 Thm 4.4; Soudry et al. 2018) and the SVM oracle."""

import copy
import dataclasses
import functools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize

import theorycheck as tc
from theorycheck.claims.kkt import kkt_point, linear_weights
from theorycheck.claims.margin import FlowInstance
from theorycheck.generate.data import separable, with_contradiction
from theorycheck.engines.flat_network import FlatNetwork
from theorycheck.generate.models import NetworkSpec, build_network
from theorycheck.engines.svm import angle, hard_margin_svm
from theorycheck.claims.kkt import kit as kkt_kit
from theorycheck.claims.margin import kit as margin_kit

LINEAR = NetworkSpec(family="linear", in_shape=(4,), widths=())
DEEP = NetworkSpec(in_shape=(3,), widths=(4,), activation="leaky_relu")
SMOOTH = NetworkSpec(in_shape=(3,), widths=(4,), activation="relu_p", power=3.0)


@functools.lru_cache(maxsize=None)
def _run(spec, device, dtype, control, target, seed, n):
    instance = FlowInstance(spec=spec, seed=seed, n=n, control=control, log_loss_target=target)
    model, X, y = instance.build(device, dtype)
    trajectory = tc.train(model, X, y, **instance.train_kwargs())
    return model, X, y, trajectory


def _trained(spec, device="cpu", dtype="float64", *, control=None, target=math.log(1e-30), seed=5, n=10):
    """(model at the end of the run, X, y, Trajectory): one run per setting shared by the tests (a copy of the model)."""
    model, X, y, trajectory = _run(spec, device, dtype, control, target, seed, n)
    return copy.deepcopy(model), X, y, trajectory


# --- the SVM oracle -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_svm_matches_a_qp_solver(seed):
    data = separable(12, 4, margin=0.1, seed=seed)
    X, y = data.X.numpy(), data.y.numpy()
    svm = hard_margin_svm(X, y)
    qp = minimize(lambda w: 0.5 * w @ w, np.zeros(4), jac=lambda w: w, method="SLSQP",
                  constraints=[{"type": "ineq", "fun": lambda w: y * (X @ w) - 1, "jac": lambda w: y[:, None] * X}],
                  options={"ftol": 1e-15, "maxiter": 500})
    assert angle(svm.w, qp.x) < 1e-7 and (y * (X @ svm.w)).min() == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(svm.w, (svm.alpha * y) @ X, atol=1e-12) and (svm.alpha >= 0).all()
    assert set(svm.support) <= set(svm.active) and svm.margin == pytest.approx(1 / np.linalg.norm(svm.w))
    _assert_feasible(svm, X, y)


def _lp_feasible(X, y) -> bool:
    """Independent oracle: is {w: y_n <w, x_n> >= 1} non-empty (scipy's HiGHS LP, zero objective)?"""
    G = y[:, None] * X
    lp = linprog(np.zeros(X.shape[1]), A_ub=-G / np.abs(G).max(), b_ub=-np.ones(len(y)) / np.abs(G).max(),
                 bounds=[(None, None)] * X.shape[1], method="highs")
    assert lp.status in (0, 2), lp.message
    return lp.status == 0


def _assert_feasible(svm, X, y):
    G = y[:, None] * X
    assert (G @ svm.w >= 1 - svm.tolerance).all() and svm.worst_violation <= 1


def test_svm_reports_inseparable_data():
    data = with_contradiction(separable(8, 3, seed=1))
    X, y = data.X.numpy(), data.y.numpy()
    svm = hard_margin_svm(X, y)
    assert not svm.separable and math.isnan(svm.margin) and not _lp_feasible(X, y)


@pytest.mark.parametrize("seed", range(3))
def test_contradictory_labels_are_never_separable(seed):
    """The same x with both labels: no w has y <w, x> >= 1 for both; the LP oracle agrees."""
    data = separable(10, 3, margin=0.2, seed=seed)
    X, y = data.X.numpy(), data.y.numpy()
    X, y = np.vstack([X, X[:1]]), np.concatenate([y, -y[:1]])
    assert not _lp_feasible(X, y)
    assert not hard_margin_svm(X, y).separable


@pytest.mark.parametrize("scale", [1e-9, 1e-7, 1e-3, 1.0, 1e6, 1e12])
def test_svm_is_scale_free(scale):
    """X * s has the SVM w / s: same separability, ||w|| to roundoff (relative gamma_{N+d} x cond), verified w."""
    data = separable(12, 4, margin=0.1, seed=2)
    X, y = data.X.numpy(), data.y.numpy()
    reference = hard_margin_svm(X, y)
    scaled = hard_margin_svm(X * scale, y)
    assert scaled.separable and _lp_feasible(X * scale, y)
    _assert_feasible(scaled, X * scale, y)
    assert np.linalg.norm(scaled.w) * scale == pytest.approx(np.linalg.norm(reference.w), rel=1e-9)
    assert angle(scaled.w, reference.w) < 1e-9 and scaled.support == reference.support


def test_angle_is_accurate_for_tiny_angles():
    assert angle([1.0, 0.0], [1.0, 1e-12]) == pytest.approx(1e-12, rel=1e-6)
    assert angle([1.0, 0.0], [-1.0, 0.0]) == pytest.approx(math.pi)


# --- the flow reaches the SVM / KKT points ---------------------------------------------------------

def test_linear_flow_converges_to_the_svm_at_soudrys_rate():
    model, X, y, trajectory = _trained(LINEAR, target=-700.0)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "holds", verdict.summary()
    svm = verdict.details["svm"]
    assert svm["angle"] <= 1e-2 and svm["same_support"] and set(svm["active"]) <= set(verdict.details["support"])
    assert -1.5 < svm["log_log_slope"] < -0.5  # angle ~ C / log t
    assert verdict.details["eps_decreasing"] and verdict.details["delta_decreasing"]
    assert sorted(verdict.details["support"]) == verdict.details["support"]
    assert len(verdict.details["multipliers"]) == len(y)
    assert linear_weights(model) is not None and linear_weights(build_network(DEEP)) is None


@pytest.mark.parametrize("spec", [DEEP, SMOOTH], ids=["leaky-mlp", "relu3-mlp"])
def test_deep_flow_has_decreasing_eps_and_delta(spec, tc_device, tc_dtype):
    model, X, y, trajectory = _trained(spec, tc_device, tc_dtype)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "holds", verdict.summary()
    history = verdict.details["history"]
    assert len(history["eps"]) >= 3 and history["eps"][-1] < history["eps"][0]
    assert verdict.details["goldstein_radius"] == (0.0 if spec is SMOOTH else 3 * trajectory.rtol)


def test_plain_stationarity_would_put_multipliers_on_non_support_points():
    """Why complementary slackness is in the NNLS: with N > P the stationarity system alone is solved exactly
    by multipliers on non-support points; the joint problem leaves them ~0."""
    from scipy.optimize import nnls

    model, X, y, _ = _trained(LINEAR, target=-300.0, n=12)
    point = kkt_point(FlatNetwork(model, X, y), FlatNetwork(model, X, y).flatten(), 1.0)
    q = point["margins"]
    theta = FlatNetwork(model, X, y).flatten().numpy() / q.min()
    G = (y[:, None] * X).numpy().T
    plain, _ = nnls(G, theta)
    off = np.setdiff1d(np.arange(len(q)), point["support"])
    assert plain[off].sum() > 10 * point["multipliers"][off].sum()
    assert point["delta"] < 1e-2


# --- negative controls -----------------------------------------------------------------------------

@pytest.mark.parametrize("control, assumption", [("weight_decay", margin_kit.assumptions["no_decay"]), ("square", margin_kit.assumptions["loss"]),
                                                 ("inseparable", margin_kit.assumptions["t0"])])
def test_broken_assumptions_are_vacuous(control, assumption):
    model, X, y, trajectory = _trained(DEEP, control=control)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[assumption] is False and f'"{assumption}"' in verdict.summary()


def test_square_loss_limit_is_not_a_kkt_point():
    """Square loss on a linear model with N > d: the least-squares solution, eps stays large."""
    model, X, y, trajectory = _trained(LINEAR, control="square", n=12)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "vacuous" and not verdict.conclusion_held


def test_evaluation_before_separation_is_vacuous():
    model, X, y, trajectory = _trained(DEEP, target=math.log(10) - 0.5)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "vacuous" and verdict.assumptions[margin_kit.assumptions["t0"]] is False
    single = tc.check_kkt(model, X, y)
    assert single.status == "vacuous"


def test_a_large_multiplier_on_a_non_support_point_is_rejected():
    """A trained state (eps 2e-7, not an exact KKT point): its own multipliers are feasible, so the one state is
    inconclusive (eps is bounded only along the run); a large multiplier on a non-support point breaks the
    delta bound every state meets: violated."""
    model, X, y, _ = _trained(LINEAR, target=-300.0)
    net = FlatNetwork(model, X, y)
    point = kkt_point(net, net.flatten(), 1.0)
    good = tc.check_kkt(model, X, y, multipliers=point["multipliers"])
    assert good.status == "inconclusive" and good.details["eps"] > good.details["eps_roundoff"], good.summary()
    wrong = np.array(point["multipliers"])
    outsider = int(np.argmax(point["margins"]))
    assert outsider not in point["support"]
    wrong[outsider] += 10 * wrong.max()
    verdict = tc.check_kkt(model, X, y, multipliers=wrong)
    assert verdict.status == "violated" and f"sample {outsider}" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] kkt: violated; .*not KKT multipliers"):
        tc.assert_kkt(model, X, y, multipliers=wrong)


def test_reversed_snapshots_are_violated_by_the_falling_smoothed_margin():
    """The check can fail: the same long run of a C^2 network with its snapshots in reverse order. What decides is
    what the theorem excludes at a finite time, the smoothed margin falling beyond the run's allowance (at any
    run length), not the residuals' missing trend (eps, delta -> 0 has no rate)."""
    model, X, y, trajectory = _trained(SMOOTH, target=-300.0)
    snapshots = trajectory.snapshots
    reversed_run = dataclasses.replace(trajectory, snapshots=tuple(
        dataclasses.replace(s, theta=t.theta) for s, t in zip(snapshots, snapshots[::-1])))
    verdict = tc.check_kkt(model, X, y, trajectory=reversed_run)
    assert verdict.status == "violated" and "not decreasing" in verdict.reason, verdict.summary()
    assert "smoothed margin at the snapshots fell" in verdict.reason
    assert verdict.statistic > verdict.tolerance == verdict.details["snapshot_margin"]["allowed"]
    short = dataclasses.replace(reversed_run, snapshots=tuple(s for s in reversed_run.snapshots if -s.log_loss < 100))
    assert tc.check_kkt(model, X, y, trajectory=short).status == "violated"


# --- single states and input checks -----------------------------------------------------------------

def test_a_single_flow_state_is_not_an_exact_kkt_point():
    """A single state at finite loss is an (eps, delta)-KKT point with eps > 0 that Lyu & Li bound only along the
    run: inconclusive, never holds (this state's eps is ~0.1); its run decides. Delta is within 1/(e q_min)."""
    model, X, y, _ = _trained(SMOOTH, target=-5.0)
    assert tc.check_kkt(model, X, y).status == "inconclusive"
    model, X, y, trajectory = _trained(SMOOTH, target=-300.0)
    verdict = tc.check_kkt(model, X, y)
    assert verdict.status == "inconclusive" and "pass trajectory" in verdict.reason, verdict.summary()
    assert verdict.details["eps"] > 1e3 * verdict.details["eps_roundoff"]
    assert verdict.details["delta"] <= verdict.details["delta_limit"] == pytest.approx(1 / (math.e * verdict.details["q_min"]))
    assert verdict.details["delta_flow"] <= verdict.details["delta_limit"]
    assert verdict.details["near_support_counts"][7] >= verdict.details["near_support_counts"][1] >= 1
    assert tc.check_kkt(model, X, y, trajectory=trajectory).status == "holds"


def test_unseparated_model_is_vacuous():
    model, X, y, _ = _trained(DEEP, target=3.0)
    with torch.no_grad():
        for p in model.parameters():
            p.neg_()
    verdict = tc.check_kkt(model, X, y)
    assert verdict.status == "vacuous" and verdict.assumptions[kkt_kit.assumptions["separated"]] is False


def test_bad_input_names_expected_received_fix():
    model, X, y, trajectory = _trained(LINEAR, target=-10.0)
    with pytest.raises(tc.InvalidArgument, match="expected a trajectory of this model and data .*Fix:"):
        tc.check_kkt(model, X[:-1], y[:-1], trajectory=trajectory)
    with pytest.raises(tc.InvalidArgument, match=r"expected 10 multipliers .*Fix:"):
        tc.check_kkt(model, X, y, multipliers=[1.0, 2.0])


@pytest.mark.parametrize("claim", ["margin_monotone", "kkt"])
def test_audit_cases_reproduce(claim):
    cases = list(tc.CLAIMS[claim].audit_cases(n=2, seed=1, device="cpu", dtype="float64"))
    assert [c.kind for c in cases] == ["instance", "instance", "control", "control"]
    namespace: dict = {}
    exec(cases[0].reproduce.replace("print(", "result = ("), namespace)
    assert namespace["result"].startswith(f"[theorycheck] {claim}: holds")
    assert all(case.run().status in case.expected for case in cases)


# --- single states that cannot fool the check -------------------------------------------------------

def _linear_model(w) -> torch.nn.Module:
    model = torch.nn.Linear(len(w), 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(np.asarray(w), dtype=torch.float64).reshape(1, -1))
    return model


def _svm_problem(seed=2, n=12, d=4):
    data = separable(n, d, margin=0.1, seed=seed)
    return data.X, data.y, hard_margin_svm(data.X.numpy(), data.y.numpy())


def test_the_exact_svm_holds_on_a_single_state():
    X, y, svm = _svm_problem()
    for scale in (40.0, 1e3):  # theta~ = theta / q_min: the verdict does not depend on the scale (past t0)
        verdict = tc.check_kkt(_linear_model(scale * svm.w), X, y)
        assert verdict.status == "holds", verdict.summary()
        assert verdict.statistic <= verdict.tolerance and verdict.details["svm"]["angle"] < 1e-12
        assert verdict.details["delta"] <= verdict.details["delta_limit"]


def test_a_separator_far_from_the_svm_does_not_hold():
    """13 degrees off the SVM direction, scaled to q_min >= 37 (where the old NNLS-vs-certificate test said
    holds): eps stays far above roundoff with delta <= 1/(e q_min)."""
    X, y, svm = _svm_problem(n=8)
    rng = np.random.default_rng(0)
    for _ in range(1000):  # a direction 13 degrees off the SVM's that still separates
        other = rng.standard_normal(len(svm.w))
        other -= (other @ svm.w) / (svm.w @ svm.w) * svm.w
        w = (np.cos(np.radians(13)) * svm.w / np.linalg.norm(svm.w)
             + np.sin(np.radians(13)) * other / np.linalg.norm(other))
        q = (y.numpy()[:, None] * X.numpy()) @ w
        if q.min() > 0:
            break
    assert q.min() > 0
    verdict = tc.check_kkt(_linear_model(40 / q.min() * w), X, y)
    assert verdict.status != "holds" and verdict.details["q_min"] >= 37, verdict.summary()
    assert verdict.details["eps"] > 1e6 * verdict.details["eps_roundoff"]
    assert verdict.details["svm"]["angle"] == pytest.approx(np.radians(13), rel=1e-9)


def test_a_scaled_random_relu_network_does_not_hold():
    """A random ReLU net on data it labels itself, scaled up so that q_min >= 37: not a KKT point."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(8, 1, bias=False)).double()
    X = torch.randn(20, 3, dtype=torch.float64)
    with torch.no_grad():
        out = model(X).reshape(-1)
        y = out.sign()
        factor = math.sqrt(40 / float(out.abs().min()))
        for p in model.parameters():
            p.mul_(factor)
    verdict = tc.check_kkt(model, X, y)
    assert verdict.details["q_min"] >= 37 and verdict.status != "holds", verdict.summary()
    assert verdict.details["eps"] > 1e6 * verdict.details["eps_roundoff"]


def test_given_multipliers_within_roundoff_hold():
    """The SVM's own dual variables on the SVM state, and the decided multipliers moved by a few ulps, hold;
    the same multipliers on a far separator, or 1% off on the SVM, do not."""
    X, y, svm = _svm_problem()
    model = _linear_model(40 * svm.w)  # q_min = 40: theta~ = w, multipliers = alpha
    verdict = tc.check_kkt(model, X, y, multipliers=svm.alpha)
    assert verdict.status == "holds", verdict.summary()
    decided = np.array(tc.check_kkt(model, X, y).details["multipliers"])
    nudged = decided * (1 + 4 * np.finfo(np.float64).eps * np.random.default_rng(1).choice([-1, 1], len(decided)))
    assert tc.check_kkt(model, X, y, multipliers=nudged).status == "holds"
    off = tc.check_kkt(model, X, y, multipliers=1.01 * svm.alpha)
    assert off.details["eps"] > 1e3 * off.details["eps_roundoff"]


def test_a_linear_flow_at_the_exact_svm_holds_with_its_trajectory():
    """Two support vectors symmetric about the SVM direction (rotated at random): the flow from that direction
    stays on it, eps and the angle sit at roundoff, which is the limit reached, not a missing trend."""
    Q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((3, 3)))
    X = torch.as_tensor(np.array([[1.0, 0.5, 0.0], [1.0, -0.5, 0.0]]) @ Q.T)
    y = torch.ones(2, dtype=torch.float64)
    svm = hard_margin_svm(X.numpy(), y.numpy())
    model = _linear_model(0.1 * svm.w)
    trajectory = tc.train(model, X, y, log_loss_target=-300.0)
    verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["eps_limit_reached"] and verdict.details["svm"]["angles"][-1] < 1e-12


def test_wrong_multipliers_control_is_drawn_from_networks_that_separate():
    """The wrong-multipliers control needs a run that separated; a ReLU CNN can fail to: an audit float32 draw
    (FlowInstance(spec=NetworkSpec(family='cnn', in_shape=(1, 3, 3), widths=(3,), pooling='avg'), seed=479962406,
    n=10, data_margin=0.1433, loss='logistic')) ran its 4000 steps with the five y = -1 samples misclassified, and
    the control came back vacuous, not violated."""
    from theorycheck.claims import kkt
    from theorycheck.claims.margin import random_instance

    assert "cnn-relu" not in kkt.SEPARATING_FAMILIES and set(kkt.SEPARATING_FAMILIES) < set(kkt.AUDIT_FAMILIES)
    rng = np.random.default_rng(0)
    draws = [random_instance(rng, families=kkt.SEPARATING_FAMILIES) for _ in range(60)]
    assert all(d.spec.activation != "relu" or d.spec.family == "linear" for d in draws)


# --- given multipliers and single states, on a problem whose hard-margin SVM is known by hand -----------

# rows g_n = y_n x_n: (1, .3) and (1, -.3) are the support vectors (duplicated: rows 0 and 4), (3, .5) and (2, 1)
# lie beyond the margin. The SVM is w* = (1, 0) with alpha = (.25, .5, 0, 0, .25): w* = sum alpha_n g_n, and
# every margin is >= 1 with equality on the support.
_G_HAND = np.array([[1.0, 0.3], [1.0, -0.3], [3.0, 0.5], [2.0, 1.0], [1.0, 0.3]])
_Y_HAND = np.array([1.0, -1.0, 1.0, -1.0, 1.0])
_ALPHA_HAND = np.array([0.25, 0.5, 0.0, 0.0, 0.25])


def _hand_problem(dtype, w, scale=40.0):
    X = torch.as_tensor(_G_HAND * _Y_HAND[:, None], dtype=dtype)
    y = torch.as_tensor(_Y_HAND, dtype=dtype)
    model = torch.nn.Linear(2, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(scale * np.asarray(w), dtype=dtype).reshape(1, -1))
    return model, X, y


def _rotated(degrees):
    a = math.radians(degrees)
    return np.array([math.cos(a), math.sin(a)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_svm_is_the_oracle(dtype):
    model, X, y = _hand_problem(dtype, [1.0, 0.0])
    svm = hard_margin_svm(X.double().numpy(), y.double().numpy())
    assert svm.separable and np.allclose(svm.w, [1.0, 0.0], atol=1e-12)
    single = tc.check_kkt(model, X, y)
    assert single.status == "holds", single.summary()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_multipliers_violate_dual_feasibility(dtype):
    """The exact SVM state (theta~ = w*: q_min = 40 for theta = 40 w*) with its dual variables holds; moving
    0.5 from one copy of a support vector to the other keeps stationarity and complementary slackness exact
    (eps = delta = 0) but makes a multiplier negative: violated."""
    model, X, y = _hand_problem(dtype, [1.0, 0.0])
    exact = tc.check_kkt(model, X, y, multipliers=_ALPHA_HAND)
    assert exact.status == "holds", exact.summary()
    shifted = _ALPHA_HAND + np.array([0.5, 0.0, 0.0, 0.0, -0.5])  # (0.75, 0.5, 0, 0, -0.25)
    verdict = tc.check_kkt(model, X, y, multipliers=shifted)
    assert verdict.details["eps"] <= verdict.details["eps_roundoff"]
    assert verdict.status == "violated", verdict.summary()
    assert "lambda_4" in verdict.reason and "< 0" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match="dual"):
        tc.assert_kkt(model, X, y, multipliers=shifted)
    # a single negative multiplier on a point beyond the margin: stationarity is off too, still violated
    outside = _ALPHA_HAND + np.array([0.0, 0.0, -0.1, 0.0, 0.0])
    assert tc.check_kkt(model, X, y, multipliers=outside).status == "violated"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("degrees", [13.0, 3.0])
def test_a_single_state_off_the_svm_never_holds(dtype, degrees):
    """A separator a few degrees off the SVM (still separating, past t0): without a trajectory it is not an
    exact KKT point, so inconclusive, with the best multipliers, with the flow's own certificate passed as
    multipliers (which meets its own eps by construction) and with the SVM's dual variables."""
    w = _rotated(degrees)
    model, X, y = _hand_problem(dtype, w)
    assert (torch.as_tensor(_G_HAND) @ torch.as_tensor(w)).min() > 0
    best = tc.check_kkt(model, X, y)
    assert best.status == "inconclusive", best.summary()
    q = _G_HAND @ (40 * w)
    flow = np.exp(-(q - q.min()))
    for lam in (flow * (1.0 / flow.sum()), flow, _ALPHA_HAND):
        verdict = tc.check_kkt(model, X, y, multipliers=lam)
        assert verdict.status != "holds", verdict.summary()
        assert verdict.details["eps"] > verdict.details["eps_roundoff"]
    certificate = best.details["eps_flow"]
    lam = flow * max(float(np.asarray(_G_HAND.T @ flow) @ (w / q.min() * 40)) /
                     float(np.sum((_G_HAND.T @ flow) ** 2)), 0.0)
    verdict = tc.check_kkt(model, X, y, multipliers=lam)
    assert verdict.details["eps"] == pytest.approx(certificate, rel=1e3 * torch.finfo(dtype).eps)  # w rounded to dtype
    assert verdict.status == "inconclusive", verdict.summary()


# --- the SVM oracle at small relative margins and extreme scales ------------------------------------------

def _small_margin_problem(gamma, n=20, d=5, seed=0):
    """Rows g_n = y_n x_n: pairs (gamma, v) and (gamma, -v) (v unit, orthogonal to e1) force w_1 >= 1/gamma, so
    w* = e1 / gamma (relative margin gamma: ||x_n|| ~ 1); the other pairs have first entries gamma (1 + s),
    s in [0.5, 3]. Rotated at random."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    v = rng.standard_normal((n // 2, d - 1))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    first = np.full(n // 2, gamma)
    first[2:] *= 1 + rng.uniform(0.5, 3.0, n // 2 - 2)
    G = np.vstack([np.column_stack([first, v]), np.column_stack([first, -v])]) @ Q.T
    y = np.where(rng.uniform(size=n) < 0.5, 1.0, -1.0)
    return y[:, None] * G, y, Q[:, 0] / gamma


@pytest.mark.parametrize("gamma", [1e-5, 3e-6, 1e-6])
def test_svm_resolves_small_relative_margins(gamma):
    """Relative margins 1e-5 .. 1e-6 are far above float64's resolution (gamma cond ||w|| ~ 1e-4 at most here):
    separable, w* to relative error ~ cond(G_S) u, every constraint met within the returned tolerance."""
    X, y, w_star = _small_margin_problem(gamma)
    assert _lp_feasible(X, y)
    svm = hard_margin_svm(X, y)
    assert svm.separable, svm.worst_violation
    _assert_feasible(svm, X, y)
    assert np.linalg.norm(svm.w - w_star) <= 1e-6 * np.linalg.norm(w_star)
    assert {0, 1, 10, 11} <= set(svm.active)


@pytest.mark.parametrize("scale", [1e160, 1e-300, 1e300, 1e-290])
def test_svm_is_scale_free_at_the_ends_of_float64(scale, capfd):
    """Row norms are formed after an exact power-of-two scaling: X x 1e160 (whose squares overflow) or x 1e-300
    (whose squares underflow) has the same separability, direction and support as X; nothing is printed."""
    data = separable(12, 4, margin=0.1, seed=3)
    X, y = data.X.numpy(), data.y.numpy()
    reference = hard_margin_svm(X, y)
    scaled = hard_margin_svm(X * scale, y)
    assert scaled.separable and scaled.support == reference.support
    assert angle(scaled.w, reference.w) < 1e-12
    assert scaled.margin / scale == pytest.approx(reference.margin, rel=1e-12)
    _assert_feasible(scaled, X * scale, y)
    contradiction = hard_margin_svm(np.vstack([X, X[:1]]) * scale, np.concatenate([y, -y[:1]]))
    assert not contradiction.separable
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_residuals_that_peak_before_they_fall_are_not_a_violation(dtype):
    """eps, delta -> 0 is a limit without a rate: a C^2 flow started at the exact SVM direction (eps at roundoff)
    leaves it (the flow's weights e^{-q_n} are not the SVM's duals) and comes back. Kept at log(1/L) = 1, 2 and
    ~150 only, the median trend is up although the run is a genuine flow: inconclusive (it was 'violated' past
    log(1/L) = 128), while the whole run holds and the same snapshots reversed are violated by the margin."""
    data = separable(8, 3, margin=0.1, seed=0)
    svm = hard_margin_svm(data.X.numpy(), data.y.numpy())
    model = _linear_model(3 * svm.w).to(dtype)
    X, y = data.X.to(dtype), data.y.to(dtype)
    trajectory = tc.train(model, X, y, log_loss_target=-150.0)
    assert tc.check_kkt(model, X, y, trajectory=trajectory).status == "holds"
    kept = (trajectory.snapshots[0], trajectory.snapshots[1], trajectory.snapshots[-1])
    peaked = dataclasses.replace(trajectory, snapshots=kept)
    verdict = tc.check_kkt(model, X, y, trajectory=peaked)
    eps = verdict.details["history"]["eps"]
    assert eps[0] < eps[-1] < eps[1] and -kept[-1].log_loss >= 128, eps
    assert verdict.status == "inconclusive" and "too short to resolve the limit" in verdict.reason, verdict.summary()
    assert verdict.details["snapshot_margin"]["drop"] < 0  # the smoothed margin rose at every snapshot
    backwards = dataclasses.replace(trajectory, snapshots=tuple(
        dataclasses.replace(s, theta=t.theta) for s, t in zip(kept, kept[::-1])))
    assert tc.check_kkt(model, X, y, trajectory=backwards).status == "violated"
