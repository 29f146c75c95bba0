"""Per-sample losses of a model output and the constants L (Lipschitz), beta (smoothness) and gamma
(strong convexity) of f(w; z) that the SGD stability claims need (Hardt, Recht & Singer, ICML 2016):
closed forms for bias-free linear models (:func:`linear_loss_constants`) and one-hidden-layer tanh
networks under the sigmoid loss (:func:`tanh_network_constants`), or declared by the caller
(:class:`LossConstants`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .coupled import CoupledRun
from ..core.errors import expect


@dataclasses.dataclass(frozen=True)
class LossConstants:
    """Constants of the per-sample objective f(w; z) on the domain the run visits, and how they were
    obtained (``basis``). ``loss_range`` = (lo, hi) when f is bounded."""

    lipschitz: float
    smoothness: float
    strong_convexity: float = 0.0
    convex: bool = False
    loss_range: tuple[float, float] | None = None
    basis: str = "declared by the caller"

    def __post_init__(self):
        expect(self.lipschitz >= 0 and self.smoothness >= 0 and self.strong_convexity >= 0,
               expected="non-negative L, beta, gamma (math.inf when unbounded)",
               received=f"L={self.lipschitz}, beta={self.smoothness}, gamma={self.strong_convexity}",
               fix="pass the constants of the per-sample loss on the parameter domain")


# --- per-sample losses of a model output and closed-form constants for linear models --------------

def logistic_loss(output, y):
    """log(1 + exp(-y f)), labels +-1."""
    return F.softplus(-y * output.reshape(y.shape))


def squared_hinge_loss(output, y):
    """max(0, 1 - y f)^2, labels +-1."""
    return torch.relu(1 - y * output.reshape(y.shape)) ** 2


def huber_loss(output, y):
    """Huber loss of the residual f - y with threshold 1."""
    return F.huber_loss(output.reshape(y.shape), y, reduction="none", delta=1.0)


def squared_loss(output, y):
    """(f - y)^2 / 2: convex and smooth, but not Lipschitz on an unbounded domain."""
    return 0.5 * (output.reshape(y.shape) - y) ** 2


def sigmoid_loss(output, y):
    """sigmoid(-y f) in (0, 1): bounded, smooth, non-convex in f's parameters; labels +-1."""
    return torch.sigmoid(-y * output.reshape(y.shape))


# name: (loss, margin-based, sup |l'| on |u| <= s (s = R ||x|| bound on |<w, x>|; y = target), sup l'')
LINEAR_LOSSES: dict[str, tuple[Callable, bool, Callable[[float, float], float], float]] = {
    "logistic": (logistic_loss, True, lambda s, y: 1.0, 0.25),
    "squared_hinge": (squared_hinge_loss, True, lambda s, y: 2.0 * (1.0 + s), 2.0),
    "huber": (huber_loss, False, lambda s, y: 1.0, 1.0),
    "squared": (squared_loss, False, lambda s, y: s + y, 1.0),
}


def linear_closed_form(kind: str, *, x_max: float, y_max: float, weight_decay: float, radius: float | None,
                      init_norm: float, max_step: float) -> LossConstants:
    """The closed forms of :func:`linear_loss_constants` from the few numbers they depend on."""
    _, _, slope, curvature = LINEAR_LOSSES[kind]
    lam = weight_decay
    loss_l = slope(0.0, y_max) * x_max if kind in ("logistic", "huber") else math.inf  # globally Lipschitz ones
    if radius is not None:
        domain = f"projection radius R = {radius:g}"
    elif lam > 0 and math.isfinite(loss_l) and max_step * lam <= 1:
        # w <- (1 - alpha lambda) w - alpha grad l cannot leave ||w|| <= max(||w_0||, L_l / lambda)
        radius = max(init_norm, loss_l / lam)
        domain = f"iterates stay in ||w|| <= max(||w_0||, L_loss/lambda) = {radius:.4g} (alpha lambda <= 1)"
    else:
        radius, domain = math.inf, "unbounded parameter domain (no projection radius)"
    if lam == 0 and math.isfinite(loss_l):
        sup_slope, lipschitz = slope(0.0, y_max), loss_l
    else:
        sup_slope = slope(radius * x_max, y_max) if math.isfinite(radius) else math.inf
        lipschitz = sup_slope * x_max + (lam * radius if lam else 0.0)
    return LossConstants(
        lipschitz=lipschitz, smoothness=curvature * x_max ** 2 + lam, strong_convexity=lam, convex=True,
        basis=(f"{kind} loss of <w, x>: max||x|| = {x_max:.4g}, sup|l'| = {sup_slope:.4g}, sup l'' = {curvature:g}; "
               f"L = sup|l'| max||x|| + lambda R, beta = sup l'' max||x||^2 + lambda, gamma = lambda = {lam:g}; {domain}"))


