"""Claims ``sgd_stability_convex``, ``sgd_stability_strongly_convex``, ``sgd_stability_nonconvex``:
SGD is uniformly stable (Hardt, Recht & Singer, "Train faster, generalize better", ICML 2016).

Two runs of SGD on S and S' (one example changed), same indices, same start (:func:`coupled_sgd`).
Growth recursion (HRS Lemma 2.5): on a step that samples the changed example,
delta_{t+1} <= min(eta_t, 1) delta_t + 2 alpha_t L (alpha_t L when it is removed and that run skips
the step); on any other step delta_{t+1} <= eta_t delta_t, with the expansivity eta_t of a gradient step
(HRS Lemma 3.6): 1 + alpha beta (beta-smooth), 1 (convex, alpha <= 2/beta), 1 - alpha gamma
(gamma-strongly convex, alpha <= 2/(beta + gamma); the contraction factor of a gradient step on
(h + gamma/2 ||.||^2), h convex (beta - gamma)-smooth; HRS state the weaker 1 - alpha beta gamma/(beta+gamma)).
Unrolled, it is a deterministic bound on ||w_t - w'_t|| for every index sequence, checked on every run
at every step. Its expectation over uniform indices gives the theorems, checked by Monte Carlo over
index sequences on sup_z E|f(w_T; z) - f(w'_T; z)| (z over the probe points):
- convex (HRS Thm 3.8): <= (2 L^2 / n) sum_t alpha_t;
- gamma-strongly convex (HRS Thm 3.9): <= 2 L^2 / (gamma n);
- non-convex, f in [0, 1], alpha_t <= c/t non-increasing (HRS Thm 3.12):
  <= (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)}.
L, beta, gamma come from :class:`LossConstants`: closed forms for linear models
(:func:`linear_loss_constants`) and one-hidden-layer tanh networks (:func:`tanh_network_constants`),
or declared by the caller; either way the run is checked against them (gradient norms <= L, secant
smoothness <= beta, secant monotonicity >= gamma on the steps where both runs use the same example).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from ..coupled import CoupledRun, coupled_sgd
from ..devices import dtype_of, gamma
from ..errors import expect
from ..registry import AuditCase, Claim, register
from ..verdict import Verdict, require_holds

HRS = "Hardt, Recht & Singer, ICML 2016 (arXiv:1509.01240)"
ASSUME_LIPSCHITZ = "f(.; z) L-Lipschitz with finite L"
ASSUME_SMOOTH = "f(.; z) beta-smooth with finite beta"
ASSUME_GRADIENTS = "observed per-sample gradient norms <= L"
ASSUME_SECANT = "observed secant smoothness ||g - g'|| <= beta ||w - w'||"
ASSUME_CONVEX = "f(.; z) convex (declared; observed <g - g', w - w'> >= 0)"
ASSUME_STRONG = "f(.; z) gamma-strongly convex, gamma > 0 (declared; observed <g - g', w - w'> >= gamma ||w - w'||^2)"
ASSUME_STEP_CONVEX = "step sizes alpha_t <= 2/beta"
ASSUME_STEP_STRONG = "step sizes alpha_t <= 2/(beta + gamma)"
ASSUME_STEP_DECAY = "step sizes non-increasing (alpha_t <= c/t, c = max_t t alpha_t)"
ASSUME_RANGE = "loss values in [0, 1] (declared range and every value seen)"
MIN_RUNS = 30  # below this the Student-t interval on the Monte Carlo mean is not used
SERIES_POINTS = 100


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


def _linear_constants(kind: str, *, x_max: float, y_max: float, weight_decay: float, radius: float | None,
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
    return _linear_constants(kind, x_max=_input_norm(run.inputs), y_max=float(run.targets.abs().max()),
                             weight_decay=run.weight_decay, radius=run.radius,
                             init_norm=float(run.param_norm[0, 0, 0]), max_step=float(run.step_sizes.max()))


def _input_norm(inputs: torch.Tensor) -> float:
    return float(inputs.reshape(inputs.shape[0], -1).norm(dim=1).max())


def _tanh_constants(x_max: float, radius: float, weight_decay: float) -> LossConstants:
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
    return _tanh_constants(_input_norm(run.inputs), run.radius, run.weight_decay)


# --- the growth recursion and the Monte Carlo interval --------------------------------------------

def _recursion(run: CoupledRun, eta: np.ndarray, increment: np.ndarray, hit_increment: np.ndarray) -> np.ndarray:
    """B_0 = 0; B_{t+1} = eta_t B_t + increment_t (other steps) or min(eta_t, 1) B_t + hit_increment_t
    (steps that sample the changed example). Arrays shaped (runs, steps); returns (runs, steps + 1)."""
    out = np.zeros((run.runs, run.steps + 1))
    for t in range(run.steps):
        hit = run.hits[:, t]
        grown = np.where(out[:, t] > 0, eta[:, t] * out[:, t], 0.0)  # eta = inf (beta = inf) times 0 stays 0
        out[:, t + 1] = np.where(hit, np.minimum(eta[:, t], 1.0) * out[:, t] + hit_increment[:, t],
                                 grown + increment[:, t])
    return out


def _roundoff_per_step(run: CoupledRun, beta: float) -> np.ndarray:
    """Rounding of one coupled step (both runs): gamma_K [(1 + alpha beta)(||w|| + ||w'||) + alpha(||g|| + ||g'||)],
    K = parameters + input features + 10 (the dot products of the forward/backward pass and the update;
    a gradient computed from a rounded forward pass is the exact gradient at a point gamma_K ||w|| away)."""
    g = gamma(run.param_count + run.input_dim + 10, dtype_of(run.dtype))
    alpha = run.step_sizes[None, :]
    w = run.param_norm[:, :-1].sum(-1)
    return g * ((1 + alpha * beta) * w + alpha * run.grad_norm.sum(-1))


def mean_interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Student-t half-width per column of ``values`` (runs x points), Bonferroni-corrected over
    the columns: a two-sided interval at ``confidence`` holding for every column at once."""
    runs, columns = values.shape
    level = 1 - (1 - confidence) / (2 * columns)
    half = stats.t.ppf(level, runs - 1) * values.std(axis=0, ddof=1) / math.sqrt(runs)
    return values.mean(axis=0), half


