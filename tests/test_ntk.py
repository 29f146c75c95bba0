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


def test_mean_field_scaling_and_too_few_runs_are_vacuous():
    X = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert tc.check_ntk(X, depth=1, output_scale="mean-field").status == "vacuous"
    assert tc.check_ntk(X, depth=1, widths=(64, 128)).status == "vacuous"
    with pytest.raises(tc.InvalidArgument, match="expected X as an"):
        tc.check_ntk(torch.randn(1, 3))


def test_stacked_networks_are_the_single_networks_side_by_side():
    """Each seed keeps its own stream per width: row s of the stacked layers is init_weights(seed=s)."""
    from theorycheck.claims.ntk import stacked_weights

    for dtype in (torch.float64, torch.float32):
        stacked = stacked_weights(3, 16, 2, seeds=[5, 9], dtype=dtype)
        for row, seed in enumerate([5, 9]):
            single = init_weights(3, 16, 2, seed=seed, dtype=dtype)
            assert all(torch.equal(W[row], V) for W, V in zip(stacked, single))
