"""Unit tests and negative controls for double_descent (exact finite-n risk of min-norm least squares on
Gaussian features; peak at p = n)."""

import math

import numpy as np
import pytest

import theorycheck as tc
from theorycheck.claims.double_descent import (DoubleDescentCase, conditional_risks, expected_risk, raw_risks,
                                                risk_sd)


def test_conditional_risk_is_the_risk_of_the_pseudo_inverse():
    """Monte Carlo over beta on the sphere and the noise for one X: ||X^+ y - beta||^2 averages to the per-draw value."""
    rng = np.random.default_rng(0)
    n, p, r2, sigma2 = 10, 25, 1.5, 0.4
    X = np.random.default_rng([3, n, p]).normal(size=(n, p))
    beta = rng.normal(size=(20000, p))
    beta *= math.sqrt(r2) / np.linalg.norm(beta, axis=1, keepdims=True)
    y = beta @ X.T + math.sqrt(sigma2) * rng.normal(size=(20000, n))
    losses = np.sum((y @ np.linalg.pinv(X).T - beta) ** 2, axis=1)
    exact = conditional_risks(n, p, r2=r2, sigma2=sigma2, draws=1, seed=3)[0]
    assert abs(losses.mean() - exact) < 4 * losses.std() / math.sqrt(losses.size)


def test_exact_expectation_and_sd_against_simulation():
    for p in (5, 30):
        v = conditional_risks(15, p, r2=1.0, sigma2=0.5, draws=4000, seed=1)
        assert abs(v.mean() - expected_risk(15, p, 1.0, 0.5)) < 5 * v.std() / math.sqrt(v.size)
        assert v.std() == pytest.approx(risk_sd(15, p, 0.5), rel=0.1)
    assert expected_risk(15, 15, 1.0, 0.5) == math.inf and risk_sd(15, 13, 0.5) == math.inf


def test_min_norm_risk_peaks_at_the_threshold():
    verdict = DoubleDescentCase(n=20, draws=100, seed=2).verdict()
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["peak"] in (19, 20, 21) and verdict.statistic < verdict.bound


def test_optimal_ridge_has_no_peak_and_noiseless_is_vacuous():
    ridge = DoubleDescentCase(n=20, seed=2, control="optimal-ridge").verdict()
    assert ridge.status == "violated" and "peaks at p = 80" in ridge.reason
    noiseless = DoubleDescentCase(n=20, seed=2, control="noiseless").verdict()
    assert noiseless.status == "vacuous" and not noiseless.conclusion_held
    with pytest.raises(tc.ClaimViolation, match="double_descent: violated"):
        tc.assert_double_descent({p: conditional_risks(12, p, r2=1.0, sigma2=1.0, draws=20, ridge=1.0 * p)
                                  for p in (3, 11, 12, 13, 48)}, n=12, r2=1.0, sigma2=1.0)
    high_snr = DoubleDescentCase(n=20, seed=2, control="high-snr").verdict()
    assert high_snr.status == "vacuous" and "sigma^2 >= r^2" in str(high_snr.failed_assumptions)


def test_bad_input_raises():
    with pytest.raises(tc.InvalidArgument, match="p = 9, 10, 11 in the grid"):
        tc.check_double_descent({5: np.ones(3)}, n=10, r2=1.0, sigma2=1.0)
    with pytest.raises(tc.InvalidArgument, match="sigma2 >= 0"):
        tc.check_double_descent({9: [1.0], 10: [1.0], 11: [1.0]}, n=10, r2=1.0, sigma2=-1.0)
    nan = tc.check_double_descent({9: [1.0], 10: [math.nan], 11: [1.0]}, n=10, r2=1.0, sigma2=1.0)
    assert nan.status == "inconclusive"


def test_audit_cases_meet_their_expectations():
    for case in tc.CLAIMS["double_descent"].audit_cases(n=2, seed=1, device="cpu", dtype="float64"):
        assert case.run().status in case.expected
        assert "DoubleDescentCase(" in case.reproduce