def _series(a: np.ndarray) -> tuple[list[int], list[float]]:
    index = np.unique(np.linspace(0, len(a) - 1, min(len(a), SERIES_POINTS)).astype(int))
    return index.tolist(), a[index].tolist()


def _validate(run, constants, confidence) -> None:
    expect(isinstance(run, CoupledRun), expected="a CoupledRun from tc.coupled_sgd(...)",
           received=type(run).__name__, fix="run = tc.coupled_sgd(model, loss, X, y, ...)")
    expect(isinstance(constants, LossConstants), expected="LossConstants", received=type(constants).__name__,
           fix="tc.linear_loss_constants(kind, run) or tc.LossConstants(lipschitz=..., smoothness=...)")
    expect(0 < confidence < 1, expected="0 < confidence < 1", received=repr(confidence), fix="e.g. 0.95")


def _check_sgd(claim: str, run: CoupledRun, constants: LossConstants, *, eta: np.ndarray,
               assumptions: dict[str, bool], expectation: tuple[float, str] | None, confidence: float,
               reasons: list[str], extra: dict | None = None) -> Verdict:
    """Pathwise growth-recursion bound on every run and step, plus the Monte Carlo expectation bound
    (numpy overflow of a divergent run is expected: it is reported inconclusive)."""
    with np.errstate(all="ignore"):
        return _sgd_verdict(claim, run, constants, eta=eta, assumptions=assumptions, expectation=expectation,
                            confidence=confidence, reasons=reasons, extra=extra)


