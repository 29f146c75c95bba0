"""ntk: the empirical NTK approaches the arc-cosine NTK as width^-1/2; a wrong limit is violated."""

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.ntk import analytic_ntk, empirical_ntk, init_weights, kernel_at, mlp_output
from theorycheck.core.devices import gamma


def test_the_analytic_kernel_on_the_diagonal_is_the_input_norm():
    """On the diagonal (angle 0) Sigma^l = Sigma^{l-1} / 2 and dSigma^l = 1/2, with Sigma^0 = ||x||^2 / d."""
    x = np.array([[3.0, 4.0]])
    s = 25.0 / 2
    assert analytic_ntk(x, 0)[0, 0] == pytest.approx(s)
    assert analytic_ntk(x, 1)[0, 0] == pytest.approx(s / 2 + s / 2)  # Sigma^1 + Theta^1 dSigma^1
    assert analytic_ntk(x, 2)[0, 0] == pytest.approx(s / 4 + s * 1 / 2)  # Sigma^2 + Theta^2 dSigma^2


@pytest.mark.parametrize("depth, width", [(1, 16), (2, 64), (3, 256), (2, 1024)])
@pytest.mark.parametrize("network", [{}, {"output_scale": "mean-field"}, {"activation": torch.tanh}])
def test_the_layerwise_kernel_is_the_jacobians_gram_matrix(depth, width, network):
    """kernel_at sums per-layer Gram products; the oracle is J J^T from one autograd row per output. Both sum
    P products of factors that carry depth x width rounded products each: |difference| <= gamma_m |J| |J|^T
    with m = 2 (P + depth x width) (each side's sum and its factors' rounding)."""
    X = torch.randn(5, 4, generator=torch.Generator().manual_seed(width), dtype=torch.float64)
    weights = init_weights(4, width, depth, seed=width)
    f = mlp_output(X, weights, **network)
    J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, weights, retain_graph=True)])
                     for out in f]).detach()
    m = 2 * (J.shape[1] + depth * width)
    difference = (kernel_at(X, weights, **network) - J @ J.T).abs()
    assert bool((difference <= gamma(m, torch.float64) * (J.abs() @ J.abs().T)).all())


def test_a_wide_network_is_close_to_its_limit():
    X = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = analytic_ntk(X.numpy(), 2)
    errors = [np.linalg.norm(empirical_ntk(X, w, 2, seeds=[1])[0].numpy() - exact) / np.linalg.norm(exact)
              for w in (32, 2048)]
    assert errors[1] < 0.15 and errors[1] < errors[0] / 3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_holds_with_the_analytic_kernel_and_is_violated_with_a_wrong_one(dtype):
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=dtype)
    holds = tc.assert_ntk(X, depth=1)
    assert holds.details["interval"][0] <= -0.5 <= holds.details["interval"][1]
    wrong = tc.check_ntk(X, depth=1, kernel=lambda A, depth: analytic_ntk(A, depth + 1))
    assert wrong.status == "violated" and wrong.statistic > wrong.bound + wrong.tolerance
    assert "does not decay" in wrong.reason


def test_mean_field_scaling_is_vacuous_and_too_few_runs_inconclusive():
    X = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert tc.check_ntk(X, depth=1, output_scale="mean-field").status == "vacuous"
    few = tc.check_ntk(X, depth=1, widths=(64, 128))  # a limit of the run, not an assumption of the theorem
    assert few.status == "inconclusive" and "too few widths" in few.reason and all(few.assumptions.values())
    with pytest.raises(tc.InvalidArgument, match="expected X as an"):
        tc.check_ntk(torch.randn(1, 3))


def test_a_limit_kernel_off_by_five_percent_is_violated():
    """1.05 x the analytic kernel: the slope still looks like -1/2 (the offset hides under the fluctuations at
    these widths), but the fitted offset of the limit along Theta, b_0 ~ -0.05 / 1.05, is outside its interval."""
    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    scaled = tc.check_ntk(X, depth=1, widths=(64, 256, 1024, 4096), seeds=tuple(range(16)),
                          kernel=lambda A, depth: 1.05 * analytic_ntk(A, depth))
    assert scaled.status == "violated" and "the limit is off" in scaled.reason, scaled.summary()
    assert scaled.details["limit_offset"] == pytest.approx(-0.05 / 1.05, abs=3 * scaled.details["detectable_offset"])
    assert scaled.details["detectable_offset"] < 0.02
    correct = tc.check_ntk(X, depth=1, widths=(64, 256, 1024, 4096), seeds=tuple(range(16)))
    assert correct.status == "holds", correct.summary()
    lo, hi = correct.details["limit_offset_interval"]
    assert lo <= 0 <= hi and {c["name"] for c in correct.details["comparisons"]} == {
        "|fitted slope + 1/2|", "|offset of the limit along Theta|"}


def test_the_limit_offset_fit_recovers_a_known_offset_and_bias():
    """s = b_0 + b_1 / w + noise / sqrt(w), drawn: the weighted fit returns b_0 within its interval."""
    from theorycheck.claims.ntk import limit_offset

    rng = np.random.default_rng(0)
    runs = [(w, -0.03 + 0.5 / w + 2 * rng.standard_normal() / np.sqrt(w), 0.0)
            for w in (16, 64, 256, 1024, 4096) for _ in range(20)]
    offset, half, used = limit_offset(runs)
    assert used == 80 and abs(offset + 0.03) <= half < 0.03


