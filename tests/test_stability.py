"""Unit tests and negative controls for the SGD stability claims (Hardt, Recht & Singer 2016)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats

import theorycheck as tc
from theorycheck.core import comparisons as cmp
from theorycheck.claims import stability_cases as cases
from theorycheck.engines import stability_constants as sc
from theorycheck.engines.coupled import path_curvature
from theorycheck.claims import stability as st
from theorycheck.claims.stability_cases import SGDCase
from theorycheck.generate.data import separable
from theorycheck.core.devices import dtype_of

CONVEX = {  # (loss, data, change, radius)
    "logistic-fresh": ("logistic", "separable", "fresh", None),
    "logistic-digits": ("logistic", "digits", "mirror", None),
    "huber-flip": ("huber", "random", "flip", None),
    "squared-hinge-projected": ("squared_hinge", "separable", "fresh", 1.5),
}


@pytest.mark.parametrize("name", CONVEX)
def test_convex_instances_hold(name, tc_device, tc_dtype):
    loss, data, change, radius = CONVEX[name]
    case = SGDCase(claim="sgd_stability_convex", loss=loss, data=data, change=change, radius=radius, n=10,
                   steps=20, runs=32, step_scale=0.9, seed=3)
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == "holds", verdict.summary()
    assert 0 < verdict.statistic <= 1 + verdict.tolerance
    expectation = verdict.details["expectation"]
    assert expectation["evaluated"] and expectation["upper"] <= expectation["bound"]
    assert verdict.device.startswith(tc_device) and verdict.dtype == tc_dtype


def test_huber_replacement_makes_the_pathwise_bound_tight():
    """Labels flipped past the Huber threshold: the two gradients are opposite with norm L at the first
    hit, so ||w - w'|| = 2 L alpha exactly there; the check holds within its roundoff tolerance."""
    X = torch.ones(4, 1, dtype=torch.float64)
    y = torch.zeros(4, dtype=torch.float64)
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    run = tc.coupled_sgd(model, sc.huber_loss, X, y, index=0, replacement=(X[:1], torch.full((1,), 5.0).double()),
                         indices=[0, 1, 2], step_size=0.25)
    verdict = tc.check_sgd_stability_convex(run, tc.linear_loss_constants("huber", run))
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic == pytest.approx(0.5, rel=1e-12)  # w' moves by alpha * 1 only: the S run sits at 0
    run = tc.coupled_sgd(model, sc.huber_loss, X, torch.full((4,), -5.0).double(), index=0,
                         replacement=(X[:1], torch.full((1,), 5.0).double()), indices=[0, 1, 2], step_size=0.25)
    verdict = tc.check_sgd_stability_convex(run, tc.linear_loss_constants("huber", run))
    assert verdict.status == "holds" and verdict.statistic == pytest.approx(1.0, rel=1e-12)


# --- negative controls: each must not hold, for the stated reason ---------------------------------

def test_expansive_steps_break_the_pathwise_bound(tc_device, tc_dtype):
    verdict = cases.expansive_counterexample(device=tc_device, dtype=tc_dtype)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[st.sgd_stability_convex_kit.assumptions["step_convex"]] is False
    assert verdict.conclusion_held is False and verdict.statistic >= 2.0 - 1e-6
    assert "pathwise bound fails" in verdict.reason and "expansive" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] sgd_stability_convex: vacuous"):
        tc.assert_sgd_stability_convex(*_counterexample_run())