def _sgd_verdict(claim, run, constants, *, eta, assumptions, expectation, confidence, reasons, extra) -> Verdict:
    L, beta, lam = constants.lipschitz, constants.smoothness, run.weight_decay
    alpha = np.broadcast_to(run.step_sizes, run.hits.shape)
    factor = 1.0 if run.removal else 2.0
    bound = _recursion(run, eta, np.zeros_like(alpha), factor * alpha * L)
    delta = run.distance[:, :-1]
    shared = np.isfinite(run.grad_diff) & (delta > 0)
    beta_tol = beta if math.isfinite(beta) else float(np.max(run.grad_diff[shared] / delta[shared], initial=0.0))
    per_step = _roundoff_per_step(run, beta_tol)
    tol = _recursion(run, eta, per_step, per_step)
    g_dist = gamma(run.param_count, dtype_of(run.dtype))
    tol = tol + g_dist * run.param_norm.sum(-1)

    # observed assumptions: gradient norms, secant smoothness and monotonicity on shared-example steps
    g_k = gamma(run.param_count + run.input_dim + 10, dtype_of(run.dtype))
    slack = g_k * (run.grad_norm.sum(-1) + beta_tol * run.param_norm[:, :-1].sum(-1))
    grad_max = float(run.grad_norm.max())
    assumptions = {ASSUME_LIPSCHITZ: math.isfinite(L), ASSUME_SMOOTH: math.isfinite(beta),
                   ASSUME_GRADIENTS: grad_max <= L * (1 + g_k), **assumptions}
    secant = np.where(shared, run.grad_diff / delta, np.nan)
    monotone = np.where(shared, run.grad_inner / delta ** 2, np.nan)
    secant_ok = np.where(shared, run.grad_diff <= beta * delta + slack, True)
    inner_slack = (slack + g_dist * run.grad_diff) * delta
    convex_ok = np.where(shared, run.grad_inner >= constants.strong_convexity * delta ** 2 - inner_slack, True)
    assumptions[ASSUME_SECANT] = bool(secant_ok.all())
    if ASSUME_CONVEX in assumptions:
        assumptions[ASSUME_CONVEX] = constants.convex and bool(np.where(shared, run.grad_inner >= -inner_slack,
                                                                        True).all())
    if ASSUME_STRONG in assumptions:
        assumptions[ASSUME_STRONG] = constants.strong_convexity > 0 and bool(convex_ok.all())
    if not assumptions[ASSUME_GRADIENTS]:
        reasons.append(f"a per-sample gradient of norm {grad_max:.4g} exceeds L = {L:.4g}")
    if not assumptions[ASSUME_SECANT]:
        reasons.append(f"secant smoothness up to {np.nanmax(secant):.4g} exceeds beta = {beta:.4g}")

    # the pathwise bound, on every run and step
    delta_all = run.distance
    held_path = bool((delta_all <= bound + tol).all())
    informative = bound > tol  # where the bound rises above roundoff; elsewhere delta <= B + tol is all one can ask
    ratio = np.where(informative, delta_all / np.where(informative, bound, 1.0), 0.0)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    statistic = float(ratio.max())
    rel_tol = float((tol[informative] / bound[informative]).max(initial=0.0))
    if not held_path:
        excess = np.unravel_index(int(np.argmax(delta_all - bound - tol)), delta_all.shape)
        reasons.append(f"pathwise bound fails: run {excess[0]}, step {excess[1]}: ||w - w'|| = "
                       f"{delta_all[excess]:.4g} > {bound[excess]:.4g} (growth recursion)")
    hits_any = bool(run.hits.any())
    finite = run.finite
    details = {
        "constants": dataclasses.asdict(constants),
        "pathwise": {"max_ratio": statistic, "worst_run": int(worst[0]), "worst_step": int(worst[1]),
                     "held_on_every_run_and_step": held_path, "runs": run.runs, "steps": run.steps,
                     "hits_mean": float(run.hits.sum(1).mean()), "final_distance_mean": float(delta_all[:, -1].mean()),
                     "final_bound_mean": float(bound[:, -1].mean()), "increment": f"{factor:g} alpha_t L"},
        "observed": {"max_gradient_norm": grad_max,
                     "max_secant_smoothness": float(np.nanmax(secant)) if shared.any() else math.nan,
                     "min_secant_monotonicity": float(np.nanmin(monotone)) if shared.any() else math.nan,
                     "max_step_size": float(run.step_sizes.max()), "loss_seen": list(run.loss_seen)},
        "series": {"step": _series(delta_all.mean(0))[0], "distance_mean": _series(delta_all.mean(0))[1],
                   "bound_mean": _series(bound.mean(0))[1]},
        "n": run.n, "removal": run.removal, "weight_decay": lam, "radius": run.radius, **(extra or {}),
    }

    # the expectation bound, by Monte Carlo over index sequences
    held_mean = True
    if expectation is not None:
        value, form = expectation
        if run.removal or not run.sampled_uniformly or run.runs < MIN_RUNS:
            why = ("the theorem is stated for a replaced example" if run.removal else
                   "indices were given, not drawn uniformly" if not run.sampled_uniformly else
                   f"{run.runs} runs < {MIN_RUNS} for the Student-t interval")
            details["expectation"] = {"evaluated": False, "why": why, "bound": value, "form": form}
        else:
            gaps = np.abs(run.loss_gap[:, -1, :])
            mean, half = mean_interval(gaps, confidence)
            roundoff = L * float(tol[:, -1].max()) if math.isfinite(L) else 0.0
            lower, upper = float((mean - half).max()), float((mean + half).max())
            held_mean = lower <= value + roundoff
            details["expectation"] = {
                "evaluated": True, "estimate": float(mean.max()), "lower": lower, "upper": upper, "bound": value,
                "form": form, "below_bound_with_interval": upper <= value, "confidence": confidence,
                "interval": f"two-sided Student-t {confidence:.0%} interval on the mean over {run.runs} index "
                            f"sequences, Bonferroni over {gaps.shape[1]} probe points; statistic sup_z E|f(w_T; z) "
                            "- f(w'_T; z)|; violated only if the lower end exceeds the bound",
                "ratio": float(mean.max()) / value if value > 0 else math.inf}
            if not held_mean:
                reasons.append(f"Monte Carlo sup_z E|f(w_T; z) - f(w'_T; z)| >= {lower:.4g} > bound {value:.4g} "
                               f"({form})")
    if not hits_any:
        reasons.append("the changed example was never sampled: the two runs are identical, nothing to test")
    if not finite:
        reasons.append("non-finite parameters, gradients or losses (divergence or overflow)")
    return Verdict.decide(
        claim=claim, assumptions=assumptions, conclusion_held=held_path and held_mean,
        inconclusive=(not finite) or (not hits_any), statistic=statistic, bound=1.0, tolerance=rel_tol,
        tolerance_basis=("statistic = max over runs and steps of ||w_t - w'_t|| / B_t (B_t the growth-recursion bound, "
                         "where it exceeds the roundoff tol_t; delta_t <= B_t + tol_t is checked everywhere); "
                         "tolerance: per-step rounding gamma_K [(1 + alpha beta)(||w|| + ||w'||) + alpha(||g|| + ||g'||)], "
                         "K = parameters + inputs + 10, carried by the same recursion, relative to B_t; "
                         "expectation: Student-t interval (details['expectation'])"),
        device=run.device, dtype=run.dtype, seed=run.seed, details=details, reason="; ".join(reasons))


