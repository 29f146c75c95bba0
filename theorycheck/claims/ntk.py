"""Claim ``ntk``: at initialization the empirical neural tangent kernel of a bias-free ReLU MLP in the NTK
parameterization converges to the analytic kernel as the width grows, with fluctuations of order
width^{-1/2} (Jacot, Gabriel & Hongler, NeurIPS 2018, Thm 1; Arora et al., NeurIPS 2019, eqs. 3-5).

Network: h^1 = W^1 x / sqrt(d), h^{l+1} = W^{l+1} relu(h^l) / sqrt(n_l), f = h^{L+1}, all W ~ N(0, 1).
Analytic kernel (the arc-cosine formulas for relu, Cho & Saul 2009): Sigma^0 = x.x'/d;
Sigma^l = sqrt(s s') (sin t + (pi - t) cos t) / (2 pi), dSigma^l = (pi - t) / (2 pi), with t the angle of
Sigma^{l-1}; Theta^1 = Sigma^0, Theta^{l+1} = Sigma^l + Theta^l dSigma^l, Theta = Theta^{L+1}.
The empirical kernel is J J^T over all weights. Its relative error e_w = ||Theta_w - Theta||_F / ||Theta||_F
behaves as |Z| / sqrt(w) with Z of a width-free law, so log e_w against log w has slope -1/2: the checker
fits that slope over widths and seeds and decides with a Student-t interval.

The slope alone cannot see a limit kernel that is off by a few percent (its error hides under the
fluctuations), so the limit itself is tested too: the offset of each run along the limit,
s_w = <Theta_w - Theta, Theta> / ||Theta||^2, has mean c_1 / w + O(1/w^2) under the theorem (finite-width
corrections come in powers of 1/w) and variance ~ v / w; a weighted least-squares fit s = b_0 + b_1 / w (weights
w, widths >= 64 where two or more are given) estimates the offset of the limit b_0, which must be 0 within its
99.9% Student-t interval. A limit scaled by 1 + r gives b_0 = -r / (1 + r); the half-width, reported as the
smallest detectable relative offset, is ~ 3.3 sqrt(v / sum of widths) (v ~ 2.6 for one hidden layer, ~ 4.8 for
two, measured). A network without hidden layer (depth 0) has Theta_w = Theta = X X^T / d at every width: errors
at roundoff hold without a fit.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from scipy import stats

from ..core.devices import dtype_name, dtype_of, gamma
from ..core.errors import expect
from ..core.kit import Case, ClaimKit, comparison
from ..core.registry import case_seed
from ..core.threads import threads_for
from . import ntk_models

kit = ClaimKit(
    id="ntk",
    statement="The empirical NTK of a bias-free ReLU (or erf) MLP in NTK parameterization converges to the analytic "
              "arc-cosine (arcsin) NTK as width^{-1/2}: the fitted slope of log relative error against log width is -1/2.",
    source="Jacot, Gabriel & Hongler, NeurIPS 2018, Thm 1; Arora, Du, Hu, Li, Salakhutdinov & Wang, NeurIPS 2019, "
           "eqs. 3-5; Cho & Saul, NeurIPS 2009 (arc-cosine kernels); Williams, NeurIPS 1997 (the erf/arcsin kernel)",
    assumptions={"ntk_scaling": "NTK parameterization: every layer scaled by 1/sqrt(fan-in) of N(0, 1) weights",
                 "declared_network": "the model is the declared bias-free MLP (its parameters are its depth + 1 "
                                     "matrices, its outputs on X equal it at its own weights to rounding) with "
                                     "weights of mean 0 and variance 1 (99.9% intervals)"},
    tolerance="99.9% Student-t interval of the fitted slope must contain -1/2 and that of the limit's offset along "
              "Theta (weighted fit s = b_0 + b_1 / w) must contain 0 (false alarm <= 2e-3 per verdict); "
              "fewer than 3 widths or 2 seeds give no interval: inconclusive (a limit of the run, not of the "
              "theorem)")

CONFIDENCE = 0.999


def analytic_ntk(X: np.ndarray, depth: int, activation: str = "relu") -> np.ndarray:
    """Theta for ``depth`` hidden layers of ``activation`` ("relu": arc-cosine, Cho & Saul 2009; "erf": arcsin,
    Williams 1997) on the rows of X (float64), in the parameterization of :func:`mlp_output`."""
    expect(activation in DUAL_KERNELS, expected=f"activation in {sorted(DUAL_KERNELS)}", received=repr(activation),
           fix="activation='relu'")
    sigma = X @ X.T / X.shape[1]
    theta = sigma.copy()
    for _ in range(depth):
        sigma, derivative = DUAL_KERNELS[activation](sigma)
        theta = sigma + theta * derivative
    return theta


def relu_dual(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[relu(u) relu(v)], E[relu'(u) relu'(v)]) for (u, v) ~ N(0, sigma): sqrt(s s') (sin t + (pi - t) cos t)
    / (2 pi) and (pi - t) / (2 pi), t the angle (the cosine's denominator as sqrt(outer(diag, diag)), so the
    diagonal is exact)."""
    diag = np.sqrt(np.clip(np.diag(sigma), 0.0, None))
    norms = np.outer(diag, diag)
    cos = np.clip(np.divide(sigma, norms, out=np.ones_like(sigma), where=norms > 0), -1.0, 1.0)
    angle = np.arccos(cos)
    return norms * (np.sin(angle) + (math.pi - angle) * cos) / (2 * math.pi), (math.pi - angle) / (2 * math.pi)