def linear_loss_constants(kind: str, run: CoupledRun) -> LossConstants:
    """Closed-form L, beta, gamma of f(w; z) = l(<w, x>, y) + lambda/2 ||w||^2 for a bias-free linear
    model, over every input the run used (training, replacement, probes): with X = max ||x||,
    L = sup|l'| X + lambda R, beta = sup l'' X^2 + lambda, gamma = lambda, R a radius holding every
    iterate (the projection radius, or max(||w_0||, L_l/lambda) under weight decay)."""
    expect(kind in LINEAR_LOSSES, expected=f"kind in {sorted(LINEAR_LOSSES)}", received=repr(kind),
           fix="choose one of those losses, or declare LossConstants(...) for your own")
    expect(run.param_count == run.input_dim, expected=f"a bias-free linear model (one parameter per input "
           f"feature, {run.input_dim})", received=f"{run.param_count} parameters",
           fix="closed forms are for f(x) = <w, x>; declare LossConstants(...) for other models")
    if LINEAR_LOSSES[kind][1]:
        expect(bool((run.targets.abs() == 1).all()), expected="labels +-1 for a margin loss",
               received=f"targets in [{float(run.targets.min()):g}, {float(run.targets.max()):g}]",
               fix="map the two classes to -1 and +1")
    return linear_closed_form(kind, x_max=max_input_norm(run.inputs), y_max=float(run.targets.abs().max()),
                             weight_decay=run.weight_decay, radius=run.radius,
                             init_norm=float(run.param_norm[0, 0, 0]), max_step=float(run.step_sizes.max()))


def max_input_norm(inputs: torch.Tensor) -> float:
    return float(inputs.reshape(inputs.shape[0], -1).norm(dim=1).max())


def tanh_closed_form(x_max: float, radius: float, weight_decay: float) -> LossConstants:
    R, lam = radius, weight_decay
    s1, s2, t2 = 0.25, 1 / (6 * math.sqrt(3)), 4 / (3 * math.sqrt(3))
    return LossConstants(
        lipschitz=s1 * R * x_max + lam * R, smoothness=s2 * (R * x_max) ** 2 + s1 * (x_max + t2 * R * x_max ** 2) + lam,
        loss_range=(0.0, 1.0 + 0.5 * lam * R ** 2),
        basis=f"sigmoid loss of a tanh network on ||theta|| <= R = {R:g}, max||x|| = {x_max:.4g}, lambda = {lam:g}: "
              "L = R X/4 + lambda R, beta = (R X)^2/(6 sqrt 3) + (X + 4 R X^2/(3 sqrt 3))/4 + lambda")


def tanh_network_constants(model: torch.nn.Module, run: CoupledRun) -> LossConstants:
    """Closed-form L, beta of sigmoid(-y g(x)), g(x) = a . tanh(W x) (bias-free, one hidden layer), on
    the projection ball ||theta|| <= R: ||grad g|| <= R ||x|| and ||hess g|| <= ||x|| + t2 R ||x||^2
    (block-diagonal per hidden unit; t2 = max|tanh''| = 4/(3 sqrt 3)); with s1 = max|sigmoid'| = 1/4,
    s2 = max|sigmoid''| = 1/(6 sqrt 3): L = s1 R X, beta = s2 R^2 X^2 + s1 (X + t2 R X^2) (+ lambda)."""
    layers = list(model.children()) if isinstance(model, torch.nn.Sequential) else []
    shape_ok = (len(layers) == 3 and isinstance(layers[0], torch.nn.Linear) and isinstance(layers[1], torch.nn.Tanh)
                and isinstance(layers[2], torch.nn.Linear) and layers[0].bias is None and layers[2].bias is None
                and layers[2].out_features == 1)
    expect(shape_ok, expected="Sequential(Linear(d, m, bias=False), Tanh(), Linear(m, 1, bias=False))",
           received=" -> ".join(type(m).__name__ for m in layers) or type(model).__name__,
           fix="declare LossConstants(...) for other architectures")
    expect(run.radius is not None and float(run.param_norm[0, 0, 0]) <= run.radius,
           expected="a projected run (radius=R) starting inside the ball ||theta|| <= R",
           received=f"radius={run.radius}, ||theta_0|| = {float(run.param_norm[0, 0, 0]):.4g}",
           fix="pass radius= to coupled_sgd and start from parameters of norm <= R")
    return tanh_closed_form(max_input_norm(run.inputs), run.radius, run.weight_decay)