def check_sgd_stability_convex(run: CoupledRun, constants: LossConstants, *, confidence: float = 0.95) -> Verdict:
    """HRS Thm 3.8 on a coupled run: pathwise ||w_t - w'_t|| <= 2 L sum_{s <= t: i_s = i} alpha_s on every
    run, and sup_z E|f(w_T; z) - f(w'_T; z)| <= (2 L^2 / n) sum_t alpha_t (Monte Carlo, >= 30 runs)."""
    _validate(run, constants, confidence)
    beta, reasons = constants.smoothness, []
    step_ok = bool((run.step_sizes <= 2 / beta * (1 + 4 * np.finfo(float).eps)).all()) if beta > 0 else True
    if not step_ok:
        reasons.append(f"step size {run.step_sizes.max():.4g} > 2/beta = {2 / beta:.4g}: expansive gradient steps")
    L = constants.lipschitz
    value = 2 * L ** 2 / run.n * float(run.step_sizes.sum())
    return _check_sgd("sgd_stability_convex", run, constants, eta=np.ones(run.hits.shape),
                      assumptions={ASSUME_CONVEX: True, ASSUME_STEP_CONVEX: step_ok},
                      expectation=(value, "(2 L^2/n) sum_t alpha_t, HRS Thm 3.8"), confidence=confidence,
                      reasons=reasons)


def check_sgd_stability_strongly_convex(run: CoupledRun, constants: LossConstants, *,
                                        confidence: float = 0.95) -> Verdict:
    """HRS Thm 3.9 on a coupled run: contraction 1 - alpha_t gamma per step (alpha_t <= 2/(beta + gamma)),
    pathwise ||w_t - w'_t|| <= 2 L sum_{s: i_s = i} alpha_s prod_{s < u <= t} (1 - alpha_u gamma), and
    sup_z E|f(w_T; z) - f(w'_T; z)| <= 2 L^2 / (gamma n)."""
    _validate(run, constants, confidence)
    beta, g, reasons = constants.smoothness, constants.strong_convexity, []
    limit = 2 / (beta + g) if beta + g > 0 else math.inf
    step_ok = bool((run.step_sizes <= limit * (1 + 4 * np.finfo(float).eps)).all())
    if not step_ok:
        reasons.append(f"step size {run.step_sizes.max():.4g} > 2/(beta + gamma) = {limit:.4g}")
    eta = np.broadcast_to(np.clip(1 - run.step_sizes * g, 0.0, None), run.hits.shape)
    value = 2 * constants.lipschitz ** 2 / (g * run.n) if g > 0 else math.inf
    return _check_sgd("sgd_stability_strongly_convex", run, constants, eta=eta,
                      assumptions={ASSUME_STRONG: True, ASSUME_STEP_STRONG: step_ok},
                      expectation=(value, "2 L^2/(gamma n), HRS Thm 3.9"), confidence=confidence, reasons=reasons)