def test_a_network_without_hidden_layer_is_its_own_limit():
    """depth 0: f = W x / sqrt(d), Theta_w = X X^T / d at every width: the errors are roundoff (or exactly 0,
    log 0), which must not be fitted as a slope."""
    X = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        verdict = tc.check_ntk(X.to(dtype), depth=0)
        assert verdict.status == "holds" and "nothing left to converge" in verdict.reason, verdict.summary()
        assert verdict.statistic <= verdict.tolerance < 1e-5
    assert tc.check_ntk(X, depth=0, kernel=lambda A, depth: 1.05 * analytic_ntk(A, depth)).status == "violated"


def test_a_run_that_cannot_see_the_requested_resolution_is_inconclusive():
    X = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    blind = tc.check_ntk(X, depth=1, widths=(16, 32, 64, 128), seeds=(0, 1, 2), resolution=0.05)
    assert blind.status == "inconclusive" and "resolution" in blind.reason, blind.summary()
    sharp = tc.check_ntk(X, depth=1, widths=(64, 256, 1024, 4096), seeds=tuple(range(16)), resolution=0.05)
    assert sharp.status == "holds" and sharp.details["detectable_offset"] <= 0.05


def _gauss_hermite_expectation(f, g, sigma: np.ndarray, nodes: int = 120) -> float:
    """E[f(u) g(v)] for (u, v) ~ N(0, sigma) by a tensor Gauss-Hermite rule through the Cholesky factor."""
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    L = np.linalg.cholesky(sigma)
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    u, v = L[0, 0] * Z1, L[1, 0] * Z1 + L[1, 1] * Z2
    return float(np.sum(np.outer(w, w) * f(u) * g(v)))


@pytest.mark.parametrize("s11, s22, rho", [(0.3, 0.3, 0.5), (1.0, 2.5, -0.7), (0.05, 4.0, 0.95), (2.0, 2.0, 0.0)])
def test_the_erf_dual_kernel_against_quadrature(s11, s22, rho):
    """Williams' arcsin form against a 120 x 120 Gauss-Hermite rule (the integrands are entire: the rule is
    exact to ~1e-12 here)."""
    from scipy.special import erf

    from theorycheck.claims.ntk import erf_dual

    c = rho * np.sqrt(s11 * s22)
    sigma = np.array([[s11, c], [c, s22]])
    value, derivative = erf_dual(sigma)
    erf_prime = lambda x: 2 / np.sqrt(np.pi) * np.exp(-x ** 2)  # noqa: E731
    assert value[0, 1] == pytest.approx(_gauss_hermite_expectation(erf, erf, sigma), abs=1e-10)
    assert derivative[0, 1] == pytest.approx(_gauss_hermite_expectation(erf_prime, erf_prime, sigma), rel=1e-9)
    z, w = np.polynomial.hermite_e.hermegauss(120)
    assert value[0, 0] == pytest.approx(float(np.sum(w * erf(np.sqrt(s11) * z) ** 2) / w.sum()), abs=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
def test_the_analytic_erf_ntk_against_monte_carlo_at_large_width(depth):
    """The mean of 48 independent empirical erf NTKs at width 1024 against the arcsin recursion. One hidden layer:
    the units are iid, so E[Theta_w] = Theta exactly and each entry's mean is within 5 standard errors
    (Bonferroni over <= 10 entries: false alarm < 1e-5 under a normal mean). Two: E[Theta_w] = Theta + O(1/w),
    allowance 5 standard errors + 2/w relative (the 1/w correction; |measured bias| < 0.3/w)."""
    from theorycheck.claims.ntk import analytic_ntk

    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = analytic_ntk(X.numpy(), depth, activation="erf")
    width, draws = 1024, 48
    kernels = np.stack([kernel_at(X, init_weights(3, width, depth, seed=k, claim="erf-mc"), activation=torch.erf).numpy()
                        for k in range(draws)])
    mean, se = kernels.mean(0), kernels.std(0, ddof=1) / np.sqrt(draws)
    allowance = 5 * se + (0 if depth == 1 else 2 / width) * np.abs(exact)
    assert bool((np.abs(mean - exact) <= allowance).all()), (mean - exact, allowance)
    for wrong in (analytic_ntk(X.numpy(), depth), 1.05 * exact):  # the check tells relu's and a 5 % error apart
        assert not bool((np.abs(mean - wrong) <= allowance).all())


def test_check_ntk_on_an_erf_network():
    X = torch.randn(4, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    verdict = tc.check_ntk(X, depth=1, activation="erf", widths=(64, 256, 1024, 4096), seeds=tuple(range(12)))
    assert verdict.status == "holds" and verdict.details["activation"] == "erf", verdict.summary()
    relu_limit = tc.check_ntk(X, depth=1, activation="erf", widths=(64, 256, 1024, 4096), seeds=tuple(range(12)),
                              kernel=lambda A, depth: analytic_ntk(A, depth))  # the relu limit for an erf network
    assert relu_limit.status == "violated"


def test_stacked_networks_are_the_single_networks_side_by_side():
    """Each seed keeps its own stream per width: row s of the stacked layers is init_weights(seed=s)."""
    from theorycheck.claims.ntk import stacked_weights

    for dtype in (torch.float64, torch.float32):
        stacked = stacked_weights(3, 16, 2, seeds=[5, 9], dtype=dtype)
        for row, seed in enumerate([5, 9]):
            single = init_weights(3, 16, 2, seed=seed, dtype=dtype)
            assert all(torch.equal(W[row], V) for W, V in zip(stacked, single))
