"""The roundoff scale S of a computed gradient (theorycheck.engines.gradient_scale): its value on a hand-computed
network, that it bounds the measured error of float32 Euler sums, and that it leaves the user's run alone."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from theorycheck.core.devices import gamma, unit_roundoff
from theorycheck.engines.gradient_scale import GradientScale
from theorycheck.generate.models import NetworkSpec
from theorycheck.core.modules import PowerReLU
from theorycheck.generate.sampling import network_and_batch


def _logistic_backward(model, X, y):
    torch.nn.functional.softplus(-y * model(X).reshape(-1)).sum().backward()


def test_scale_is_the_absolute_network_on_the_real_pattern():
    """Two ReLU layers: S = sum_n |l'_n| |w2| . (1[W1 x_n > 0] * (|W1| |x_n|)), and p z^(p-1) for ReLU^p."""
    torch.manual_seed(0)
    X, y = torch.randn(7, 3, dtype=torch.float64), torch.tensor([1.0, -1, 1, -1, 1, -1, 1], dtype=torch.float64)
    for activation, gain in ((nn.ReLU(), lambda z: (z > 0).double()), (PowerReLU(3.0), lambda z: 3 * z.clamp(0) ** 2)):
        model = nn.Sequential(nn.Linear(3, 5, bias=False), activation, nn.Linear(5, 1, bias=False)).double()
        scale = GradientScale(model)
        _logistic_backward(model, X, y)
        S, samples, roundoff = scale.take()
        W1, w2 = model[0].weight.detach(), model[2].weight.detach()
        c = torch.sigmoid(-y * model(X).reshape(-1).detach())  # |l'(q_n)|
        expected = (c * ((gain(X @ W1.T) * (X.abs() @ W1.abs().T)) @ w2.abs().T).reshape(-1)).sum()
        assert samples == 7 and S == pytest.approx(float(expected), rel=1e-12)
        assert roundoff == unit_roundoff(torch.float64)  # the arithmetic the backward ran in
        scale.close()


@pytest.mark.parametrize("spec", [NetworkSpec(widths=(16, 16)), NetworkSpec(widths=(8, 8, 8), activation="relu_p", power=3.0),
                                  NetworkSpec(family="cnn", in_shape=(2, 6, 6), widths=(4, 3), pooling="max"),
                                  NetworkSpec(family="linear", in_shape=(1,), widths=(6, 5, 8))])
@pytest.mark.parametrize("seed", range(4))
def test_scale_bounds_the_error_of_float32_euler_sums(spec, seed):
    """|<W_k, g_k>(float32) - <W_k, g_k>(float64)| <= gamma_K S + gamma_P sum|W_k * g_k| (the layer-balance
    checker's bound) on balanced labels, where the per-sample terms cancel."""
    model, X = network_and_batch(spec, seed, 16, "cpu", "float32")
    y = torch.where(torch.arange(16) % 2 == 0, 1.0, -1.0)
    scale = GradientScale(model)
    _logistic_backward(model, X, y)
    S, samples, roundoff = scale.take()
    assert roundoff == unit_roundoff(torch.float32)
    reference = [p.detach().double().clone().requires_grad_(True) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    out = torch.func.functional_call(model, dict(zip(names, reference)), (X.double(),))
    torch.nn.functional.softplus(-y.double() * out.reshape(-1)).sum().backward()
    K = 2 * sum(p[0].numel() for p in model.parameters()) + len(names) + samples
    for p, exact in zip(model.parameters(), reference):
        computed = float((p.detach() * p.grad).sum())
        error = abs(computed - float((exact.detach() * exact.grad).sum()))
        allowed = gamma(K, torch.float32) * S + gamma(p.numel(), torch.float32) * float((p.detach() * p.grad).abs().sum())
        assert error <= allowed, (error, allowed)


def test_scale_leaves_random_state_and_buffers_alone():
    """The absolute pass runs the model once more: dropout must not advance the user's generator, batch norm
    must not update its running statistics."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4, 1)).double()
    X, y = torch.randn(6, 3, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    scale = GradientScale(model)
    _logistic_backward(model, X, y)
    state, running = torch.get_rng_state(), model[1].running_mean.clone()
    S, _, _ = scale.take()
    assert math.isfinite(S) and torch.equal(torch.get_rng_state(), state) and torch.equal(model[1].running_mean, running)


def test_no_backward_pass_has_no_scale():
    model = nn.Sequential(nn.Linear(3, 1, bias=False))
    scale = GradientScale(model)
    with torch.no_grad():
        model(torch.randn(2, 3))
    assert np.isnan(scale.take()[0])