def nonconvex_bound(L: float, beta: float, c: float, n: int, T: int) -> float:
    """HRS Thm 3.12: (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)}."""
    q = beta * c
    return (1 + 1 / q) / (n - 1) * (2 * c * L ** 2) ** (1 / (q + 1)) * T ** (q / (q + 1))


def check_sgd_stability_nonconvex(run: CoupledRun, constants: LossConstants, *, confidence: float = 0.95) -> Verdict:
    """HRS Thm 3.12 on a coupled run: f in [0, 1], L-Lipschitz, beta-smooth, alpha_t <= c/t non-increasing:
    sup_z E|f(w_T; z) - f(w'_T; z)| <= (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)};
    pathwise, the growth recursion with eta_t = 1 + alpha_t beta (HRS Lemmas 2.5, 3.6) on every run."""
    _validate(run, constants, confidence)
    beta, reasons = constants.smoothness, []
    decreasing = bool((np.diff(run.step_sizes) <= 0).all())
    c = float((run.step_sizes * np.arange(1, run.steps + 1)).max())
    lo, hi = run.loss_seen
    slack = 4 * np.finfo(float).eps
    declared = constants.loss_range is not None and constants.loss_range[0] >= 0 and constants.loss_range[1] <= 1
    in_range = declared and lo >= -slack and hi <= 1 + slack
    if not decreasing:
        reasons.append("step sizes increase somewhere (HRS Thm 3.12 needs alpha_t <= c/t, non-increasing)")
    if not in_range:
        reasons.append(f"loss values seen in [{lo:.4g}, {hi:.4g}], declared range {constants.loss_range}: "
                       "the theorem needs a loss in [0, 1]")
    eta = np.broadcast_to(1 + run.step_sizes * beta, run.hits.shape) if math.isfinite(beta) else \
        np.full(run.hits.shape, np.inf)
    value = nonconvex_bound(constants.lipschitz, beta, c, run.n, run.steps) if math.isfinite(beta) and run.n > 1 \
        else math.inf
    return _check_sgd("sgd_stability_nonconvex", run, constants, eta=eta,
                      assumptions={ASSUME_STEP_DECAY: decreasing, ASSUME_RANGE: in_range},
                      expectation=(value, f"HRS Thm 3.12 with c = {c:.4g}, T = {run.steps}"),
                      confidence=confidence, reasons=reasons, extra={"c": c})


def assert_sgd_stability_convex(run, constants, **kwargs) -> Verdict:
    """:func:`check_sgd_stability_convex`, raising ``ClaimViolation`` unless the verdict is ``holds``."""
    return require_holds(check_sgd_stability_convex(run, constants, **kwargs))


def assert_sgd_stability_strongly_convex(run, constants, **kwargs) -> Verdict:
    """:func:`check_sgd_stability_strongly_convex`, raising ``ClaimViolation`` unless it holds."""
    return require_holds(check_sgd_stability_strongly_convex(run, constants, **kwargs))


def assert_sgd_stability_nonconvex(run, constants, **kwargs) -> Verdict:
    """:func:`check_sgd_stability_nonconvex`, raising ``ClaimViolation`` unless it holds."""
    return require_holds(check_sgd_stability_nonconvex(run, constants, **kwargs))


# --- audit cases: seeded instances and negative controls ------------------------------------------

def case_line(case) -> str:
    """``SGDCase(claim=..., <fields that differ from the defaults>)``: a line that rebuilds the case."""
    fields = ", ".join(f"{f.name}={getattr(case, f.name)!r}" for f in dataclasses.fields(case)
                       if getattr(case, f.name) != f.default or f.name == "claim")
    return f"{type(case).__name__}({fields})"