def erf_dual(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[erf(u) erf(v)], E[erf'(u) erf'(v)]) for (u, v) ~ N(0, sigma), Williams 1997: with
    P = (1 + 2 s)(1 + 2 s'), (2 / pi) arcsin(2 sigma_12 / sqrt(P)) and (4 / pi) / sqrt(P - 4 sigma_12^2)."""
    diag = 1 + 2 * np.clip(np.diag(sigma), 0.0, None)
    product = np.outer(diag, diag)
    return ((2 / math.pi) * np.arcsin(np.clip(2 * sigma / np.sqrt(product), -1.0, 1.0)),
            (4 / math.pi) / np.sqrt(np.clip(product - 4 * sigma ** 2, np.finfo(np.float64).tiny, None)))


DUAL_KERNELS = {"relu": relu_dual, "erf": erf_dual}


def stacked_weights(d: int, width: int, depth: int, *, seeds, claim: str = "ntk",
                    dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """N(0, 1) weights of bias-free MLPs d -> width^depth -> 1, one per seed, side by side: layer k of shape
    (len(seeds), n_{k+1}, n_k), drawn straight into place. One stream per (claim, width, seed): the same stream
    at two widths would share units and correlate the residuals of a fit over widths."""
    sizes = [d] + [width] * depth + [1]
    layers = [torch.empty(len(seeds), sizes[k + 1], sizes[k], dtype=dtype) for k in range(len(sizes) - 1)]
    for index, seed in enumerate(seeds):
        generator = torch.Generator().manual_seed(case_seed(int(seed), claim, width))
        for W in layers:
            torch.randn(W.shape[1:], generator=generator, dtype=dtype, out=W[index])
    return [W.requires_grad_() for W in layers]


def init_weights(d: int, width: int, depth: int, *, seed: int, claim: str = "ntk",
                 dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    """The weights of one network of :func:`stacked_weights` (seed ``seed``), layer by layer."""
    return [W[0].detach().requires_grad_() for W in stacked_weights(d, width, depth, seeds=[seed], claim=claim,
                                                                     dtype=dtype)]


def _layers(X: torch.Tensor, weights: list[torch.Tensor], activation, output_scale: str):
    """(input a, pre-activation h, scale s) of each layer, h = a W^T / s (the forward pass of mlp_output)."""
    h, out = X, []
    for k, W in enumerate(weights):
        fan_in = W.shape[-1]
        scale = fan_in if (k == len(weights) - 1 and output_scale == "mean-field") else math.sqrt(fan_in)
        a = activation(h) if k else h
        h = a @ W.transpose(-1, -2) / scale
        out.append((a, h, scale))
    return out


def mlp_output(X: torch.Tensor, weights: list[torch.Tensor], *, activation=torch.relu,
               output_scale: str = "ntk") -> torch.Tensor:
    """h^1 = W^1 x / sqrt(d), h^{l+1} = W^{l+1} activation(h^l) / sqrt(n_l); ``output_scale="mean-field"``
    divides the output layer by its fan-in instead of its square root. Returns f, shape (n,); weights with
    leading batch dimensions (networks side by side) give f of shape (..., n)."""
    return _layers(X, weights, activation, output_scale)[-1][1][..., 0]


def kernel_at(X: torch.Tensor, weights: list[torch.Tensor], *, activation=torch.relu,
              output_scale: str = "ntk") -> torch.Tensor:
    """The empirical NTK J J^T at ``weights`` (J: the gradients of each output over all weights), without J:
    layer k's block of J for sample i is delta_k(x_i)^T a_k(x_i) / s_k (delta_k = df/dh_k), so
    Theta = sum_k (D_k D_k^T) * (A_k A_k^T) / s_k^2 (elementwise product). Sample i's output depends on
    its own row only, so one backward pass of sum_i f_i gives every D_k (n x width, not J's n x P)."""
    layers = _layers(X, weights, activation, output_scale)
    deltas = torch.autograd.grad(layers[-1][1].sum(), [h for _, h, _ in layers])
    return sum((D @ D.mT) * (a @ a.mT) / s**2 for D, (a, _, s) in zip(deltas, layers)).detach()


ACTIVATIONS = {"relu": torch.relu, "erf": torch.erf}


def empirical_ntk(X: torch.Tensor, width: int, depth: int, *, seeds, output_scale: str = "ntk",
                  activation: str = "relu") -> torch.Tensor:
    """J J^T of a relu (or erf) MLP at a fresh initialization per seed, independent for each (width, seed), the
    seeds' networks side by side: shape (len(seeds), n, n); ``output_scale="mean-field"`` divides the output by
    width instead of sqrt(width) (the control)."""
    weights = stacked_weights(X.shape[1], width, depth, seeds=seeds, dtype=X.dtype)
    with threads_for(sum(W.numel() for W in weights) * len(X), X.device):
        return kernel_at(X, weights, activation=ACTIVATIONS[activation], output_scale=output_scale)


@kit.checker(samples=("X",))
def check_ntk(X: torch.Tensor, *, widths=(16, 32, 64, 128, 256, 512, 1024), seeds=(0, 1, 2, 3, 4, 5),
              depth: int = 2, output_scale: str = "ntk", kernel=None, activation: str = "relu",
              resolution: float | None = None, model=None):
    """Fit log(relative error) = a + b log(width) over the widths x seeds, and the offset of the limit along
    Theta, <Theta_w - Theta, Theta> / ||Theta||^2 = b_0 + b_1 / w (weights w); holds when the 99.9% interval
    of b contains -1/2 and that of b_0 contains 0 (``details["detectable_offset"]``: the half-width, the smallest
    relative error of the limit this run can see). ``activation``: "relu" or "erf" (the network's);
    ``kernel(X, depth)`` is the limit compared with (default: the analytic NTK of that activation); ``depth`` counts the hidden layers (0: a linear network, whose kernel is the limit).
    ``resolution``: a relative error of the limit that a ``holds`` must have been able to see (e.g. 0.05); a run
    whose detectable offset is larger is ``inconclusive`` unless violated (None: not required).
    ``model``: your own network, a factory ``width -> nn.Module`` (built once per width and seed under a seed of
    its own): its kernels are J J^T over its parameters, and it is measured to be the declared network
    (:mod:`theorycheck.claims.ntk_models`; ``depth`` and ``activation`` declare it): vacuous if it is not."""
    expect(isinstance(X, torch.Tensor) and X.ndim == 2 and X.shape[0] >= 2, expected="X as an (n >= 2, d) tensor",
           received=f"{type(X).__name__} of shape {tuple(getattr(X, 'shape', ()))}", fix="a few input points as rows")
    expect(output_scale in ("ntk", "mean-field"), expected="output_scale 'ntk' or 'mean-field'",
           received=repr(output_scale), fix="output_scale='ntk'")
    expect(activation in ACTIVATIONS, expected=f"activation in {sorted(ACTIVATIONS)}", received=repr(activation),
           fix="activation='relu'")
    expect(resolution is None or resolution > 0, expected="resolution > 0 or None", received=repr(resolution),
           fix="resolution=0.05 (a limit off by 5 % must be visible) or None")
    enough = len(set(widths)) >= 3 and len(seeds) >= 2
    exact = (kernel or functools.partial(analytic_ntk, activation=activation))(X.detach().double().numpy(), depth)
    logs_w, logs_e, runs, declared = [], [], [], {"matches": True, "unit": True, "reason": ""}
    for width in widths:
        if model is None:
            kernels = empirical_ntk(X, int(width), depth, seeds=[int(s) for s in seeds], output_scale=output_scale,
                                    activation=activation)
        else:
            kernels, declared = _factory_kernels(model, X, int(width), [int(s) for s in seeds], depth, activation,
                                                 declared, tests=len(set(widths)))
        for emp in kernels.double().numpy():
            error = float(np.linalg.norm(emp - exact) / np.linalg.norm(exact))
            logs_w.append(math.log(width))
            logs_e.append(math.log(error) if error > 0 else -math.inf)
            runs.append((int(width), float(np.sum((emp - exact) * exact) / np.sum(exact * exact)), error))
    assumptions = {"ntk_scaling": output_scale == "ntk"}
    if model is not None:
        assumptions["declared_network"] = declared["matches"] and declared["unit"]
    common = dict(dtype=dtype_name(X.dtype))
    # rounding of J J^T: sums of d + depth x width products of factors each rounded depth + 1 times
    roundoff = gamma(X.shape[1] + depth * max(int(w) for w in widths) + 2 * (depth + 1), X.dtype)
    worst = max(error for _, _, error in runs) if runs else math.nan
    if np.isfinite(exact).all() and worst <= roundoff:  # no hidden layer: the kernel is the limit at every width
        return kit.decide(
            assumptions=assumptions, comparisons=[comparison(
                "max relative error over widths and seeds", worst, 0.0, roundoff,
                "gamma_{d + depth max width + 2 (depth + 1)}: the rounding of J J^T")],
            details={"widths": list(widths), "seeds": list(seeds), "depth": depth, "activation": activation},
            reason="the empirical kernel equals the limit at every width (to roundoff): nothing left to converge",
            **common)
    if not enough or not np.all(np.isfinite(logs_e)):
        return kit.decide(assumptions=assumptions, undecided=not enough, inconclusive=enough,
                          reason="; ".join(filter(None, [declared["reason"], "too few widths or seeds for an interval "
                                                         "(at least 3 widths and 2 seeds)" if not enough
                                                         else "non-finite kernel"])), **common)
    fit, half = slope_interval(logs_w, logs_e)
    offset, offset_half, used = limit_offset(runs)
    reasons = [declared["reason"]] if declared["reason"] else []
    if abs(fit.slope + 0.5) > half:
        reasons.append(f"slope {fit.slope:.3f} +- {half:.3f}: the error does not decay as width^-1/2")
    if abs(offset) > offset_half:
        reasons.append(f"the kernel tends to (1 + {offset:.4f} +- {offset_half:.4f}) x the given limit along it: "
                       "the limit is off")
    blind = resolution is not None and offset_half > resolution
    if blind:
        reasons.append(f"the run sees an error of the limit only above {offset_half:.3g} > resolution {resolution:g}: "
                       "more widths or seeds needed")
    largest = max(int(w) for w in widths)
    at_largest = [s for w, s, _ in runs if w == largest]
    return kit.decide(
        assumptions=assumptions, undecided=blind,
        comparisons=[comparison("|fitted slope + 1/2|", abs(fit.slope + 0.5), 0.0, half,
                                f"{CONFIDENCE:.1%} Student-t half-width of the slope over {len(logs_w)} runs"),
                     comparison("|offset of the limit along Theta|", abs(offset), 0.0, offset_half,
                                f"{CONFIDENCE:.1%} Student-t half-width of b_0 in the weighted fit "
                                f"<Theta_w - Theta, Theta> / ||Theta||^2 = b_0 + b_1 / w (weights w) over {used} runs "
                                "of widths >= 64")],
        details={"slope": fit.slope, "slope_stderr": fit.stderr, "interval": [fit.slope - half, fit.slope + half],
                 "limit_offset": offset, "limit_offset_interval": [offset - offset_half, offset + offset_half],
                 "detectable_offset": offset_half,
                 "mean_offset_at_largest_width": float(np.mean(at_largest)),
                 "widths": list(widths), "seeds": list(seeds), "depth": depth, "activation": activation,
                 "series": {"relative NTK error vs width": width_series(logs_w, logs_e, fit,
                                                                        "||Theta_w - Theta|| / ||Theta||")}},
        reason="; ".join(reasons), **common)


def _factory_kernels(factory, X: torch.Tensor, width: int, seeds: list[int], depth: int, activation: str,
                     declared: dict, tests: int) -> tuple[torch.Tensor, dict]:
    """The kernels of the user's models at one width (one per seed), and whether they (and those of the widths
    before, ``declared``) are the declared network."""
    models = [ntk_models.build(factory, width, seed, "ntk") for seed in seeds]
    Xm = X.to(next(models[0].parameters()).dtype)
    with threads_for(sum(p.numel() for p in models[0].parameters()) * len(X) * len(models), X.device):
        kernels = torch.stack([ntk_models.module_kernel(m, Xm) for m in models])
    if not (declared["matches"] and declared["unit"]):
        return kernels, declared
    match = ntk_models.declared_match(models, Xm, width, depth, ACTIVATIONS[activation], mlp_output)
    if not match["matches"]:
        return kernels, {"matches": False, "unit": True, "reason": f"width {width}: {match['reason']}"}
    unit = ntk_models.unit_variance(match["weights"], tests * (depth + 1))
    return kernels, {"matches": True, "unit": unit["unit"], "reason": unit["reason"]}


def limit_offset(runs: list[tuple[int, float, float]]) -> tuple[float, float, int]:
    """(b_0, its :data:`CONFIDENCE` Student-t half-width, runs used) of the weighted least-squares fit
    s = b_0 + b_1 / w with weights w (Var s ~ 1 / w) over runs (width, s, error), widths >= 64 where at least two
    distinct ones are given (below, the O(1/w^2) mean corrections are not negligible)."""
    wide = [run for run in runs if run[0] >= 64]
    chosen = wide if len({w for w, _, _ in wide}) >= 2 else runs
    w = np.array([run[0] for run in chosen], dtype=np.float64)
    s = np.array([run[1] for run in chosen])
    A = np.stack([np.ones_like(w), 1 / w], axis=1)
    root = np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A * root, s * root[:, 0], rcond=None)
    dof = len(w) - 2
    residual = float(np.sum(w * (s - A @ coef) ** 2)) / dof
    covariance = residual * np.linalg.inv((A * w[:, None]).T @ A)
    return float(coef[0]), float(stats.t.ppf(0.5 + CONFIDENCE / 2, dof) * math.sqrt(covariance[0, 0])), len(w)


assert_ntk = kit.assert_


def slope_interval(logs_w: list[float], logs_v: list[float]):
    """The least-squares fit of log v = c + b log width over every run and the half-width of b's
    :data:`CONFIDENCE` Student-t interval (n - 2 degrees of freedom)."""
    fit = stats.linregress(logs_w, logs_v)
    return fit, stats.t.ppf(0.5 + CONFIDENCE / 2, len(logs_w) - 2) * fit.stderr


def width_series(logs_w: list[float], logs_v: list[float], fit, ylabel: str) -> dict:
    """Log-log, for a report: the median over seeds per width, the fitted line and width^-1/2 through the
    first median."""
    widths = sorted(set(logs_w))
    medians = [float(np.median([v for w, v in zip(logs_w, logs_v) if w == u])) for u in widths]
    return {"x": [math.exp(v) for v in widths],
            "y": {"median over seeds": [math.exp(m) for m in medians],
                  f"fit, slope {fit.slope:.3f}": [math.exp(fit.intercept + fit.slope * v) for v in widths],
                  "slope -1/2": [math.exp(medians[0] - 0.5 * (v - widths[0])) for v in widths]},
            "xlabel": "width", "ylabel": ylabel, "xscale": "log", "yscale": "log"}


def _case(rng, dtype: str, **options) -> Case:
    n, d = int(rng.integers(2, 6)), int(rng.integers(2, 9))
    X = torch.as_tensor(rng.standard_normal((n, d)), dtype=dtype_of(dtype))
    seeds = tuple(int(s) for s in rng.integers(2**31, size=6))
    return Case(run=lambda: check_ntk(X, seeds=seeds, **options), size=n * d)


@kit.instances
def ntk_instances(rng, device, dtype):
    """2-5 Gaussian points in 2-8 dimensions, depth 1 or 2, widths 16..1024, 6 seeds."""
    return _case(rng, dtype, depth=int(rng.integers(1, 3)))


@kit.control("mean_field", expect="vacuous")
def mean_field(rng, device, dtype):
    """Output scaled by 1/width: the kernel tends to 0, not to Theta; the NTK scaling assumption is not met."""
    return _case(rng, dtype, depth=1, output_scale="mean-field")


@kit.control("one_width", expect="inconclusive")
def one_width(rng, device, dtype):
    """One width repeated: no slope can be fitted, so the run cannot decide (not an assumption of the theorem)."""
    return _case(rng, dtype, depth=1, widths=(128, 128, 128))


def _one_layer_too_many(X: np.ndarray, depth: int) -> np.ndarray:
    return analytic_ntk(X, depth + 1)


@kit.control("wrong_limit", expect="violated")
def wrong_limit(rng, device, dtype):
    """Compared with the kernel of a network one layer deeper: the error stops decaying (slope near 0)."""
    return _case(rng, dtype, depth=1, kernel=_one_layer_too_many)