def _counterexample_run():
    X, y = torch.ones(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    model = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    run = tc.coupled_sgd(model, sc.huber_loss, X, y, index=0, replacement=(X[:1], torch.ones(1).double()),
                         indices=[0, 1, 2, 3, 1, 2], step_size=[0.5, 3, 3, 3, 3, 3])
    return run, tc.linear_loss_constants("huber", run)


CONTROLS = {  # case, expected status, text the verdict must contain
    "convex-large-steps": (SGDCase(claim="sgd_stability_convex", step_scale=3.0, control="large-steps"),
                           "vacuous", "2/beta"),
    "convex-squared-unbounded": (SGDCase(claim="sgd_stability_convex", loss="squared", data="random",
                                         control="squared-unbounded"), "vacuous", "L-Lipschitz with finite L"),
    "convex-understated-L": (SGDCase(claim="sgd_stability_convex", loss="huber", change="flip", step_scale=0.9,
                                     control="understated-L"), "vacuous", "observed per-sample gradient norms"),
    "strong-no-regularization": (SGDCase(claim="sgd_stability_strongly_convex", control="no-regularization"),
                                 "vacuous", "gamma-strongly convex"),
    "strong-large-steps": (SGDCase(claim="sgd_stability_strongly_convex", weight_decay=0.1, step_scale=3.0,
                                   control="large-steps"), "vacuous", "2/(beta + gamma)"),
    "strong-overstated-gamma": (SGDCase(claim="sgd_stability_strongly_convex", weight_decay=0.05,
                                        control="overstated-gamma"), "vacuous", "gamma-strongly convex"),
    "nonconvex-relu": (SGDCase(claim="sgd_stability_nonconvex", loss="relu", radius=1.0, control="relu"),
                       "vacuous", "beta-smooth with finite beta"),
    "nonconvex-unbounded-loss": (SGDCase(claim="sgd_stability_nonconvex", loss="tanh-logistic", radius=1.0,
                                         control="unbounded-loss"), "vacuous", "loss values in [0, 1]"),
    "nonconvex-increasing-steps": (SGDCase(claim="sgd_stability_nonconvex", loss="tanh", radius=1.0,
                                           control="increasing-steps"), "vacuous", "non-increasing"),
}


@pytest.mark.parametrize("name", CONTROLS)
def test_negative_controls_do_not_hold(name, tc_device, tc_dtype):
    case, expected, named = CONTROLS[name]
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == expected, verdict.summary()
    assert named in verdict.summary()


def test_understated_lipschitz_constant_also_fails_the_conclusion():
    """Declared L a quarter of the truth: the pathwise bound itself breaks (so a check with a wrong L can fail)."""
    verdict = CONTROLS["convex-understated-L"][0].verdict()
    assert verdict.conclusion_held is False and "pathwise bound fails" in verdict.reason


def test_a_never_sampled_example_is_inconclusive():
    model = torch.nn.Linear(3, 1, bias=False).double()
    data = separable(6, 3, seed=1)
    run = tc.coupled_sgd(model, sc.logistic_loss, data.X[:5], data.y[:5], index=0,
                         replacement=(data.X[5:], data.y[5:]), indices=[1, 2, 3, 4], step_size=0.5)
    verdict = tc.check_sgd_stability_convex(run, tc.linear_loss_constants("logistic", run))
    assert verdict.status == "inconclusive" and "never sampled" in verdict.reason


def test_divergence_is_inconclusive():
    model = torch.nn.Linear(1, 1, bias=False).double()
    X, y = torch.ones(3, 1, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    run = tc.coupled_sgd(model, sc.squared_loss, X, y, index=0, replacement=(X[:1], -y[:1]), steps=1200, runs=2,
                         step_size=5.0)
    verdict = tc.check_sgd_stability_convex(run, tc.LossConstants(lipschitz=1.0, smoothness=1.0, convex=True))
    assert verdict.status == "inconclusive" and "non-finite" in verdict.reason


# --- the two bounds, the interval and the constants ---------------------------------------------

def test_removal_uses_the_one_sided_increment_and_skips_the_expectation():
    case = SGDCase(claim="sgd_stability_convex", change="remove", runs=32)
    verdict = case.verdict()
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["pathwise"]["increment"] == "1 alpha_t L"
    assert verdict.details["expectation"]["evaluated"] is False


def test_expectation_bound_matches_the_theorems():
    verdict = SGDCase(claim="sgd_stability_convex", n=10, steps=20, step_scale=0.5).verdict()
    c = verdict.details["constants"]
    assert verdict.details["expectation"]["bound"] == pytest.approx(2 * c["lipschitz"] ** 2 / 10 * 20 * 0.5 * 2 / c["smoothness"])
    verdict = SGDCase(claim="sgd_stability_strongly_convex", n=10, weight_decay=0.1).verdict()
    c = verdict.details["constants"]
    assert verdict.details["expectation"]["bound"] == pytest.approx(2 * c["lipschitz"] ** 2 / (0.1 * 10))
    # HRS Thm 3.12 at beta c = 1: (1 + 1)/(n - 1) (2 c L^2)^{1/2} T^{1/2}
    assert st.nonconvex_bound(L=1.0, beta=2.0, c=0.5, n=11, T=16) == pytest.approx(2 / 10 * 1.0 * 4.0)


def test_mean_interval_is_a_bonferroni_student_t_interval():
    rng = np.random.default_rng(0)
    values = rng.exponential(size=(50, 4))
    mean, half = st.mean_interval(values, 0.95)
    expected = stats.t.ppf(1 - 0.05 / 8, 49) * values.std(axis=0, ddof=1) / math.sqrt(50)
    np.testing.assert_allclose(mean, values.mean(axis=0))
    np.testing.assert_allclose(half, expected)


def test_too_few_runs_skip_the_expectation():
    verdict = SGDCase(claim="sgd_stability_convex", runs=8).verdict()
    assert verdict.status == "holds" and "runs <" in verdict.details["expectation"]["why"]


def _hessian_norm(f, w):
    H = torch.autograd.functional.hessian(f, w)
    return float(torch.linalg.matrix_norm(H.reshape(w.numel(), w.numel()), ord=2))


@pytest.mark.parametrize("kind, radius", [("logistic", None), ("squared_hinge", 1.3), ("huber", None),
                                          ("squared", 0.7)])
def test_linear_closed_forms_bound_gradients_and_hessians(kind, radius):
    """The closed-form L and beta dominate ||grad f|| and ||hess f|| at random points of the domain."""
    data = separable(7, 3, seed=2)
    model = torch.nn.Linear(3, 1, bias=False).double()
    run = tc.coupled_sgd(model, sc.LINEAR_LOSSES[kind][0], data.X[:6], data.y[:6], replacement=(data.X[6:], data.y[6:]),
                         steps=3, radius=radius, weight_decay=0.05 if radius else 0.0, step_size=0.1)
    constants = tc.linear_loss_constants(kind, run)
    loss = sc.LINEAR_LOSSES[kind][0]
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        w = torch.randn(3, generator=rng, dtype=torch.float64)
        w = w / w.norm() * (radius or 3.0) * float(torch.rand(1, generator=rng))
        for x, y in zip(run.inputs, run.targets):
            f = lambda v: loss((x @ v).reshape(1), y.reshape(1)).sum() + 0.5 * run.weight_decay * (v @ v)  # noqa: E731
            g = torch.autograd.functional.jacobian(f, w)
            assert float(g.norm()) <= constants.lipschitz * (1 + 1e-12)
            assert _hessian_norm(f, w) <= constants.smoothness * (1 + 1e-12)
    assert constants.strong_convexity == run.weight_decay


def test_tanh_network_closed_forms_bound_gradients_and_hessians():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(),
                                torch.nn.Linear(4, 1, bias=False)).double()
    X = torch.randn(6, 3, dtype=torch.float64)
    X = X / X.norm(dim=1).max()
    y = torch.tensor([1.0, -1, 1, -1, 1, -1], dtype=torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.1)
    run = tc.coupled_sgd(model, sc.sigmoid_loss, X, y, replacement=(X[:1], -y[:1]), steps=3, radius=1.5, step_size=0.1)
    constants = tc.tanh_network_constants(model, run)
    rng = torch.Generator().manual_seed(1)
    for _ in range(30):
        theta = torch.randn(16, generator=rng, dtype=torch.float64)
        theta = theta / theta.norm() * 1.5 * float(torch.rand(1, generator=rng)) ** 0.25
        for x, t in zip(X, y):
            def f(v):
                W, a = v[:12].reshape(4, 3), v[12:]
                return torch.sigmoid(-t * (a @ torch.tanh(W @ x)))
            g = torch.autograd.functional.jacobian(f, theta)
            assert float(g.norm()) <= constants.lipschitz
            assert _hessian_norm(f, theta) <= constants.smoothness
    assert constants.loss_range == (0.0, 1.0)


@pytest.mark.parametrize("call, message", [
    (lambda run, model: tc.linear_loss_constants("hinge", run), "kind in"),
    (lambda run, model: tc.tanh_network_constants(torch.nn.Linear(3, 1), run), "Sequential(Linear(d, m, bias=False)"),
    (lambda run, model: tc.check_sgd_stability_convex(run, {"L": 1}), "expected LossConstants"),
    (lambda run, model: tc.check_sgd_stability_convex(model, tc.LossConstants(1.0, 1.0)), "a CoupledRun"),
    (lambda run, model: tc.check_sgd_stability_convex(run, tc.LossConstants(1.0, 1.0), confidence=1.5), "confidence"),
    (lambda run, model: tc.LossConstants(lipschitz=-1.0, smoothness=1.0), "non-negative L"),
])
def test_bad_input_names_expected_received_fix(call, message):
    data = separable(5, 3, seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Tanh(), torch.nn.Linear(2, 1, bias=False))
    run = tc.coupled_sgd(model, sc.sigmoid_loss, data.X[:4], data.y[:4], steps=2, step_size=0.1)
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        call(run, model)
    assert message in str(info.value)


def test_linear_constants_refuse_other_models_and_labels():
    data = separable(5, 3, seed=0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
    run = tc.coupled_sgd(net, sc.logistic_loss, data.X, data.y, steps=2)
    with pytest.raises(tc.InvalidArgument, match="bias-free linear model"):
        tc.linear_loss_constants("logistic", run)
    run = tc.coupled_sgd(torch.nn.Linear(3, 1, bias=False), sc.logistic_loss, data.X, 2 * data.y, steps=2)
    with pytest.raises(tc.InvalidArgument, match="labels"):
        tc.linear_loss_constants("logistic", run)


def test_verdict_round_trips_through_json():
    import json

    verdict = SGDCase(claim="sgd_stability_nonconvex", loss="tanh", radius=1.0).verdict()
    data = json.loads(json.dumps(verdict.to_dict()))
    assert tc.Verdict.from_dict(data).to_dict() == data


@pytest.mark.parametrize("claim", sorted(cases.CONTROLS))
def test_audit_cases_reproduce(claim):
    cases = list(tc.CLAIMS[claim].audit_cases(n=3, seed=1, device="cpu", dtype="float64"))
    assert [c.kind for c in cases].count("control") == 3
    for case in cases[:1] + cases[-1:]:
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
        namespace: dict = {}
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(case.reproduce, namespace)  # noqa: S102  (the reproduce line is ours)
        assert out.getvalue().strip() == verdict.summary()


def test_float32_and_float64_agree_on_a_convex_instance():
    case = SGDCase(claim="sgd_stability_convex", loss="logistic", n=8, steps=16, runs=32, seed=4)
    a, b = case.verdict(dtype="float64"), case.verdict(dtype="float32")
    assert a.status == b.status == "holds"
    assert b.statistic == pytest.approx(a.statistic, rel=1e-4, abs=1e-6)
    assert dtype_of(b.dtype) == torch.float32


# --- a conclusion of several parts: the headline is the deciding part -------------------------------

STABILITY_CLAIMS = ("sgd_stability_convex", "sgd_stability_strongly_convex", "sgd_stability_nonconvex",
                    "erm_stability", "cvloo_stability")


def _headline_contradictions(n: int, device: str = "cpu", dtype: str = "float64") -> list[str]:
    """Records whose conclusion_held disagrees with statistic <= bound + tolerance, or whose parts do."""
    wrong = []
    for claim in STABILITY_CLAIMS:
        for case in tc.CLAIMS[claim].audit_cases(n=n, seed=0, device=device, dtype=dtype):
            v = case.run()
            parts = v.details["comparisons"]
            if math.isfinite(v.statistic) and (v.statistic <= v.bound + v.tolerance) != v.conclusion_held:
                wrong.append(f"{claim} {case.name}: {v.summary()}")
            if v.conclusion_held != all(p["held"] for p in parts) or any(
                    p["held"] != (p["measured"] <= p["bound"] + p["tolerance"]) for p in parts):
                wrong.append(f"{claim} {case.name}: parts {parts}")
            if not v.conclusion_held and v.statistic not in [p["measured"] for p in parts if not p["held"]]:
                wrong.append(f"{claim} {case.name}: headline is not a failing part")
    return wrong


def test_headline_is_the_deciding_part_on_audit_cases(tc_device, tc_dtype):
    assert _headline_contradictions(3, tc_device, tc_dtype) == []


@pytest.mark.slow
def test_headline_is_the_deciding_part_on_the_default_audit():
    assert _headline_contradictions(20) == []


def test_pathwise_failure_at_a_roundoff_level_bound_is_the_headline():
    """Overstated gamma contracts B_t to roundoff while w_t != w'_t: that part fails and is reported."""
    case = SGDCase(claim="sgd_stability_strongly_convex", loss="logistic", weight_decay=0.1, n=10, steps=20,
                   control="overstated-gamma", seed=2)
    verdict = case.verdict()
    assert verdict.conclusion_held is False and verdict.statistic > verdict.bound + verdict.tolerance
    failing = [p["name"] for p in verdict.details["comparisons"] if not p["held"]]
    assert failing and verdict.tolerance_basis.split(":")[0] in failing


def test_deciding_part_prefers_failing_then_tightest():
    parts = [cmp.comparison("a", 0.5, 1.0, 0.0, "x"), cmp.comparison("b", 0.9, 1.0, 0.0, "x")]
    assert cmp.deciding(parts).name == "b"
    parts.append(cmp.comparison("c", 2.0, 1.0, 0.5, "x"))
    parts.append(cmp.comparison("d", 1e-9, 0.0, 0.0, "x"))  # any excess over a zero allowance is infinitely far
    assert cmp.deciding(parts).name == "d" and cmp.headline(parts)["conclusion_held"] is False
    assert cmp.comparison("nan", math.nan, 1.0, 0.0, "x").held is False


@pytest.mark.parametrize("claim", sorted(cases.CONTROLS))
def test_series_follow_the_report_schema(claim):
    from theorycheck.report.plots import _lines

    verdict = SGDCase(claim=claim, loss="tanh" if claim.endswith("nonconvex") else "logistic",
                      radius=1.0 if claim.endswith("nonconvex") else None,
                      weight_decay=0.1 if "strongly" in claim else 0.0, n=8, steps=16).verdict()
    series = verdict.details["series"]
    assert series and all(len(_lines(entry)) == 2 for entry in series.values())


# --- an understated beta that every secant stays under: caught by the path's curvature ---------------

UNDERSTATED_BETA = {  # claim, loss, data, radius
    "convex-huber-digits": ("sgd_stability_convex", "huber", "digits", None),
    "nonconvex-tanh": ("sgd_stability_nonconvex", "tanh", "separable", 1.5),
}


@pytest.mark.parametrize("name", UNDERSTATED_BETA)
def test_understated_beta_below_the_curvature_is_vacuous(name, tc_device, tc_dtype):
    claim, loss, data, radius = UNDERSTATED_BETA[name]
    case = SGDCase(claim=claim, loss=loss, data=data, radius=radius, n=20, steps=40)
    right = case.verdict(device=tc_device, dtype=tc_dtype)  # the closed-form beta: holds, at the edge for Huber
    assert right.status == "holds", right.summary()
    observed, beta = right.details["observed"], right.details["constants"]["smoothness"]
    secant, curvature = observed["max_secant_smoothness"], observed["max_curvature"]
    assert secant < curvature <= beta * (1 + 1e-5)
    if loss == "huber":  # l'' = 1 on the largest input: the estimate reaches beta
        assert curvature == pytest.approx(beta, rel=1e-5)
    torch_dtype = dtype_of(tc_dtype)
    X, y, new = case.data_set(torch_dtype)
    model = case.model(torch_dtype)
    run = tc.coupled_sgd(model, cases.NETWORK_LOSSES.get(loss) or sc.LINEAR_LOSSES[loss][0], X, y, index=0,
                         replacement=new, steps=case.steps, runs=case.runs, radius=radius, seed=case.seed,
                         step_size=case.step_size(torch.cat([X, new[0]]), model), device=tc_device, dtype=tc_dtype)
    declared = dataclasses.replace(case.constants(model, run), smoothness=(secant + curvature) / 2)
    wrong = st.__dict__[f"check_{claim}"](run, declared)
    assert wrong.status == "vacuous", wrong.summary()
    assert wrong.assumptions[st.sgd_stability_convex_kit.assumptions["secant"]] and not wrong.assumptions[st.sgd_stability_convex_kit.assumptions["curvature"]]
    assert "beta understated" in wrong.reason


def test_curvature_estimate_is_a_lower_bound_of_the_hessian_norm():
    """Power iteration on a random quadratic per example: ||H v_k|| <= ||H||_2, close after 20 steps."""
    torch.manual_seed(0)
    A = torch.randn(3, 5, 5, dtype=torch.float64)
    H = A @ A.transpose(1, 2)
    objective = lambda w, x, t: 0.5 * torch.einsum("i,bij,j->b", w, H[t.long()], w)  # noqa: E731
    estimate = path_curvature(objective, torch.randn(2, 5, dtype=torch.float64),
                                         torch.zeros(3, 1, dtype=torch.float64), torch.arange(3.0).double())
    exact = torch.linalg.matrix_norm(H, ord=2)
    assert bool((estimate <= exact * (1 + 1e-12)).all()) and bool((estimate >= 0.9 * exact).all())


# --- constants declared from the training set must hold at the probe points too ----------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("blowup", [20.0, 100.0])
def test_lipschitz_declared_from_training_points_fails_at_a_far_probe(dtype, blowup):
    """Logistic loss on a linear model: L = max ||x_train|| and beta = max ||x_train||^2 / 4, declared from the
    training set alone. A probe 20-100x farther out has gradient norm sigma(-y <w, x>) ||x|| up to 100 L: the
    sup over probes is outside the theorem (vacuous), never holds. The same run with probes inside holds."""
    torch.manual_seed(0)
    data = separable(12, 3, seed=4, dtype=dtype_of(dtype))
    X, y = data.X, data.y
    x_max = float(X.norm(dim=1).max())
    constants = tc.LossConstants(lipschitz=x_max, smoothness=x_max ** 2 / 4, convex=True)
    model = torch.nn.Linear(3, 1, bias=False).to(X.dtype)
    with torch.no_grad():
        model.weight.zero_()  # sigma(0) = 1/2 at every probe: the gradient there is ||x|| / 2
    far = torch.cat([X[:3], blowup * X[3:4] / X[3].norm() * x_max])
    far_y = torch.cat([y[:3], y[3:4]])
    common = dict(index=2, replacement=(X[5:6], -y[5:6]), steps=12, runs=32, step_size=1.0 / constants.smoothness,
                  seed=1, dtype=dtype)
    run = tc.coupled_sgd(model, sc.logistic_loss, X, y, X_test=far, y_test=far_y, **common)
    assert getattr(run, "probe_grad_norm", math.inf) >= blowup * x_max / 2 * (1 - 1e-3)
    verdict = tc.check_sgd_stability_convex(run, constants)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[st.sgd_stability_convex_kit.assumptions["gradients"]] is False
    assert "at a probe point" in verdict.reason
    inside = tc.coupled_sgd(model, sc.logistic_loss, X, y, X_test=X[:4], y_test=y[:4], **common)
    assert inside.probe_grad_norm <= x_max * (1 + 1e-5)
    assert tc.check_sgd_stability_convex(inside, constants).status == "holds"