def generated_data(kind: str, n: int, d: int, seed: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """n points of :mod:`theorycheck.data`'s ``separable`` (margin 0.1), ``random`` (labels) or ``digits``."""
    from .. import data as datasets

    made = {"separable": lambda: datasets.separable(n, d, margin=0.1, seed=seed, dtype=dtype),
            "random": lambda: datasets.random_labels(n, d, seed=seed, dtype=dtype),
            "digits": lambda: datasets.digits(n, seed=seed, dtype=dtype)}[kind]()
    return made.X, made.y


def case_audit(claim: str, controls: dict[str, str], make: Callable, *, n: int, seed: int, device: str,
               dtype: str) -> Iterator[AuditCase]:
    """n cases ``make(claim, rng, None)`` (expected: holds) and n controls ``make(claim, rng, control)``
    cycling through ``controls`` (control -> expected status); each case has ``.verdict`` and a line."""
    from ..sampling import case_rng

    names = list(controls)
    for index in range(2 * n):
        control = None if index < n else names[index % len(names)]
        case = make(claim, case_rng(seed, claim, index), control)
        yield AuditCase(
            name=f"{'control-' + control if control else 'instance'}-{index}",
            kind="control" if control else "instance",
            expected=frozenset({controls[control]}) if control else frozenset({"holds"}),
            reproduce=(f"from {type(case).__module__} import {type(case).__name__}; print({case_line(case)}"
                       f".verdict(device={device!r}, dtype={dtype!r}).summary())"),
            run=lambda case=case: case.verdict(device=device, dtype=dtype), size=case.n)


@dataclasses.dataclass(frozen=True)
class SGDCase:
    """One generated coupled-SGD instance (rebuilt from these fields alone; see :meth:`verdict`).

    ``loss``: a :data:`LINEAR_LOSSES` name on a bias-free linear model, or ``"tanh"``/``"relu"`` (a
    one-hidden-layer network under the sigmoid loss) or ``"tanh-logistic"``; ``data``: separable,
    random or digits; ``change``: fresh (a new point replaces example 0), flip (its label negated),
    mirror (its input negated) or remove; ``step_scale``: the step size as a fraction of the claim's
    limit (2/beta, 2/(beta + gamma), or c = step_scale/beta for c/t); ``control`` breaks one assumption.
    """

    claim: str
    loss: str = "logistic"
    data: str = "separable"
    n: int = 12
    d: int = 3
    hidden: int = 4
    steps: int = 24
    runs: int = 32
    step_scale: float = 0.5
    change: str = "fresh"
    weight_decay: float = 0.0
    radius: float | None = None
    seed: int = 0
    control: str | None = None

    def data_set(self, dtype) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """Training inputs/labels and the replacement of example 0 (None: removed)."""
        X, y = generated_data(self.data, self.n + 1, self.d, self.seed, dtype)
        if self.loss in NETWORK_LOSSES:  # inputs of norm <= 1 for the network constants
            X = X / X.norm(dim=1).max()
        new = {"fresh": (X[-1:], y[-1:]), "flip": (X[:1], -y[:1]), "mirror": (-X[:1], y[:1]), "remove": None}
        return X[:-1], y[:-1], new[self.change]

    def model(self, dtype) -> torch.nn.Module:
        generator = torch.Generator().manual_seed(self.seed)
        d = self.d if self.data != "digits" else 64
        if self.loss in NETWORK_LOSSES:
            act = torch.nn.ReLU() if self.loss == "relu" else torch.nn.Tanh()
            model = torch.nn.Sequential(torch.nn.Linear(d, self.hidden, bias=False), act,
                                        torch.nn.Linear(self.hidden, 1, bias=False)).to(dtype)
            with torch.no_grad():
                theta = [p for p in model.parameters()]
                for p in theta:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype))
                scale = 0.5 * self.radius / math.sqrt(sum(float((p ** 2).sum()) for p in theta))
                for p in theta:
                    p.mul_(scale)
            return model
        model = torch.nn.Linear(d, 1, bias=False).to(dtype)
        with torch.no_grad():
            model.weight.copy_(0.1 * torch.randn(model.weight.shape, generator=generator, dtype=dtype))
        return model

    def constants(self, model, run: CoupledRun) -> LossConstants:
        if self.loss in LINEAR_LOSSES:
            constants = linear_loss_constants(self.loss, run)
        elif self.loss == "tanh":
            constants = tanh_network_constants(model, run)
        else:  # relu: ||grad g|| <= R ||x|| still holds, but g is not smooth; tanh-logistic: unbounded loss
            tanh = _tanh_constants(_input_norm(run.inputs), run.radius, run.weight_decay)
            constants = dataclasses.replace(
                tanh, smoothness=math.inf if self.loss == "relu" else tanh.smoothness,
                lipschitz=4 * tanh.lipschitz if self.loss == "tanh-logistic" else tanh.lipschitz,
                loss_range=(0.0, 1.0) if self.loss == "relu" else None,
                basis=("ReLU network: L as for tanh, not smooth (beta = inf)" if self.loss == "relu" else
                       "logistic loss (|l'| <= 1) of a tanh network: unbounded, no [0, 1] range"))
        if self.control == "understated-L":
            constants = dataclasses.replace(constants, lipschitz=constants.lipschitz / 4,
                                            basis="declared L = a quarter of the closed form")
        if self.control == "overstated-gamma":
            constants = dataclasses.replace(constants, strong_convexity=constants.smoothness + 1,
                                            basis="declared gamma = beta + 1 (above the curvature)")
        return constants

    def step_size(self, X_all: torch.Tensor, model) -> Callable[[int], float] | float:
        x_max = _input_norm(X_all)
        if self.loss in LINEAR_LOSSES:
            pre = _linear_constants(self.loss, x_max=x_max, y_max=1.0, weight_decay=self.weight_decay,
                                    radius=self.radius, init_norm=0.0, max_step=0.0)
        else:
            pre = _tanh_constants(x_max, self.radius, self.weight_decay)
        beta, g = pre.smoothness, pre.strong_convexity
        if self.claim == "sgd_stability_nonconvex":
            c = self.step_scale / beta
            if self.control == "increasing-steps":
                return lambda t: c * min(t, 4) / 4
            return lambda t: c / t
        limit = 2 / (beta + g) if self.claim == "sgd_stability_strongly_convex" else 2 / beta
        return self.step_scale * limit

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        """Build the data, the model and the coupled run, and check the claim."""
        if self.control == "expansive-counterexample":
            return expansive_counterexample(device=device, dtype=dtype)
        torch_dtype = dtype_of(dtype)
        X, y, new = self.data_set(torch_dtype)
        model = self.model(torch_dtype)
        loss = NETWORK_LOSSES.get(self.loss) or LINEAR_LOSSES[self.loss][0]
        X_all = X if new is None else torch.cat([X, new[0]])
        run = coupled_sgd(model, loss, X, y, index=0, replacement=new, steps=self.steps,
                          step_size=self.step_size(X_all, model), runs=self.runs, weight_decay=self.weight_decay,
                          radius=self.radius, seed=self.seed, device=device, dtype=dtype)
        return CHECKERS[self.claim](run, self.constants(model, run))


