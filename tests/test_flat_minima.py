"""Unit tests and negative controls for flat_minima (Dinh et al.'s alpha-scale: f unchanged, Hessian
H_a = T_a^-1 H T_a^-1) and gauss_newton (H = J^T J at an interpolating squared-loss minimum)."""

import math

import pytest
import torch

import theorycheck as tc
from theorycheck.claims.flat_minima import HessianCase


def _net(n=5, d=3, m=8, k=1, seed=0, dtype="float64", device="cpu", activation="relu"):
    return HessianCase(claim="flat_minima", n=n, d=d, m=m, k=k, seed=seed, activation=activation).tensors(device, dtype)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_alpha_scale_keeps_f_and_transforms_the_hessian(activation, tc_device, tc_dtype):
    W1, W2, X, y = _net(activation=activation, dtype=tc_dtype, device=tc_device)
    verdict = tc.check_flat_minima(W1, W2, X, y, activation=activation)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic < 0.5  # ratio of the largest change to its roundoff bound


def test_sharpness_grows_like_alpha_squared():
    """lambda_max(H_a) / a^2 -> lambda_max(H_22) = lambda_max(sum h h^T): the same f at any sharpness."""
    W1, W2, X, y = _net(n=6, m=10, seed=2)
    verdict = tc.check_flat_minima(W1, W2, X, y, alphas=(1.0, 10.0, 100.0, 1000.0))
    rows = verdict.details["alphas"]
    h = torch.relu(X @ W1.T)
    assert verdict.details["lambda_max_H22"] == pytest.approx(float(torch.linalg.eigvalsh(h.T @ h)[-1]), rel=1e-12)
    assert rows[0]["lambda_max"] == pytest.approx(verdict.details["lambda_max"], rel=1e-12)
    assert [r["lambda_max"] for r in rows] == sorted(r["lambda_max"] for r in rows)
    assert rows[-1]["lambda_max"] > 1e5 * rows[0]["lambda_max"]
    ratios = [r["lambda_max_over_lower_bound"] for r in rows[1:]]
    assert all(1 <= q for q in ratios) and ratios[-1] - 1 < 1e-4 and ratios == sorted(ratios, reverse=True)


def test_interpolating_minimum_has_gauss_newton_hessian(tc_device, tc_dtype):
    W1, W2, X, y = _net(n=4, m=6, k=2, dtype=tc_dtype, device=tc_device)  # y = f(X): a global minimum
    verdict = tc.check_gauss_newton(W1, W2, X, y)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["rank"] <= 8 < verdict.details["parameters"] == 30


# --- negative controls ---------------------------------------------------------------------------

def test_tanh_net_changes_under_rescaling():
    W1, W2, X, y = _net(activation="relu")
    verdict = tc.check_flat_minima(W1, W2, X, y, activation="tanh")
    assert verdict.status == "vacuous" and not verdict.conclusion_held
    assert "not positively homogeneous" in verdict.reason
    assert max(r["f_change"] for r in verdict.details["alphas"]) > 1e6  # x the roundoff bound


def test_unbalanced_rescaling_is_violated():
    W1, W2, X, y = _net()
    verdict = tc.check_flat_minima(W1, W2, X, y, alphas=((2.0, 0.6),))  # a1 a2 = 1.2: f scales by 1.2
    assert verdict.status == "violated", verdict.summary()
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] flat_minima: violated"):
        tc.assert_flat_minima(W1, W2, X, y, alphas=((2.0, 0.6),))


def test_non_interpolating_point_is_vacuous_with_the_residual_term():
    W1, W2, X, y = _net(n=4, m=6)
    noisy = y + 0.1
    verdict = tc.check_gauss_newton(W1, W2, X, noisy)
    assert verdict.status == "vacuous" and not verdict.conclusion_held
    assert verdict.statistic > 1e6 * verdict.tolerance
    assert verdict.statistic == pytest.approx(verdict.details["residual_term_norm"], rel=1e-10)
    with pytest.raises(tc.ClaimViolation, match="not an interpolating point"):
        tc.assert_gauss_newton(W1, W2, X, noisy)


@pytest.mark.parametrize("call, message", [
    (lambda W1, W2, X, y: tc.check_flat_minima(W1.numpy(), W2, X, y), "W1 as a floating torch tensor"),
    (lambda W1, W2, X, y: tc.check_flat_minima(W1, W2.T, X, y), "W1 (m, d), W2 (k, m)"),
    (lambda W1, W2, X, y: tc.check_flat_minima(W1, W2, X.float(), y), "one device/dtype"),
    (lambda W1, W2, X, y: tc.check_flat_minima(W1, W2, X, y, alphas=(-1.0,)), "alphas"),
    (lambda W1, W2, X, y: tc.check_gauss_newton(W1, W2, X, y, activation="gelu"), "activation in"),
])
def test_bad_input_raises(call, message):
    with pytest.raises(tc.InvalidArgument, match="expected") as info:
        call(*_net())
    assert message in str(info.value)


def test_overflow_is_inconclusive():
    W1, W2, X, y = _net()
    verdict = tc.check_gauss_newton(W1 * 1e160, W2 * 1e160, X, y)
    assert verdict.status == "inconclusive" and "non-finite" in verdict.reason
    assert math.isnan(tc.check_flat_minima(W1 * 1e160, W2 * 1e160, X, y).details["lambda_max"])


@pytest.mark.parametrize("claim", ["flat_minima", "gauss_newton"])
def test_audit_cases_meet_their_expectations(claim):
    for case in tc.CLAIMS[claim].audit_cases(n=3, seed=1, device="cpu", dtype="float64"):
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
        assert "HessianCase(" in case.reproduce


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_clamp_beyond_the_probe_of_two_is_an_assumption_not_met(dtype):
    """relu6 on pre-activations of size ~1: a(2z) = 2a(z) nearly everywhere, but the rescaling by 10 and 100
    crosses the clamp. Homogeneity is probed at the factors the rescaling applies, so the theorem is silent
    (vacuous), not violated."""
    torch.manual_seed(0)
    W1, W2 = torch.randn(4, 3, dtype=dtype) / 3, torch.randn(1, 4, dtype=dtype)
    X, y = torch.randn(6, 3, dtype=dtype), torch.randn(6, 1, dtype=dtype)
    relu6 = lambda z: torch.clamp(z, 0.0, 6.0)  # noqa: E731
    assert float((X @ W1.T).abs().max()) < 3  # every 2z below the clamp
    verdict = tc.check_flat_minima(W1, W2, X, y, activation=relu6)
    assert verdict.status == "vacuous" and "rescaling factors" in verdict.reason, verdict.summary()
    assert tc.check_flat_minima(W1, W2, X, y, activation="relu").status == "holds"
