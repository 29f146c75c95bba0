"""ntk_movement (Lee et al. 2019, Thm 2.1): the kernel moves by O(width^-1/2) under GD; one-sided, so mean-field
runs (which move O(1)) are caught, and relu, mean-field and a supercritical step are outside the theorem."""

import math

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.ntk import init_weights, kernel_at
from theorycheck.claims.ntk_movement import _mean_field_movement, kernel_movement, one_layer_kernel
from theorycheck.core.devices import gamma
from theorycheck.core.errors import InvalidArgument

X = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
Y = torch.randn(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)


@pytest.mark.parametrize("activation", ["erf", "tanh", "relu"])
@pytest.mark.parametrize("output_scale", ["ntk", "mean-field"])
def test_the_closed_form_kernel_is_autograds_j_jt(activation, output_scale):
    W, a = init_weights(4, 64, 1, seed=0, claim="ntk_movement")
    closed = one_layer_kernel(X, W, a, activation=activation, output_scale=output_scale)
    phi = {"erf": torch.erf, "tanh": torch.tanh, "relu": torch.relu}[activation]
    autograd = kernel_at(X, [W, a], activation=phi, output_scale=output_scale)
    # both are sums of 2 m products of the same rounded factors: gamma_{2m + d + 2} of the absolute sums
    assert torch.allclose(closed, autograd, rtol=0, atol=gamma(2 * 64 + 4 + 2, torch.float64) * float(
        autograd.abs().max()) * 4)


def test_runs_side_by_side_equal_runs_one_at_a_time():
    together = kernel_movement(X, Y, 64, [3, 4, 5])
    alone = [kernel_movement(X, Y, 64, [seed])[0] for seed in (3, 4, 5)]
    assert [r["movement"] for r in together] == pytest.approx([r["movement"] for r in alone], rel=1e-12)


def test_a_wide_run_fits_its_targets_and_barely_moves_its_kernel():
    (wide,), (narrow,) = (kernel_movement(X, Y, w, [1], steps=256) for w in (2048, 32))
    assert wide["finite"] and wide["step_ratio"] < 1 and wide["movement"] < narrow["movement"] / 10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_smooth_networks_hold_and_mean_field_runs_declared_as_ntk_are_violated(dtype):
    x, y = X.to(dtype), Y.to(dtype)
    verdict = tc.check_ntk_movement(x, y, activation="tanh")
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["interval"][1] <= -0.5 and verdict.dtype == str(dtype).removeprefix("torch.")
    caught = tc.check_ntk_movement(x, y, measure=_mean_field_movement)
    assert caught.status == "violated" and caught.details["interval"][0] > -0.5, caught.summary()


def test_outside_the_theorem_the_conclusion_is_still_measured():
    relu = tc.check_ntk_movement(X, Y, activation="relu")
    assert relu.status == "vacuous" and relu.conclusion_held  # moves like width^-1/2 or faster, but not covered
    mean_field = tc.check_ntk_movement(X, Y, output_scale="mean-field")
    assert mean_field.status == "vacuous" and not mean_field.conclusion_held  # the check can fail
    assert abs(mean_field.details["slope"]) < 0.3
    large = tc.check_ntk_movement(X, Y, lr_factor=2.5, widths=(16, 32, 64), seeds=(0, 1))
    assert large.status == "vacuous" and "critical" in large.reason


def test_straddling_intervals_and_too_few_runs_are_inconclusive():
    straddle = tc.check_ntk_movement(X, Y, widths=(16, 32, 64), seeds=(0, 1, 2),
                                     measure=lambda X, y, w, seeds, **_: [
                                         {"movement": w ** -0.5 * (1.5 if s else 1), "step_ratio": 0.5, "finite": True}
                                         for s in seeds])
    assert straddle.status == "inconclusive" and "straddles" in straddle.reason
    few = tc.check_ntk_movement(X, Y, widths=(64, 128), seeds=(0, 1))  # not an assumption of the theorem
    assert few.status == "inconclusive" and "too few widths" in few.reason
    assert all(held for held in few.assumptions.values())
    diverged = tc.check_ntk_movement(X, Y, widths=(16, 32, 64), seeds=(0, 1),
                                     measure=lambda X, y, w, seeds, **_: [
                                         {"movement": math.inf, "step_ratio": 0.5, "finite": False} for _ in seeds])
    assert diverged.status == "inconclusive" and "diverged" in diverged.reason