NETWORK_LOSSES = {"tanh": sigmoid_loss, "relu": sigmoid_loss, "tanh-logistic": logistic_loss}
CHECKERS = {"sgd_stability_convex": check_sgd_stability_convex,
            "sgd_stability_strongly_convex": check_sgd_stability_strongly_convex,
            "sgd_stability_nonconvex": check_sgd_stability_nonconvex}


def expansive_counterexample(*, device="cpu", dtype="float64", steps: int = 6) -> Verdict:
    """Steps above 2/beta break the convex pathwise bound. Huber loss (threshold 1: L = beta = 1) of
    w x with x = 1, all labels 0, example 0 replaced by label 1, w_0 = 0, the changed example sampled
    at step 1 only, alpha = (0.5, 3, 3, ...): the run on S stays at 0; the other moves to 0.5, then
    w -> -2w (3 > 2/beta) to -1, then saturates at 2, so ||w_T - w'_T|| = 2 > 2 L alpha_1 = 1."""
    torch_dtype = dtype_of(dtype)
    X, y = torch.ones(4, 1, dtype=torch_dtype), torch.zeros(4, dtype=torch_dtype)
    model = torch.nn.Linear(1, 1, bias=False).to(torch_dtype)
    with torch.no_grad():
        model.weight.zero_()
    indices = [0] + [1 + t % 3 for t in range(steps - 1)]
    run = coupled_sgd(model, huber_loss, X, y, index=0, replacement=(X[:1], torch.ones(1, dtype=torch_dtype)),
                      indices=indices, step_size=[0.5] + [3.0] * (steps - 1), device=device, dtype=dtype)
    return check_sgd_stability_convex(run, linear_loss_constants("huber", run))


