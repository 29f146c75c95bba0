"""Unit tests and negative controls for min_norm (GD on least squares = the spectral filter; limit
X^+ y + (I - X^+ X) w0)."""

import contextlib
import io

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.min_norm import Spectrum, least_squares_run, steps_needed
from theorycheck.core.devices import dtype_of


def _problem(n=5, d=12, seed=0, dtype="float64", device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    X, y, w0 = (torch.randn(*shape, generator=gen, dtype=torch.float64) for shape in ((n, d), (n,), (d,)))
    return X.to(device, dtype_of(dtype)), y.to(device, dtype_of(dtype)), w0.to(device, dtype_of(dtype))


def test_filter_formula_against_plain_numpy_gd():
    """The closed form itself, independent of the checker's tolerance: numpy GD vs the filter to 1e-13."""
    rng = np.random.default_rng(1)
    X, y, w0 = rng.normal(size=(4, 9)), rng.normal(size=4), rng.normal(size=9)
    lr = 1.3 / np.linalg.norm(X, 2) ** 2
    w, spec = w0.copy(), Spectrum.of(X, y, w0)
    for t in range(1, 60):
        w = w - lr * X.T @ (X @ w - y)
        np.testing.assert_allclose(w, spec.iterates(lr, np.array([t], float), w0)[0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(spec.limit, np.linalg.pinv(X) @ y + (np.eye(9) - np.linalg.pinv(X) @ X) @ w0,
                               atol=1e-12)


@pytest.mark.parametrize("start", ["zero", "random"])
def test_gd_follows_the_filter(start, tc_device, tc_dtype):
    X, y, w0 = _problem(dtype=tc_dtype, device=tc_device)
    w0 = w0 if start == "random" else None
    lr = 1.5 / float(torch.linalg.matrix_norm(X.double(), ord=2)) ** 2
    verdict = tc.check_min_norm(X, y, least_squares_run(X, y, lr=lr, steps=80, w0=w0), lr=lr, w0=w0)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["max_ratio"] < 0.5 and verdict.details["null_space_drift"] <= verdict.tolerance
    assert verdict.details["rank"] == 5


def test_converged_run_reaches_the_minimum_norm_interpolant():
    X, y, _ = _problem(n=4, d=16, seed=3)
    lr = 1.0 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    pinv = torch.linalg.pinv(X) @ y
    tol = 1e-8 * float(pinv.norm())
    steps = steps_needed(Spectrum.of(X.numpy(), y.numpy(), np.zeros(16)), lr, tol)
    run = least_squares_run(X, y, lr=lr, steps=steps)
    verdict = tc.check_min_norm(X, y, run, lr=lr, limit_tol=tol)
    assert verdict.status == "holds", verdict.summary()
    assert float((run[-1] - pinv).norm()) <= tol and float((X @ run[-1] - y).norm()) < 1e-6
    assert verdict.details["distance_to_limit"] <= verdict.details["predicted_distance_to_limit"] + verdict.tolerance


def test_too_short_a_run_is_inconclusive_with_the_steps_needed():
    X, y, _ = _problem(n=4, d=16, seed=3)
    lr = 1.0 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    verdict = tc.check_min_norm(X, y, least_squares_run(X, y, lr=lr, steps=3), lr=lr, limit_tol=1e-9)
    assert verdict.status == "inconclusive" and "steps needed" in verdict.reason


# --- negative controls ---------------------------------------------------------------------------

def test_adam_is_not_minimum_norm(tc_device, tc_dtype):
    X, y, _ = _problem(dtype=tc_dtype, device=tc_device)
    lr = 0.5 / float(torch.linalg.matrix_norm(X.double(), ord=2)) ** 2
    run = least_squares_run(X, y, lr=0.02, steps=400, optimizer="adam")
    verdict = tc.check_min_norm(X, y, run, lr=lr)
    assert verdict.status == "vacuous" and "not plain full-batch GD" in verdict.reason, verdict.summary()
    assert verdict.details["null_space_drift"] > 1e3 * verdict.tolerance  # Adam leaves row(X)
    assert verdict.details["final_norm"] > verdict.details["limit_norm"]  # another interpolant, larger norm
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] min_norm: vacuous"):
        tc.assert_min_norm(X, y, run, lr=lr)


def test_heavy_ball_that_reaches_the_pseudo_inverse_is_vacuous_not_violated(tc_dtype):
    """Momentum from 0 stays in row(X) and converges to X^+ y too, but its iterates are not the GD filter's:
    the theorem is about plain GD, measured step by step, so it says nothing here."""
    X, y, _ = _problem(dtype=tc_dtype)
    lr = 0.5 / float(torch.linalg.matrix_norm(X.double(), ord=2)) ** 2
    w = torch.zeros(X.shape[1], dtype=X.dtype, requires_grad=True)
    opt, run = torch.optim.SGD([w], lr=lr, momentum=0.5), [w.detach().clone()]
    for _ in range(400):
        opt.zero_grad()
        (0.5 * (X @ w - y).square().sum()).backward()
        opt.step()
        run.append(w.detach().clone())
    run = torch.stack(run)
    limit = torch.linalg.pinv(X.double()) @ y.double()
    assert float((run[-1].double() - limit).norm()) < 1e-3 * float(limit.norm())
    verdict = tc.check_min_norm(X, y, run, lr=lr)
    assert verdict.status == "vacuous" and verdict.details["plain_steps"]["steps_not_plain"] > 0, verdict.summary()


def test_weight_decay_goes_to_ridge_not_to_the_pseudo_inverse():
    X, y, _ = _problem()
    lr, lam = 1.0 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2, 0.1
    run = least_squares_run(X, y, lr=lr, steps=3000, weight_decay=lam)
    ridge = torch.linalg.solve(X.T @ X + lam * torch.eye(12, dtype=X.dtype), X.T @ y)
    assert float((run[-1] - ridge).norm()) < 1e-10  # the decayed run's limit is ridge
    verdict = tc.check_min_norm(X, y, run, lr=lr, limit_tol=1e-6)
    assert verdict.status == "vacuous" and "not plain full-batch GD" in verdict.reason, verdict.summary()
    assert verdict.details["distance_to_limit"] == pytest.approx(float((ridge - torch.linalg.pinv(X) @ y).norm()),
                                                                 rel=1e-6)


def test_null_space_start_declared_as_zero_is_violated():
    X, y, w0 = _problem()
    lr = 1.0 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    verdict = tc.check_min_norm(X, y, least_squares_run(X, y, lr=lr, steps=50, w0=w0), lr=lr)  # w0 not declared
    assert verdict.status == "violated", verdict.summary()
    null_part = w0 - torch.linalg.pinv(X) @ (X @ w0)
    assert verdict.statistic >= 0.99 * float(null_part.norm())


def test_divergent_step_is_vacuous_and_overflow_inconclusive():
    X, y, _ = _problem()
    lr = 2.05 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    verdict = tc.check_min_norm(X, y, least_squares_run(X, y, lr=lr, steps=40), lr=lr)
    assert verdict.status == "vacuous" and "diverges" in verdict.reason
    lr = 1.0 / float(torch.linalg.matrix_norm(X, ord=2)) ** 2
    broken = least_squares_run(X, y, lr=lr, steps=5)
    broken[3, 0] = float("nan")
    assert tc.check_min_norm(X, y, broken, lr=lr).status == "inconclusive"


@pytest.mark.parametrize("call, message", [
    (lambda X, y, W: tc.check_min_norm(X.numpy(), y, W, lr=0.1), "X as a floating torch tensor"),
    (lambda X, y, W: tc.check_min_norm(X, y[:3], W, lr=0.1), "one sample count across ['X', 'y'] for 'min_norm', but got X: 5, y: 3"),
    (lambda X, y, W: tc.check_min_norm(X, y, W[:, :4], lr=0.1), "rows w_0 .. w_T"),
    (lambda X, y, W: tc.check_min_norm(X, y, W, lr=0.0), "lr > 0"),
    (lambda X, y, W: least_squares_run(X, y, lr=0.1, steps=2, optimizer="rmsprop"), "optimizer 'gd'"),
])
def test_bad_input_raises(call, message):
    X, y, _ = _problem()
    with pytest.raises(tc.InvalidArgument, match="expected") as info:
        call(X, y, least_squares_run(X, y, lr=0.01, steps=2))
    assert message in str(info.value)


def test_audit_cases_reproduce():
    """Every case meets its expectation; the reproduce lines of an instance and a control rebuild them."""
    cases = list(tc.CLAIMS["min_norm"].audit_cases(n=5, seed=1, device="cpu", dtype="float64"))
    verdicts = [case.run() for case in cases]
    assert all(v.status in case.expected for v, case in zip(verdicts, cases)), [v.summary() for v in verdicts]
    for index in (0, len(cases) - 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(cases[index].reproduce, {})  # noqa: S102  (the reproduce line is ours)
        assert printed.getvalue().strip() == verdicts[index].summary()
    assert "MinNormCase(" in cases[0].reproduce


# --- early_stopping (Ali, Kolter & Tibshirani 2019) ------------------------------------------------

def test_akt_constant():
    from theorycheck.claims.min_norm import akt_constant

    grid = np.linspace(0.01, 20, 200001)
    assert akt_constant() == pytest.approx(float(np.max((-np.expm1(-grid) * (1 + grid) / grid) ** 2)), rel=1e-9)
    assert 1.6859 < akt_constant() < 1.6862  # the paper rounds up to 1.6862


def test_early_stopping_risks_against_the_estimators_themselves():
    """The spectral risks equal ||(A X - I) beta0||^2 + sigma^2 ||A||_F^2 computed from the linear
    estimators: ridge by a solve, gradient flow by scipy's expm, each y -> A y."""
    from scipy.linalg import expm

    rng = np.random.default_rng(4)
    n, d, sigma, t = 8, 12, 0.7, 3.0
    X, beta0 = rng.normal(size=(n, d)), rng.normal(size=d)
    S = X.T @ X / n
    ridge = np.linalg.solve(S + np.eye(d) / t, X.T / n)
    flow = (np.eye(d) - expm(-t * S)) @ np.linalg.pinv(S) @ X.T / n
    risk = lambda A: float(np.sum(((A @ X - np.eye(d)) @ beta0) ** 2) + sigma ** 2 * np.sum(A ** 2))  # noqa: E731
    verdict = tc.check_early_stopping(torch.as_tensor(X), torch.as_tensor(beta0), sigma=sigma, times=[t])
    assert verdict.status == "holds", verdict.summary()
    series = verdict.details["series"]["risk(GF, t) / risk(ridge, 1/t)"]  # the given t joins the grid
    assert series["y"][series["x"].index(t)] == pytest.approx(risk(flow) / risk(ridge), rel=1e-9)
    assert verdict.statistic >= max(series["y"])  # the supremum over t > 0, not the given t alone


def _one_direction_variance_ratio(c: float, x: np.ndarray) -> np.ndarray:
    """beta0 = 0, X^T X / n = 1: risk(GF, t) / risk(ridge, c/t) = ((1 - e^-t)(t + c)/t)^2."""
    return (-np.expm1(-x) * (x + c) / x) ** 2


def test_early_stopping_locates_a_violation_in_a_window_narrower_than_the_grid():
    """lambda = 1.0003/t: the ratio exceeds 1.68591 only for t in a window ~0.07 wide in log t, between two
    points of the checker's own grid (steps of 0.099 in log t): the located supremum must catch it."""
    from theorycheck.claims.min_norm import akt_constant

    c, X, beta0 = 1.0003, torch.ones(4, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    fine = np.geomspace(1.0, 3.5, 400001)
    above = fine[_one_direction_variance_ratio(c, fine) > akt_constant()]
    assert 0 < np.log(above.max() / above.min()) < 0.09  # the window is narrow
    verdict = tc.check_early_stopping(X, beta0, sigma=1.0, calibration=c)
    series = verdict.details["series"]["risk(GF, t) / risk(ridge, 1/t)"]
    assert max(series["y"]) < akt_constant()  # the grid alone misses it
    assert verdict.status == "violated", verdict.summary()
    assert above.min() <= verdict.details["worst_t"] <= above.max()
    assert verdict.statistic == pytest.approx(_one_direction_variance_ratio(c, fine).max(), rel=1e-9)
    coarse = tc.check_early_stopping(X, beta0, sigma=1.0, calibration=c, times=[0.5, 5.0])  # given times add points
    assert coarse.status == "violated" and coarse.details["worst_t"] == pytest.approx(verdict.details["worst_t"])


def test_early_stopping_located_supremum_holds_at_the_constant_itself():
    """lambda = 1/t with one direction and no signal: the supremum is the constant 1.68591 itself (at t = 1.79),
    held within the stated rounding tolerance, on random instances too."""
    from theorycheck.claims.min_norm import akt_constant

    verdict = tc.check_early_stopping(torch.ones(4, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64),
                                      sigma=1.0)
    assert verdict.status == "holds" and verdict.statistic == pytest.approx(akt_constant(), rel=1e-12)
    assert verdict.details["worst_t"] == pytest.approx(1.7933, abs=1e-3)
    rng = np.random.default_rng(7)
    for _ in range(20):
        n, d = rng.integers(1, 10, size=2)
        X = rng.normal(size=(n, d)) * np.geomspace(0.1, 10, d)
        beta0 = rng.normal(size=d) * rng.choice([0.0, 1e-3, 1.0])
        random = tc.check_early_stopping(torch.as_tensor(X), torch.as_tensor(beta0), sigma=float(rng.uniform(0.1, 3)))
        assert random.status == "holds", random.summary()


def test_early_stopping_controls():
    from theorycheck.claims.min_norm import EarlyStoppingCase

    rows = {control: EarlyStoppingCase(sigma=3.0, seed=1, control=control).verdict() for control in
            ("mis-calibrated", "discrete-step")}
    assert rows["mis-calibrated"].status == "violated" and "mis-calibrated" in rows["mis-calibrated"].reason
    assert rows["discrete-step"].status == "vacuous" and "not the flow" in rows["discrete-step"].reason
    with pytest.raises(tc.InvalidArgument, match="sigma >= 0"):
        tc.check_early_stopping(torch.ones(3, 2), torch.ones(2), sigma=-1.0)
    zero = tc.check_early_stopping(torch.ones(3, 2), torch.zeros(2), sigma=0.0)
    assert zero.status == "holds" and "exactly 0" in zero.reason  # y = 0: 0 <= bound x 0


# --- early_stopping on your own estimators ---------------------------------------------------------

def _your_estimators(X):
    """A user's gradient flow (eigendecomposition, expm1) and ridge (a solve) on the design X, in X's dtype."""
    n, d = X.shape
    S = X.T @ X / n

    def flow(y, t):
        s, V = torch.linalg.eigh(S)
        s = s.clamp_min(0)
        filt = torch.where(s > 0, -torch.expm1(-t * s) / torch.where(s > 0, s, 1), torch.zeros_like(s))
        return V @ (filt * (V.T @ (X.T @ y / n)))

    def ridge(y, lam):
        return torch.linalg.solve(S + lam * torch.eye(d, dtype=X.dtype), X.T @ y / n)

    def big_step_gd(y, t, lr=0.5):  # GD with a step far from the flow
        b = torch.zeros(d, dtype=X.dtype)
        for _ in range(max(1, round(t / lr))):
            b = b - lr * X.T @ (X @ b - y) / n
        return b

    def clipped(y, lam):  # a nonlinear ridge: the coefficients clipped
        return ridge(y, lam).clamp(-0.1, 0.1)

    return flow, ridge, big_step_gd, clipped


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_early_stopping_on_your_own_estimators(dtype):
    """A design with a repeated column (rank-deficient S, zero eigenvalues): your exact estimators hold on their
    own risks; GD with a big step and a clipped (nonlinear) ridge are not the theorem's estimators (vacuous)."""
    g = torch.Generator().manual_seed(3)
    base = torch.randn(9, 4, generator=g, dtype=torch.float64)
    X = torch.cat([base, base[:, :1]], dim=1).to(dtype)
    beta0 = torch.randn(5, generator=g, dtype=torch.float64).to(dtype)
    flow, ridge, gd, clipped = _your_estimators(X)
    verdict = tc.check_early_stopping(X, beta0, sigma=0.5, estimators=(flow, ridge), times=[0.3, 30.0])
    assert verdict.status == "holds", verdict.summary()
    rows = verdict.details["estimators"]["times"]
    assert len(rows) >= 5 and all(r["ratio"] <= r["allowed"] for r in rows)
    assert verdict.details["estimators"]["deviation"] <= verdict.details["estimators"]["estimator_error"]
    for wrong in ((gd, ridge), (flow, clipped)):
        other = tc.check_early_stopping(X, beta0, sigma=0.5, estimators=wrong)
        assert other.status == "vacuous" and "not gradient flow and ridge" in other.reason, other.summary()


def test_your_exact_estimators_meet_the_constant_and_a_miscalibration_is_violated():
    """One direction, no signal: your estimators' ratio reaches the constant itself at t = 1.79 (holds within
    the stated tolerance); judged at lambda = 1.0003 / t, the same estimators are violated."""
    from theorycheck.claims.min_norm import akt_constant

    X, beta0 = torch.ones(4, 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    flow, ridge, _, _ = _your_estimators(X)
    edge = tc.check_early_stopping(X, beta0, sigma=1.0, estimators=(flow, ridge))
    assert edge.status == "holds" and edge.statistic == pytest.approx(akt_constant(), rel=1e-12), edge.summary()
    off = tc.check_early_stopping(X, beta0, sigma=1.0, estimators=(flow, ridge), calibration=1.0003)
    assert off.status == "violated", off.summary()
    with pytest.raises(tc.InvalidArgument, match="estimators=\\(flow, ridge\\)"):
        tc.check_early_stopping(X, beta0, sigma=1.0, estimators=flow)
    with pytest.raises(tc.InvalidArgument, match="shape \\(1,\\)"):
        tc.check_early_stopping(X, beta0, sigma=1.0, estimators=(lambda y, t: y, ridge))


def test_an_estimator_that_raises_is_named():
    X, beta0 = torch.ones(4, 2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)  # S singular
    flow, ridge, _, _ = _your_estimators(X)

    def failing(y, lam):
        raise RuntimeError("solver diverged")

    with pytest.raises(tc.InvalidArgument, match="it raised RuntimeError: solver diverged"):
        tc.check_early_stopping(X, beta0, sigma=1.0, estimators=(flow, failing))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_min_norm_on_your_own_module_and_loop(dtype):
    """Your nn.Linear trained by your loop on the mean squared error (lr 0.1: a step of 0.2 / n on 1/2 ||Xw - y||^2),
    the weights stacked after each step: plain GD holds; the same loop on mini-batches is not plain GD (vacuous)."""
    g = torch.Generator().manual_seed(5)
    X, y = torch.randn(6, 10, generator=g, dtype=dtype), torch.randn(6, generator=g, dtype=dtype)
    for batch, expected in ((6, "holds"), (3, "vacuous")):
        model = torch.nn.Linear(10, 1, bias=False).to(dtype)
        torch.nn.init.zeros_(model.weight)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        iterates = [model.weight.detach().clone().reshape(-1)]
        for step in range(60):
            rows = torch.arange(6) if batch == 6 else torch.arange(step % 2 * 3, step % 2 * 3 + 3)
            optimizer.zero_grad()
            ((model(X[rows]).squeeze(1) - y[rows]) ** 2).mean().backward()
            optimizer.step()
            iterates.append(model.weight.detach().clone().reshape(-1))
        verdict = tc.check_min_norm(X, y, torch.stack(iterates), lr=0.2 / 6)
        assert verdict.status == expected, verdict.summary()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_ridge_clipped_beyond_the_unit_vectors_is_seen_at_the_data_scale(dtype):
    """Clipped at 3x the largest coefficient any unit vector gives: linear on e_i and on a unit-scale probe,
    not at the scale of y = noise with sigma = 30 (its true risk ratio is 4-14): not the theorem's ridge."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(9, 5, generator=g, dtype=torch.float64).to(dtype)
    flow, ridge, _, _ = _your_estimators(X)
    seen = max(float(ridge(e, lam).abs().max()) for e in torch.eye(9, dtype=dtype) for lam in (1e-4, 1.0, 1e4))
    clipped = lambda y, lam: ridge(y, lam).clamp(-3 * seen, 3 * seen)  # noqa: E731
    verdict = tc.check_early_stopping(X, torch.zeros(5, dtype=dtype), sigma=30.0, estimators=(flow, clipped))
    assert verdict.status == "vacuous" and "probes of norm" in verdict.reason, verdict.summary()
    exact = tc.check_early_stopping(X, torch.zeros(5, dtype=dtype), sigma=30.0, estimators=(flow, ridge))
    assert exact.status == "holds" and "linear on probes y of norm" in exact.reason, exact.summary()
    low, high = exact.details["estimators"]["linearity_probed"]["norm_range"]
    assert low < 30 < 30 * 3 < high  # from below the noise norm 30 sqrt(9) to beyond its tail


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_exact_estimators_hold_at_one_sample_and_a_zero_problem_holds(dtype):
    """n = 1 (four null eigenvalues: the rounding of X^T y / n there, times t, is within the derived error);
    beta0 = 0 and sigma = 0: every risk is exactly 0."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(1, 5, generator=g, dtype=torch.float64).to(dtype)
    beta0 = torch.randn(5, generator=g, dtype=torch.float64).to(dtype)
    flow, ridge, _, _ = _your_estimators(X)
    verdict = tc.check_early_stopping(X, beta0, sigma=0.5, estimators=(flow, ridge))
    assert verdict.status == "holds", verdict.summary()
    zero = tc.check_early_stopping(X, torch.zeros(5, dtype=dtype), sigma=0.0, estimators=(flow, ridge))
    assert zero.status == "holds" and zero.statistic == 0 and "exactly 0" in zero.reason, zero.summary()
    assert tc.check_early_stopping(X, torch.zeros(5, dtype=dtype), sigma=0.0).status == "holds"


@pytest.mark.parametrize("scale", [1e-160, 1e160])
def test_a_design_outside_the_normal_range_is_inconclusive(scale):
    """X x 1e-160 (S subnormal: flow times 1 / s beyond float64) or x 1e160 (S overflows): inconclusive with
    the fix named, never a raw error; float32 designs stay in range in the float64 copy and hold."""
    g = torch.Generator().manual_seed(0)
    X, beta0 = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    verdict = tc.check_early_stopping(X * scale, beta0, sigma=0.5)
    assert verdict.status == "inconclusive" and "rescale X" in verdict.reason, verdict.summary()
    assert tc.check_early_stopping((X * 1e-18).float(), beta0.float(), sigma=0.5).status == "holds"