def test_bad_input_names_what_was_expected():
    with pytest.raises(InvalidArgument, match="activation in"):
        tc.check_ntk_movement(X, Y, activation="gelu")
    with pytest.raises(InvalidArgument, match=r"one sample count across \['X', 'y'\] for 'ntk_movement'"):
        tc.check_ntk_movement(X, Y[:3])


def test_the_mean_field_control_fits_unit_targets_and_is_violated():
    """Audit control 58 at 80 examples drew Gaussian targets (0.056, 0.049): reached by the initial output's
    own m^{-1/2} decay, the movement decayed too (slope -0.53, inconclusive). Its targets are now +-1."""
    from theorycheck.claims.ntk_movement import kit

    cases = {c.name: c for c in kit.audit_cases(n=80, seed=0, device="cpu", dtype="float64")}
    verdict = cases["control-mean_field_as_ntk-58"].run()
    assert verdict.status == "violated", verdict.summary()
    assert verdict.details["interval"][0] > -0.5


def test_the_trapezoid_rule_against_the_analytic_erf_kernel():
    """The 2-D rule of limit_kernel (used for tanh) reproduces Williams' erf kernel to 1e-13 at step 0.2, within its
    error bound (the change from step 0.4)."""
    from scipy.special import erf

    from theorycheck.claims.ntk import erf_dual
    from theorycheck.claims.ntk_movement import _gauss_expectations

    X = np.random.default_rng(0).standard_normal((5, 3))
    sigma = X @ X.T / 3
    coarse, fine = (_gauss_expectations(sigma, erf, step) for step in (0.4, 0.2))
    error = np.abs(fine - erf_dual(sigma)[0]).max()
    assert error <= 1e-13 and error <= np.abs(fine - coarse).max()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["erf", "tanh"])
def test_a_repeated_input_makes_the_limit_kernel_singular_and_the_verdict_vacuous(activation, dtype):
    """lambda_min(Theta) > 0 on the training inputs is an assumption of Lee et al. (2019): a repeated input (here
    with a second target) makes Theta singular, whatever the fitted slope says; inputs 1e-3 apart keep it
    definite (lambda_min over 10x n eps ||Theta|| + n delta)."""
    from theorycheck.claims.ntk_movement import limit_definiteness

    X = torch.as_tensor(np.random.default_rng(1).standard_normal((3, 4)), dtype=dtype)
    repeated = torch.cat([X, X[:1]])
    run = dict(widths=(16, 32, 64), seeds=(0, 1), steps=2, activation=activation)
    verdict = tc.check_ntk_movement(repeated, torch.tensor([1.0, -1.0, 0.5, -1.0], dtype=dtype), **run)
    assert verdict.status == "vacuous" and "singular on X" in verdict.reason
    assert verdict.details["limit_kernel"]["lambda_min"] <= verdict.details["limit_kernel"]["solver_error"]
    close = torch.cat([X, X[:1] + 1e-3])
    measured = limit_definiteness(close, activation)
    assert measured["definite"] is True and measured["lambda_min"] > 10 * measured["tolerance"]


def test_a_wide_tanh_input_gets_a_step_within_its_strip_of_analyticity():
    """One-dimensional inputs of size 2 make tanh(u) nearly a step (poles pi / (2 a) from the real axis): the step
    follows a, so lambda_min (6e-3) stands far above the rule's error; a fixed step of 0.6 would not resolve it
    (no bound), and an input 3x wider still decides."""
    from theorycheck.claims.ntk_movement import limit_definiteness, limit_kernel

    X = torch.tensor([[1.54099611], [-0.29342891], [-2.17878938]], dtype=torch.float64)
    measured = limit_definiteness(X, "tanh")
    assert measured["definite"] is True and measured["lambda_min"] > 1e6 * measured["tolerance"]
    assert limit_kernel(X.numpy(), "tanh", step=0.6)[1] == math.inf
    assert limit_definiteness(3 * X, "tanh")["definite"] is True