CONVEX_LOSSES = ("logistic", "squared_hinge", "huber")
DATA = ("separable", "random", "digits")
CHANGES = ("fresh", "flip", "mirror", "remove")
CONTROLS = {
    "sgd_stability_convex": {"expansive-counterexample": "vacuous", "large-steps": "vacuous",
                             "squared-unbounded": "vacuous", "understated-L": "vacuous"},
    "sgd_stability_strongly_convex": {"no-regularization": "vacuous", "large-steps": "vacuous",
                                      "overstated-gamma": "vacuous"},
    "sgd_stability_nonconvex": {"relu": "vacuous", "unbounded-loss": "vacuous", "increasing-steps": "vacuous"},
}


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> SGDCase:
    """A random instance of ``claim`` (sizes kept small: n <= 20 examples, 2n steps, 32 runs)."""
    n, data = int(rng.integers(6, 21)), DATA[int(rng.integers(len(DATA)))]
    fields = dict(claim=claim, data=data, n=n, d=int(rng.integers(2, 7)), steps=2 * n,
                  change=CHANGES[int(rng.integers(len(CHANGES)))], seed=int(rng.integers(2**31)),
                  step_scale=float(rng.uniform(0.2, 1.0)), control=control)
    if claim == "sgd_stability_nonconvex":
        loss = {"relu": "relu", "unbounded-loss": "tanh-logistic"}.get(control, "tanh")
        fields.update(loss=loss, hidden=int(rng.integers(2, 7)), radius=float(rng.uniform(0.5, 2.0)),
                      step_scale=float(rng.uniform(0.2, 2.0)))
    else:
        loss = CONVEX_LOSSES[int(rng.integers(len(CONVEX_LOSSES)))]
        if control == "squared-unbounded":
            loss = "squared"
        if control == "understated-L":  # losses whose closed-form L is attained up to a factor < 4
            loss = ("logistic", "huber")[int(rng.integers(2))]
        radius = float(rng.uniform(0.5, 3.0)) if loss == "squared_hinge" else None
        lam = float(10 ** rng.uniform(-2, -0.5)) if claim == "sgd_stability_strongly_convex" else 0.0
        fields.update(loss=loss, radius=radius, weight_decay=0.0 if control == "no-regularization" else lam)
        if control == "large-steps":
            fields.update(step_scale=float(rng.uniform(2.5, 4.0)))
    return SGDCase(**fields)


def _audit(claim: str):
    def audit_cases(*, n: int, seed: int, device: str, dtype: str) -> Iterator[AuditCase]:
        """n random instances (expected: holds) and n controls cycling through the claim's breaks."""
        return case_audit(claim, CONTROLS[claim], random_case, n=n, seed=seed, device=device, dtype=dtype)
    return audit_cases


_ASSUME_COMMON = (ASSUME_LIPSCHITZ, ASSUME_SMOOTH, ASSUME_GRADIENTS, ASSUME_SECANT)
register(Claim(
    id="sgd_stability_convex",
    statement="SGD on a convex, beta-smooth, L-Lipschitz loss with alpha_t <= 2/beta: for S, S' differing in example "
              "i and the same indices, ||w_t - w'_t|| <= 2 L sum_{s <= t: i_s = i} alpha_s on every path, and "
              "sup_z E|f(w_T; z) - f(w'_T; z)| <= (2 L^2/n) sum_t alpha_t.",
    assumptions=_ASSUME_COMMON + (ASSUME_CONVEX, ASSUME_STEP_CONVEX),
    source=f"{HRS}: Lemma 2.5 (growth recursion), Lemma 3.6 (expansivity), Thm 3.8 (convex)",
    checker=check_sgd_stability_convex, audit_cases=_audit("sgd_stability_convex"),
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval "
              "(Bonferroni over probe points)"))
register(Claim(
    id="sgd_stability_strongly_convex",
    statement="SGD on a gamma-strongly convex, beta-smooth, L-Lipschitz loss with alpha_t <= 2/(beta + gamma): "
              "||w_t - w'_t|| <= 2 L sum_{s: i_s = i} alpha_s prod_{s < u <= t}(1 - alpha_u gamma) on every path, and "
              "sup_z E|f(w_T; z) - f(w'_T; z)| <= 2 L^2/(gamma n).",
    assumptions=_ASSUME_COMMON + (ASSUME_STRONG, ASSUME_STEP_STRONG),
    source=f"{HRS}: Lemma 2.5, Lemma 3.6, Thm 3.9 (strongly convex, projected SGD)",
    checker=check_sgd_stability_strongly_convex, audit_cases=_audit("sgd_stability_strongly_convex"),
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval"))
register(Claim(
    id="sgd_stability_nonconvex",
    statement="SGD on an L-Lipschitz, beta-smooth loss with values in [0, 1] and alpha_t <= c/t: sup_z "
              "E|f(w_T; z) - f(w'_T; z)| <= (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)}; "
              "pathwise, the growth recursion with expansivity 1 + alpha_t beta.",
    assumptions=_ASSUME_COMMON + (ASSUME_STEP_DECAY, ASSUME_RANGE),
    source=f"{HRS}: Lemma 2.5, Lemma 3.6, Thm 3.12 (non-convex)",
    checker=check_sgd_stability_nonconvex, audit_cases=_audit("sgd_stability_nonconvex"),
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval"))
