"""The user's own networks in the NTK claims: a factory ``width -> nn.Module``, built once per (width, seed), its
empirical NTK J J^T by autograd over all its trainable parameters, and the measurement that it is the network
the analytic limit is for.

The analytic limit (arc-cosine / arcsin recursion) is that of a bias-free MLP d -> width^depth -> 1,
h^{l+1} = W^{l+1} phi(h^l) / sqrt(n_l), W i.i.d. of mean 0 and variance 1. A model is measured to be it: its
parameters are depth + 1 matrices of those shapes, its outputs on X equal that network's at the same weights
(within the forward rounding bound), and each layer's entries have mean 0 and variance 1 within a 99.9 %
interval (union over layers and widths). A model that is not is outside the analytic limit (vacuous), whatever
its kernel does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from ..core.devices import gamma
from ..core.errors import expect
from ..core.registry import case_seed

ALPHA = 1e-3


def build(factory: Callable[[int], torch.nn.Module], width: int, seed: int, claim: str) -> torch.nn.Module:
    """``factory(width)`` under the torch seed of (seed, claim, width), the caller's RNG state restored."""
    with torch.random.fork_rng():
        torch.manual_seed(case_seed(int(seed), claim, int(width)))
        model = factory(int(width))
    expect(isinstance(model, torch.nn.Module), expected="factory(width) returning a torch.nn.Module",
           received=type(model).__name__, fix="lambda width: MyNet(width)")
    return model


def outputs(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """model(X) as a vector of one output per row (a scalar-output network)."""
    f = model(X)
    expect(isinstance(f, torch.Tensor) and f.numel() == len(X), expected=f"one output per row of X ({len(X)})",
           received=f"{type(f).__name__} of shape {tuple(getattr(f, 'shape', ()))}",
           fix="a scalar-output network: the last layer of width 1")
    return f.reshape(-1)


def module_kernel(model: torch.nn.Module, X: torch.Tensor) -> torch.Tensor:
    """J J^T over the model's trainable parameters (J: n x P, one backward pass per output)."""
    params = [p for p in model.parameters() if p.requires_grad]
    f = outputs(model, X)
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(f[i], params, retain_graph=i < len(f) - 1)])
            for i in range(len(f))]
    J = torch.stack(rows)
    return (J @ J.T).detach()


def declared_shapes(d: int, width: int, depth: int) -> list[tuple[int, int]]:
    sizes = [d] + [width] * depth + [1]
    return [(sizes[k + 1], sizes[k]) for k in range(depth + 1)]


def declared_match(models: list[torch.nn.Module], X: torch.Tensor, width: int, depth: int, activation,
                   forward: Callable) -> dict:
    """Whether the models of one width are the declared network: {"matches": bool, "reason": str}. ``forward(X,
    weights, activation=...)`` is the declared network at given weights."""
    shapes = declared_shapes(X.shape[1], width, depth)
    layers = []
    for model in models:
        params = list(model.parameters())
        if [tuple(p.shape) for p in params] != shapes:
            return {"matches": False, "reason": f"parameters of shapes {[tuple(p.shape) for p in params]}, not the "
                                                f"bias-free MLP's {shapes}"}
        weights = [p.detach() for p in params]
        with torch.no_grad():
            theirs, ours = outputs(model, X), forward(X, weights, activation=activation)
            # forward error of depth + 1 products of fan-in <= max(d, width) terms and depth activations: gamma_K
            # of |W|...|X| with |phi(h)| <= 1.2 |h| (relu: |h|, erf: 2/sqrt(pi) |h|)
            scale = forward(X.abs(), [W.abs() for W in weights], activation=lambda h: 1.2 * h)
        bound = gamma(X.shape[1] + depth * width + 2 * (depth + 1), X.dtype) * scale
        if not bool(((theirs - ours).abs() <= bound).all()):
            worst = float(((theirs - ours).abs() - bound).max())
            return {"matches": False, "reason": f"outputs differ from the declared bias-free MLP at the model's own "
                                                f"weights by {worst:.3g} over the rounding bound (another activation, "
                                                "scaling or layer?)"}
        layers.append(weights)
    return {"matches": True, "reason": "", "weights": layers}


def unit_variance(weights: list[list[torch.Tensor]], tests: int) -> dict:
    """Each layer's entries pooled over the models: |mean| <= z s / sqrt(k) and |s^2 - 1| <= z sqrt((kappa - 1) / k),
    the standard error of s^2 at variance 1 (kappa = m4 / s^4 the sample kurtosis, scale-free: the plug-in
    sqrt(m4 - s^4) shrinks with s and raised false alarms, measured), z at 1 - ALPHA / (4 tests) two-sided per check
    (normal approximations, a union over the 2 x ``tests`` checks)."""
    z = stats.norm.ppf(1 - ALPHA / (4 * tests))
    for index in range(len(weights[0])):
        entries = torch.cat([w[index].reshape(-1) for w in weights]).double().cpu().numpy()
        k, mean, var = entries.size, float(entries.mean()), float(entries.var())
        m4 = float(np.mean((entries - mean) ** 4))
        kurtosis = m4 / var ** 2 if var > 0 else math.inf
        if abs(mean) > z * math.sqrt(var / k) or not abs(var - 1) <= z * math.sqrt(max(kurtosis - 1, 0.0) / k):
            return {"unit": False, "reason": f"layer {index + 1}'s weights have mean {mean:.3g} and variance {var:.4g} "
                                             f"over {k} entries: not mean 0, variance 1 (z = {z:.3g})"}
    return {"unit": True, "reason": ""}
