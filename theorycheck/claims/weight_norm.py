"""Claim ``weight_norm``: weight normalization follows the Lagrange-constrained gradient flow, and shares
its critical points with the unconstrained flow.

Bias-free network, positively 1-homogeneous in each layer, W_k = rho_k V_k with ||V_k||_F = 1,
rho = prod_k rho_k, so f(W; x) = rho f(V; x) (Euler: <V_k, G_k,n> = f(V; x_n), G_k,n = df(V; x_n)/dV_k).
Loss L = sum_n l(y_n f(x_n)), e_n = -l'(rho y_n f(V; x_n)), S_k = sum_n e_n y_n (G_k,n - V_k f(V; x_n)),
R = sum_n e_n y_n f(V; x_n). Exactly (Salimans & Kingma, NeurIPS 2016, eqs. 3-4 for the WN gradients;
Poggio, Banburski & Liao, Theory III (arXiv 1903.04991) Sec. 3 B.2 and Nat. Commun. 11:3371 (2020) for
the Lagrangian L + sum_k lambda_k ||V_k||^2 with lambda_k = rho R / 2; the algebra is in SEED-CLAIMS 4.2):
- weight normalization W_k = g_k v_k/||v_k|| at ||v_k|| = 1, g_k = rho_k: u_k' = rho S_k = V_k'(Lagrange),
  g_k' = (rho/rho_k) R = rho_k'(Lagrange) = <V_k, W_k'> (unconstrained);
- unconstrained flow W_k' = -dL/dW_k: V_k' = (rho/rho_k^2) S_k, so V_k'(Lagrange) = rho_k^2 V_k'(unconstrained):
  the same critical points (S_k = 0) but not the same trajectories (rho_k^2 differs between layers).
Not implied: WN with ||v_k|| != 1 (u_k' is divided by ||v_k||^2), or a scale W_k = g_k v_k without the
normalization (v_k' keeps a radial part).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from ..core.devices import dtype_of, gamma, unit_roundoff
from ..core.errors import expect
from ..core.modules import read_parameters
from ..engines.batch_behaviour import measure_batch_behaviour
from ..engines.homogeneity import measure_homogeneity, measurement_work
from ..core.kit import ClaimKit
from ..core.threads import one_thread_when_small
from ..core.inputs import as_batch
from ..core.verdict import Verdict

SOURCE = ("Salimans & Kingma, NeurIPS 2016, eqs. 3-4; Poggio, Banburski & Liao, Theory III (arXiv 1903.04991), "
          "Sec. 3 B.2; Poggio, Liao & Banburski, Nat. Commun. 11:3371 (2020)")
LOSSES = {"exp": (lambda q: torch.exp(-q), lambda q: torch.exp(-q)),  # l(q), -l'(q)
          "logistic": (lambda q: torch.nn.functional.softplus(-q), lambda q: torch.sigmoid(-q))}
PARAMETRIZATIONS = ("weight_norm", "scale")


def _dot_product_terms(weights) -> int:
    """K in gamma_K: the longest dot product (an Euler sum) plus the forward and backward passes."""
    fan_in_total = sum(w[0].numel() for w in weights.values())
    return max(w.numel() for w in weights.values()) + 2 * fan_in_total + 2 * len(weights)

def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def _ratio(residual: float, bound: float) -> float:
    return residual / bound if bound > 0 else (0.0 if residual == 0 else math.inf)


def sample_scales(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> torch.Tensor:
    """c_n = max(||x_n||, f_abs(x_n), max_k ||d f_abs(x_n) / dV_k||_F), f_abs the absolute network (every
    unit-norm weight |V_k|, input |x_n|): it bounds |f(V; x_n)| and ||G_k,n|| and the absolute sums behind
    their rounding for any layer (a convolution's patches overlap, so ||V_k||_op may exceed ||V_k||_F = 1);
    for matrices with ReLU-type activations it is ||x_n||."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    V_abs = {n: (params[n] / params[n].norm()).abs() for n in names}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def f_abs(Vs, xn):
        state = {n: b.clone() for n, b in buffers.items()}
        return functional_call(model, ({**params, **Vs}, state), (xn.unsqueeze(0),)).reshape(())

    try:
        grads, values = vmap(grad_and_value(f_abs), in_dims=(None, 0))(V_abs, x.abs())
    except (RuntimeError, ValueError, NotImplementedError):  # a module vmap cannot batch: one sample at a time
        pairs = [grad_and_value(f_abs)(V_abs, xn) for xn in x.abs()]
        grads = {n: torch.stack([g[n] for g, _ in pairs]) for n in names}
        values = torch.stack([v for _, v in pairs])
    scales = [x.reshape(len(x), -1).norm(dim=1), values.detach().abs()]
    scales += [g.detach().reshape(len(x), -1).norm(dim=1) for g in grads.values()]
    return torch.stack(scales).amax(0)


def flows(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, loss: str = "exp", v_norm: float = 1.0,
          parametrization: str = "weight_norm") -> dict:
    """Per weight layer (Linear, convolution or a custom module's weight, read with
    :func:`theorycheck.core.modules.read_parameters` on x), by autograd at the model's weights: the WN
    direction u_k' and g_k' (or, for ``scale``, v_k' and g_k' of W_k = g_k v_k), the Lagrange V_k' and rho_k',
    the unconstrained V_k' and rho_k' = <V_k, W_k'>, and the terms of the roundoff bound."""
    ell, slope = LOSSES[loss]
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = list(read_parameters(model, x).weights)

    def total(weights):
        return ell(y * functional_call(model, {**params, **weights}, (x,)).reshape(-1)).sum()

    rho_k = {n: params[n].norm() for n in names}
    V = {n: params[n] / rho_k[n] for n in names}
    rho = math.prod(float(r) for r in rho_k.values())
    W_dot = {n: -g for n, g in grad(total)({n: params[n] for n in names}).items()}
    g0, v0 = {n: rho_k[n] for n in names}, {n: v_norm * V[n] for n in names}
    if parametrization == "weight_norm":
        g_grad, v_grad = grad(lambda g, v: total({n: g[n] * v[n] / v[n].norm() for n in names}), argnums=(0, 1))(g0, v0)
        direction = {n: (-v_grad[n] - v0[n] / v0[n].norm() * _dot(v0[n] / v0[n].norm(), -v_grad[n])) / v0[n].norm()
                     for n in names}
    else:
        g_grad, v_grad = grad(lambda g, v: total({n: g[n] * v[n] for n in names}), argnums=(0, 1))(g0, v0)
        direction = {n: -v_grad[n] for n in names}
    with torch.no_grad():
        fV = functional_call(model, {**params, **V}, (x,)).reshape(-1)
        e = slope(rho * y * fV)
    lam = 0.5 * rho * float((e * y * fV).sum())
    V_grad = grad(lambda Vs: ell(rho * y * functional_call(model, {**params, **Vs}, (x,)).reshape(-1)).sum())(V)
    layers = {}
    for n in names:
        lagrange = -V_grad[n] - 2 * lam * V[n]
        layers[n] = {"rho_k": float(rho_k[n]), "direction": direction[n], "g_dot": -g_grad[n],
                     "lagrange": lagrange, "lagrange_rho_dot": rho / float(rho_k[n]) * (e * y * fV).sum(),
                     "unconstrained": (W_dot[n] - V[n] * _dot(V[n], W_dot[n])) / rho_k[n],
                     "unconstrained_rho_dot": _dot(V[n], W_dot[n])}
    return {"rho": rho, "layers": layers, "e": e, "f_V": fV}


kit = ClaimKit(
    id="weight_norm",
    statement="For a bias-free 1-homogeneous network with W_k = rho_k V_k, ||V_k|| = 1: weight normalization "
              "(||v_k|| = 1) has u_k' = V_k'(Lagrange) = rho S_k and g_k' = rho_k' = (rho/rho_k) R, and "
              "V_k'(Lagrange) = rho_k^2 V_k'(unconstrained): the same critical points, not the same trajectories.",
    source=SOURCE,
    assumptions={"deterministic": "a deterministic forward that leaves the module's buffers unchanged (no dropout "
                                  "or BatchNorm in training mode: call model.eval()), measured by two evaluations",
                 "no_bias": "no bias parameters",
                 "homogeneous": "f positively 1-homogeneous in each weight layer (measured on X: Euler's identity, "
                                "the scalings f(a W_k) = a f(W) and f(W) = rho f(V))"},
    tolerance="norm-wise roundoff 2 rho sum_n e_n |y_n| c_n 2(gamma_K + eps_n), c_n the absolute network's scale on x_n",
)


@kit.checker(samples=("X", "y"))
@one_thread_when_small(measurement_work)
def check_weight_norm(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "exp",
                      v_norm: float = 1.0, parametrization: str = "weight_norm", seed: int | None = None) -> Verdict:
    """Check WN == Lagrange (u_k' = V_k', g_k' = rho_k') and V_k'(Lagrange) = rho_k^2 V_k'(unconstrained) for every
    weight layer of a bias-free network at its current weights (rho_k = ||W_k||_F, read off): Linear,
    convolutions or a custom module's weights; 1-homogeneity in each layer is measured on X.
    ``v_norm``: ||v_k|| of the WN parameters (the claim needs 1); ``parametrization="scale"``: W_k = g_k v_k
    without normalization (a control: not the constrained flow)."""
    x = as_batch(X, model)
    expect(isinstance(y, torch.Tensor) and y.shape == (x.shape[0],), expected=f"y of shape ({x.shape[0]},)",
           received=f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}", fix="one label per sample")
    expect(loss in LOSSES, expected=f"loss in {sorted(LOSSES)}", received=repr(loss), fix="loss='exp'")
    expect(parametrization in PARAMETRIZATIONS, expected=f"parametrization in {PARAMETRIZATIONS}",
           received=repr(parametrization), fix="parametrization='weight_norm'")
    expect(v_norm > 0, expected="v_norm > 0", received=repr(v_norm), fix="v_norm=1.0")
    found = read_parameters(model, x)
    expect(bool(found.weights), expected="a network with weight layers (f = 0 when a layer's weight is 0)",
           received=f"parameters {found.roles}", fix="pass the network whose layers are weight-normalized")
    y = y.detach().to(x.dtype)
    behaviour = measure_batch_behaviour(model, x)
    if behaviour.random or behaviour.mutates_buffers:  # the flows of one evaluation are not defined
        return kit.decide(assumptions={"deterministic": False}, details={"batch_behaviour": dataclasses.asdict(behaviour)},
                          reason=behaviour.reason())
    K = _dot_product_terms(found.weights) + x.shape[0] + 8  # + the sum over samples and the normalizations
    result = flows(model, x, y, loss=loss, v_norm=v_norm, parametrization=parametrization)
    rho, e = result["rho"], result["e"]
    norms = sample_scales(model, x, list(found.weights))
    u, g = unit_roundoff(x.dtype), gamma(K, x.dtype)
    # per sample: |e_n y_n| ||x_n|| (2 gamma_K + 2 eps_n), eps_n = 2u + rho gamma_K |y_n| ||x_n|| the exponent's error
    weight = float((e * y.abs() * norms * 2 * (g + 2 * u + rho * g * y.abs() * norms)).sum())
    tol_direction = 2 * rho * weight
    rows, ratios = {}, []
    finite = all(bool(torch.isfinite(t).all()) for layer in result["layers"].values()
                 for t in layer.values() if isinstance(t, torch.Tensor)) and math.isfinite(weight)
    for name, layer in result["layers"].items():
        tol_radial = tol_direction / layer["rho_k"]
        rk2 = layer["rho_k"] ** 2
        row = {"rho_k": layer["rho_k"],
               "wn_vs_lagrange": float((layer["direction"] - layer["lagrange"]).norm()),
               "g_dot_vs_rho_dot": max(float((layer["g_dot"] - layer["lagrange_rho_dot"]).abs()),
                                       float((layer["g_dot"] - layer["unconstrained_rho_dot"]).abs())),
               "lagrange_vs_rho_k2_unconstrained": float((layer["lagrange"] - rk2 * layer["unconstrained"]).norm()),
               "norm_ratio_lagrange_unconstrained": float(layer["lagrange"].norm() / layer["unconstrained"].norm())
               if float(layer["unconstrained"].norm()) > 0 else math.nan,
               "lagrange_norm": float(layer["lagrange"].norm()),
               "tolerance_direction": tol_direction, "tolerance_radial": tol_radial}
        rows[name] = row
        ratios += [_ratio(row["wn_vs_lagrange"], tol_direction), _ratio(row["g_dot_vs_rho_dot"], tol_radial),
                   _ratio(row["lagrange_vs_rho_k2_unconstrained"], tol_direction)]
    statistic = max(ratios)
    unlabelled = not bool((y != 0).any())  # every flow is exactly 0: the identities hold as 0 = 0
    silent = not bool((result["f_V"] != 0).any()) or (tol_direction == 0.0 and not unlabelled)
    layer_count = len(found.weights) + len(found.frozen_weights)  # one degree per weight layer, frozen ones too
    homogeneity = measure_homogeneity(model, x, degrees=[1.0] * layer_count)
    assumptions = {"deterministic": True, "no_bias": not found.others, "homogeneous": homogeneity.identities_hold}
    coupled, reasons = behaviour.coupling(not statistic > 1)  # NaN: not a gap beyond the bound
    if unlabelled:
        reasons.append("every label is 0: every flow is exactly 0, the identities hold as 0 = 0")
    if found.others:
        reasons.append(f"bias/non-weight parameters {sorted(found.others)}: f(W) != rho f(V), Euler fails")
    if homogeneity.identities_hold is not True:
        reasons.append(f"on X: {homogeneity.summary()}")
    if statistic > 1 and all(held is True for held in assumptions.values()):
        worst = max(rows, key=lambda n: _ratio(rows[n]["wn_vs_lagrange"], tol_direction))
        reasons.append(f"the flows differ beyond roundoff (ratio {statistic:.3g}); layer {worst}: WN vs Lagrange "
                       f"{rows[worst]['wn_vs_lagrange']:.3g}, allowed {tol_direction:.3g}"
                       + (f" (||v_k|| = {v_norm:g}: u' is Lagrange V' / ||v||^2)" if v_norm != 1 else "")
                       + (" (W = g v without normalization keeps a radial part)" if parametrization == "scale" else ""))
    if not finite:
        reasons.append("non-finite gradients (overflow)")
    if finite and silent:
        reasons.append("f(V) = 0 on every sample, or every e_n y_n is 0 (underflow, zero labels): nothing to test")
    return kit.decide(
        assumptions=assumptions, conclusion_held=statistic <= 1, inconclusive=not finite or silent, undecided=coupled,
        statistic=statistic, bound=0.0, tolerance=1.0,
        tolerance_basis=(f"statistic: the largest ratio of a difference to its roundoff bound; directions 2 rho sum_n "
                         f"e_n |y_n| c_n 2(gamma_K + eps_n), K = {K} (Higham, with c_n = max(||x_n||, f_abs(x_n), "
                         "||d f_abs(x_n)/dV_k||) bounding ||G_k,n||, |f(V; x_n)| and their absolute sums, f_abs the network "
                         "with |V_k| on |x_n|; c_n = ||x_n|| for matrices since ||V_j||_2 <= ||V_j||_F = 1 and |a'| <= 1; "
                         "eps_n = 2u + rho gamma_K |y_n| c_n, the error of e_n through the exponent), divided by rho_k for "
                         "g_k' and rho_k'"),
        details={"rho": rho, "layers": rows, "batch_behaviour": dataclasses.asdict(behaviour), "loss": loss, "v_norm": v_norm, "parametrization": parametrization,
                 "lambda_k": 0.5 * rho * float((e * y * result["f_V"]).sum()),
                 "critical_points": "V_k'(Lagrange) = rho_k^2 V_k'(unconstrained) with rho_k^2 > 0: the same zero set"},
        reason="; ".join(reasons))


assert_weight_norm = kit.assert_


# --- audit cases ---------------------------------------------------------------------------------

CONTROLS = {"v-norm-3": "violated", "scale-without-constraint": "violated", "bias": "vacuous", "tanh": "vacuous"}


@dataclasses.dataclass(frozen=True)
class WeightNormCase:
    """A bias-free MLP with layer norms rho_k and data; rebuilt from these fields alone."""

    widths: tuple = (3, 5, 1)
    rhos: tuple = (1.5, 0.7)
    n: int = 8
    activation: str = "relu"
    loss: str = "exp"
    seed: int = 0
    control: str | None = None
    claim: str = "weight_norm"

    def model(self, device, dtype) -> torch.nn.Module:
        torch.manual_seed(self.seed)
        layers = []
        for i, (a, b) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            layers.append(torch.nn.Linear(a, b, bias=self.control == "bias"))
            if i < len(self.widths) - 2:
                layers.append(torch.nn.Tanh() if self.control == "tanh" else
                              torch.nn.LeakyReLU(0.2) if self.activation == "leaky_relu" else torch.nn.ReLU())
        model = torch.nn.Sequential(*layers).to(device, dtype_of(dtype))
        with torch.no_grad():
            for layer, rho in zip([m for m in model if isinstance(m, torch.nn.Linear)], self.rhos):
                layer.weight.mul_(rho / layer.weight.norm())
        return model

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        model = self.model(device, dtype)
        gen = torch.Generator().manual_seed(self.seed)
        X = torch.randn(self.n, self.widths[0], generator=gen, dtype=torch.float64)
        y = torch.randint(0, 2, (self.n,), generator=gen).to(torch.float64) * 2 - 1
        X, y = X.to(device, dtype_of(dtype)), y.to(device, dtype_of(dtype))
        if self.control == "scale-without-constraint":
            # its violation is the radial part of v', proportional to R = sum_n e_n y_n f(V; x_n): labels that
            # agree with the network's signs keep R from cancelling below the dtype's resolution
            with torch.no_grad():
                y = torch.where(model(X).reshape(-1) >= 0, 1.0, -1.0).to(y)
        return check_weight_norm(model, X, y, loss=self.loss, seed=self.seed,
                                 v_norm=3.0 if self.control == "v-norm-3" else 1.0,
                                 parametrization="scale" if self.control == "scale-without-constraint" else "weight_norm")


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> WeightNormCase:
    """Depth 2-3, widths 2-8, rho_k in [0.5, 2] (so rho_k^2 != 1 is visible), 2-16 samples, exp or logistic."""
    depth = int(rng.integers(2, 4))
    widths = tuple(int(w) for w in rng.integers(2, 9, size=depth)) + (1,)
    return WeightNormCase(widths=widths, rhos=tuple(float(r) for r in rng.uniform(0.5, 2.0, size=depth)),
                          n=int(rng.integers(2, 17)), activation=("relu", "leaky_relu")[int(rng.integers(2))],
                          loss=("exp", "logistic")[int(rng.integers(2))], seed=int(rng.integers(2**31)),
                          control=control)


kit.dataclass_cases(random_case, CONTROLS)