@pytest.mark.parametrize("p", [6, 30])
def test_the_raw_risk_variance_against_monte_carlo(p):
    """risk_sd(kind='raw') against 4000 raw draws: the sample variance within 5 of its standard errors
    (sqrt((m4 - var^2) / N) from the sample's fourth moment), and its sd 3-7x the conditional one here."""
    n, r2, sigma2 = 15, 1.0, 1.5
    v = raw_risks(n, p, r2=r2, sigma2=sigma2, draws=4000, seed=2)
    se = math.sqrt((np.mean((v - v.mean()) ** 4) - v.var() ** 2) / v.size)
    assert abs(v.var() - risk_sd(n, p, sigma2, r2, "raw") ** 2) <= 5 * se
    assert v.mean() == pytest.approx(expected_risk(n, p, r2, sigma2), abs=5 * v.std() / math.sqrt(v.size))
    assert 2.5 < risk_sd(n, p, sigma2, r2, "raw") / risk_sd(n, p, sigma2) < 12


def test_raw_risks_are_judged_with_their_own_variance():
    n, r2, sigma2 = 14, 1.0, 1.5
    grid = (4, 7, 13, 14, 15, 22, 28, 56)
    raw = {p: raw_risks(n, p, r2=r2, sigma2=sigma2, draws=300, seed=p) for p in grid}
    verdict = tc.check_double_descent(raw, n=n, r2=r2, sigma2=sigma2, risks_are="raw")
    assert verdict.status == "holds" and verdict.details["risks_are"] == "raw", verdict.summary()
    as_conditional = tc.check_double_descent(raw, n=n, r2=r2, sigma2=sigma2)  # a 3-7x smaller sd
    assert as_conditional.statistic > verdict.statistic * 3
    with pytest.raises(tc.InvalidArgument, match="risks_are"):
        tc.check_double_descent(raw, n=n, r2=r2, sigma2=sigma2, risks_are="test-mse")


def _lstsq(X, y):
    """A user's min-norm estimator (lstsq, not the checker's pinv)."""
    return np.linalg.lstsq(X, y, rcond=None)[0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_users_estimator_and_design_are_observed(dtype):
    """observe_risks runs your estimator on your design: min-norm on N(0, I) rows holds (in float32 too); Rademacher,
    uniform and correlated designs are outside the theorem (vacuous, measured on the rows drawn), and a ridge
    estimator misses the exact risk (violated)."""
    from theorycheck.claims.double_descent import observe_risks

    def gaussian(rng, n, p):
        return rng.standard_normal((n, p)).astype(dtype)

    def estimator(X, y):
        return _lstsq(X.astype(dtype), y.astype(dtype))

    given = dict(n=16, r2=1.0, sigma2=1.5)
    cases = [(estimator, gaussian, "holds"),
             (estimator, lambda rng, n, p: rng.choice([-1.0, 1.0], size=(n, p)), "vacuous"),
             (estimator, lambda rng, n, p: rng.uniform(-math.sqrt(3), math.sqrt(3), size=(n, p)), "vacuous"),
             (estimator, lambda rng, n, p: rng.standard_normal((n, p)) @ (np.eye(p) + np.ones((p, p)) / p), "vacuous"),
             (lambda X, y: np.linalg.solve(X.T @ X + 4 * np.eye(X.shape[1]), X.T @ y), gaussian, "violated")]
    for fit, design, expected in cases:
        risks = observe_risks(fit, design, draws=80, seed=1, **given)
        verdict = tc.check_double_descent(risks, risks_are=risks.kind, **given)
        assert verdict.status == expected, verdict.summary()
        assert (expected == "vacuous") == ("not N(0, I_p)" in verdict.reason)


def test_observed_risks_refuse_wrong_shapes_and_conditional_judging():
    from theorycheck.claims.double_descent import observe_risks

    with pytest.raises(tc.InvalidArgument, match=r"estimator\(X, y\) of shape"):
        observe_risks(lambda X, y: np.zeros(3), n=12, r2=1.0, sigma2=1.0, draws=2)
    with pytest.raises(tc.InvalidArgument, match=r"design\(rng, n, p\) of shape"):
        observe_risks(design=lambda rng, n, p: np.zeros((p, n + 1)), n=12, r2=1.0, sigma2=1.0, draws=2)
    risks = observe_risks(n=12, r2=1.0, sigma2=1.0, draws=5)
    assert risks.kind == "conditional"  # the default min-norm estimator is linear in y
    with pytest.raises(tc.InvalidArgument, match="risks_are='conditional'"):
        tc.check_double_descent(risks, n=12, r2=1.0, sigma2=1.0, risks_are="raw")
