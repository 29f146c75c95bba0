"""Random ReLU features against Mei & Montanari's ridgeless limit (double_descent, features="relu"): the formula's
values and identities, the label-averaged estimator, and the verdicts of correct runs and of the wrong formulas."""

import math

import numpy as np
import pytest

import theorycheck as tc
from theorycheck.claims.double_descent import DoubleDescentCase, typo_transcription, zeta_squared
from theorycheck.engines.random_features import (ZETA_RELU, random_features_draws, ridgeless_coefficients,
                                                 ridgeless_terms)

# psi1: (B, V, R with zeta^2, R of the typo'd transcription) at psi2 = 3, R = B + 0.25 V
TABLE = {0.5: (0.80997, 0.20000, 0.7595, 0.8244), 1.5: (0.61950, 1.00000, 0.5811, 0.6247),
         2.5: (1.06804, 5.00000, 1.7135, 1.0460), 3.5: (0.89700, 6.32231, 1.9708, 1.1323),
         6.0: (0.17263, 1.32231, 0.4197, 0.3588), 12.0: (0.07604, 0.65564, 0.2129, 0.1974)}


@pytest.mark.parametrize("psi1", sorted(TABLE))
def test_formula_values_and_identities(psi1):
    B, V = ridgeless_coefficients(psi1, 3.0)
    assert (B, V) == pytest.approx(TABLE[psi1][:2], abs=6e-6)
    assert sum(w * c for w, c in zip((1, 0.25), zeta_squared(psi1, 3.0))) == pytest.approx(TABLE[psi1][2], abs=6e-5)
    assert sum(w * c for w, c in zip((1, 0.25), typo_transcription(psi1, 3.0))) == pytest.approx(TABLE[psi1][3],
                                                                                                  abs=6e-5)
    chi = ridgeless_terms(psi1, 3.0)[0]
    psi, z2 = min(psi1, 3.0), ZETA_RELU ** 2
    assert chi < 0 and abs(z2 * chi ** 2 - (1 + z2 - psi * z2) * chi - psi) <= 1e-14 * (1 + psi)
    if psi1 < 3.0:  # the least-squares variance N / (n - N)
        assert V == pytest.approx(psi1 / (3.0 - psi1), rel=1e-12)
    assert ridgeless_coefficients(3.0, 3.0) == (math.inf, math.inf)


def test_label_averaged_estimator_is_the_mean_over_labels():
    """One draw of (X, Theta, test set): the test error of sampled beta (||beta|| = 1) and noise (tau^2 = 0.25),
    averaged over 4000 label draws, is B_hat + 0.25 V_hat within 5 standard errors."""
    d, n, N, m = 10, 30, 20, 200
    draw = random_features_draws(d, n, N, draws=1, test_points=m, seed=4)
    rng = np.random.default_rng([4, d, n, N])  # the draw's own stream: the same X, X_test, Theta
    sphere = [rng.standard_normal((rows, d)) for rows in (n, m, N)]
    X, X_test, Theta = (x * math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True) for x in sphere)
    Z, Z_test = (np.maximum(A @ Theta.T / math.sqrt(d), 0) for A in (X, X_test))
    labels = np.random.default_rng(1)
    beta = labels.standard_normal((4000, d))
    beta /= np.linalg.norm(beta, axis=1, keepdims=True)
    y = beta @ X.T + 0.5 * labels.standard_normal((4000, n))
    errors = np.mean((beta @ X_test.T - y @ np.linalg.pinv(Z).T @ Z_test.T) ** 2, axis=1)
    assert abs(errors.mean() - draw.risks(1.0, 0.25)[0]) <= 5 * errors.std() / math.sqrt(errors.size)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_runs_hold_and_wrong_formulas_are_violated(dtype):
    case = dict(n=150, draws=20, r2=1.0, sigma2=0.25, seed=3, features="relu")
    held = DoubleDescentCase(psi1=(0.5, 6.0), **case).verdict(dtype=dtype)
    assert held.status == "holds", held.summary()
    assert "Student-t" in held.tolerance_basis and "10/d^2" in held.tolerance_basis
    for control in ("zeta-squared", "typo-transcription"):
        wrong = DoubleDescentCase(psi1=(0.5,), control=control, **case).verdict(dtype=dtype)
        assert wrong.status == "violated", wrong.summary()


def _fit(activation, ridge=0.0):
    """A user's random-features fit: N features activation(<theta, x> / sqrt(d)), theta on the sphere, min-norm
    (or ridge) coefficients."""
    def fit(X, y, N, rng):
        d = X.shape[1]
        Theta = rng.standard_normal((N, d))
        Theta *= math.sqrt(d) / np.linalg.norm(Theta, axis=1, keepdims=True)
        Z = activation(X @ Theta.T / math.sqrt(d))
        a = np.linalg.solve(Z.T @ Z + ridge * np.eye(N), Z.T @ y) if ridge else np.linalg.lstsq(Z, y, rcond=None)[0]
        return lambda X_test: activation(X_test @ Theta.T / math.sqrt(d)) @ a
    return fit


def test_a_users_fit_holds_and_another_activation_or_a_ridge_is_violated():
    """observe_test_errors on fits written here (lstsq, not the engine's SVD): ReLU min-norm holds; |z| features
    and a ridge fit have another test error."""
    from theorycheck.claims.double_descent import observe_test_errors

    relu = lambda z: np.maximum(z, 0)  # noqa: E731
    given = dict(n=150, d=50, r2=1.0, sigma2=0.25, features="relu")
    for fit, expected in ((_fit(relu), "holds"), (_fit(np.abs), "violated"), (_fit(relu, ridge=5.0), "violated")):
        errors = observe_test_errors(fit, d=50, psi1=(0.5, 6.0), draws=20, seed=2)
        verdict = tc.check_double_descent(errors, **given)
        assert verdict.status == expected, verdict.summary()


def test_outside_the_fitted_gap_is_inconclusive_and_bad_input_raises():
    draws = random_features_draws(50, 150, 25, draws=5, test_points=100, seed=1)
    for given in (dict(r2=1.0, sigma2=1.0, d=50), dict(r2=1.0, sigma2=0.25, d=40)):
        verdict = tc.check_double_descent({25: draws.risks(given["r2"], given["sigma2"])}, n=150, features="relu",
                                          **given)
        assert verdict.status == "inconclusive" and "no tolerance for this setting" in verdict.reason
    nan = tc.check_double_descent({25: [math.nan, 1.0]}, n=150, r2=1.0, sigma2=0.25, features="relu", d=50)
    assert nan.status == "inconclusive"
    one = tc.check_double_descent({25: [0.86]}, n=150, r2=1.0, sigma2=0.25, features="relu", d=50)
    assert one.status == "inconclusive"
    with pytest.raises(tc.InvalidArgument, match="positive integers n and d"):
        tc.check_double_descent({25: [1.0, 1.0]}, n=150, r2=1.0, sigma2=0.25, features="relu")
    with pytest.raises(tc.InvalidArgument, match="features in"):
        tc.check_double_descent({25: [1.0, 1.0]}, n=150, r2=1.0, sigma2=0.25, features="tanh")
