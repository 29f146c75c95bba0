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

import numpy as np
from scipy import stats

from ..core.comparisons import Comparison, comparison
from ..engines.coupled import CoupledRun
from ..core.devices import dtype_of, gamma
from ..core.errors import expect
from ..core.kit import ClaimKit
from .stability_cases import CONTROLS, random_case
from ..engines.stability_constants import LossConstants
from ..core.verdict import Verdict


HRS = "Hardt, Recht & Singer, ICML 2016 (arXiv:1509.01240)"
MIN_RUNS = 30  # below this the Student-t interval on the Monte Carlo mean is not used
SERIES_POINTS = 100

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


def _series(lines: dict[str, np.ndarray], **options) -> dict:
    """One plot panel in the form of report/SCHEMA.md: ``{"x": steps, "y": {label: values}, ...}``."""
    length = len(next(iter(lines.values())))
    index = np.unique(np.linspace(0, length - 1, min(length, SERIES_POINTS)).astype(int))
    return {"x": index.tolist(), "y": {label: a[index].tolist() for label, a in lines.items()}, **options}


def _validate(run, constants, confidence) -> None:
    expect(isinstance(run, CoupledRun), expected="a CoupledRun from tc.coupled_sgd(...)",
           received=type(run).__name__, fix="run = tc.coupled_sgd(model, loss, X, y, ...)")
    expect(isinstance(constants, LossConstants), expected="LossConstants", received=type(constants).__name__,
           fix="tc.linear_loss_constants(kind, run) or tc.LossConstants(lipschitz=..., smoothness=...)")
    expect(0 < confidence < 1, expected="0 < confidence < 1", received=repr(confidence), fix="e.g. 0.95")


def _check_sgd(kit: ClaimKit, run: CoupledRun, constants: LossConstants, *, eta: np.ndarray,
               assumptions: dict[str, bool], expectation: tuple[float, str] | None, confidence: float,
               reasons: list[str], extra: dict | None = None) -> Verdict:
    """Pathwise growth-recursion bound on every run and step, plus the Monte Carlo expectation bound
    (numpy overflow of a divergent run is expected: it is reported inconclusive)."""
    with np.errstate(all="ignore"):
        return _sgd_verdict(kit, run, constants, eta=eta, assumptions=assumptions, expectation=expectation,
                            confidence=confidence, reasons=reasons, extra=extra)


def _sgd_verdict(kit, run, constants, *, eta, assumptions, expectation, confidence, reasons, extra) -> Verdict:
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
    # L must bound the gradients on the training steps and at the probe points the verdict's sup_z ranges over
    train_max = float(run.grad_norm.max())
    probe_max = run.probe_grad_norm
    grad_max = max(train_max, probe_max) if math.isfinite(probe_max) else train_max
    assumptions = {"lipschitz": math.isfinite(L), "smooth": math.isfinite(beta),
                   "gradients": grad_max <= L * (1 + g_k), **assumptions}
    secant = np.where(shared, run.grad_diff / delta, np.nan)
    monotone = np.where(shared, run.grad_inner / delta ** 2, np.nan)
    secant_ok = np.where(shared, run.grad_diff <= beta * delta + slack, True)
    inner_slack = (slack + g_dist * run.grad_diff) * delta
    convex_ok = np.where(shared, run.grad_inner >= constants.strong_convexity * delta ** 2 - inner_slack, True)
    assumptions["secant"] = bool(secant_ok.all())
    if "convex" in assumptions:
        assumptions["convex"] = constants.convex and bool(np.where(shared, run.grad_inner >= -inner_slack,
                                                                        True).all())
    if "strong" in assumptions:
        assumptions["strong"] = constants.strong_convexity > 0 and bool(convex_ok.all())
    # power iteration gives ||H v|| <= ||H||_2: an estimate above beta refutes it; NaN (not estimated) does not
    curvature_slack = g_k * (beta_tol + run.curvature)
    assumptions["curvature"] = not run.curvature > beta + curvature_slack
    if not assumptions["curvature"]:
        reasons.append(f"curvature ||hess f(w; z)|| >= {run.curvature:.4g} at a visited point exceeds beta = {beta:.4g} "
                       "(beta understated)")
    if not assumptions["gradients"]:
        where = "at a probe point" if grad_max > train_max else "on a training step"
        reasons.append(f"a per-sample gradient of norm {grad_max:.4g} {where} exceeds L = {L:.4g}")
    if not assumptions["secant"]:
        reasons.append(f"secant smoothness up to {np.nanmax(secant):.4g} exceeds beta = {beta:.4g}")

    # the pathwise bound, on every run and step
    delta_all = run.distance
    informative = bound > tol  # where the bound rises above roundoff; elsewhere delta <= B + tol is all one can ask
    parts = [_pathwise_relative(delta_all, bound, tol, informative)]
    if (~informative).any():
        parts.append(_pathwise_roundoff(delta_all, bound, tol, informative))
    held_path = all(p.held for p in parts)
    ratio = np.where(informative, delta_all / np.where(informative, bound, 1.0), 0.0)
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    statistic = float(ratio.max())
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
        "observed": {"max_gradient_norm": grad_max, "max_training_gradient_norm": train_max,
                     "max_probe_gradient_norm": probe_max,
                     "max_secant_smoothness": float(np.nanmax(secant)) if shared.any() else math.nan,
                     "min_secant_monotonicity": float(np.nanmin(monotone)) if shared.any() else math.nan,
                     "max_curvature": run.curvature, "curvature_points": run.curvature_points,
                     "curvature_basis": (f"max over {run.curvature_points} visited w and every training example of "
                                         "||H v_k||, k power-iteration steps on hess_w f(w; z): a lower bound on the "
                                         "largest curvature (it can miss sharper directions and unvisited points); "
                                         f"refutes beta above rounding gamma_K (beta + estimate) = {curvature_slack:.2g}"
                                         if run.curvature_points else f"not estimated ({run.curvature_error})"),
                     "max_step_size": float(run.step_sizes.max()), "loss_seen": list(run.loss_seen)},
        "series": {"||w_t - w'_t|| (mean over runs)": _series(
            {"||w_t - w'_t||": delta_all.mean(0), "growth-recursion bound B_t": bound.mean(0)},
            xlabel="step t", ylabel="distance", yscale="symlog")},
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
            probe = int(np.argmax(mean - half))  # the probe point whose lower end is largest decides
            parts.append(comparison(
                "expectation", mean[probe], value, half[probe] + roundoff,
                f"Monte Carlo mean of |f(w_T; z) - f(w'_T; z)| at the deciding probe z over {run.runs} index sequences "
                f"against {form}; tolerance: the two-sided Student-t {confidence:.0%} half-width (Bonferroni over "
                f"{gaps.shape[1]} probes) plus L x the pathwise roundoff"))
            held_mean = parts[-1].held
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
    return kit.decide(assumptions=assumptions, inconclusive=(not finite) or (not hits_any), comparisons=parts,
                      device=run.device, dtype=run.dtype, seed=run.seed, details=details, reason="; ".join(reasons))


_PATH_TOL = ("per-step rounding gamma_K [(1 + alpha beta)(||w|| + ||w'||) + alpha(||g|| + ||g'||)], K = parameters + "
             "inputs + 10, carried by the same growth recursion, plus gamma_P (||w_t|| + ||w'_t||) for the distance")


def _pathwise_relative(delta, bound, tol, informative) -> Comparison:
    """delta_t / B_t <= 1 + tol_t / B_t where B_t > tol_t, at the run and step closest to failing."""
    if not informative.any():
        return comparison("pathwise ||w_t - w'_t|| / B_t", 0.0, 1.0, 0.0, "no step where B_t exceeds its roundoff")
    slack = np.where(informative, (delta - tol) / np.where(informative, bound, 1.0), -np.inf)
    r, t = np.unravel_index(int(np.argmax(slack)), slack.shape)
    return comparison("pathwise ||w_t - w'_t|| / B_t", delta[r, t] / bound[r, t], 1.0, tol[r, t] / bound[r, t],
                      f"growth recursion B_t (HRS Lemma 2.5) at run {r}, step {t}, where B_t > tol_t; {_PATH_TOL}")


def _pathwise_roundoff(delta, bound, tol, informative) -> Comparison:
    """delta_t <= B_t + tol_t where B_t <= tol_t (the bound is at roundoff level, e.g. before any hit)."""
    excess = np.where(informative, -np.inf, delta - bound - tol)
    r, t = np.unravel_index(int(np.argmax(excess)), excess.shape)
    return comparison("pathwise ||w_t - w'_t|| at roundoff-level B_t", delta[r, t], bound[r, t], tol[r, t],
                      f"growth recursion B_t <= tol_t at run {r}, step {t}; {_PATH_TOL}")


_COMMON_ASSUMPTIONS = {  # every HRS theorem's
    "lipschitz": "f(.; z) L-Lipschitz with finite L",
    "smooth": "f(.; z) beta-smooth with finite beta",
    "gradients": "observed per-sample gradient norms <= L (on the training steps and at the probe points)",
    "secant": "observed secant smoothness ||g - g'|| <= beta ||w - w'||",
    "curvature": "observed curvature ||hess f(w; z)||_2 <= beta at visited points (power iteration)"}


sgd_stability_convex_kit = ClaimKit(
    id="sgd_stability_convex",
    statement="SGD on a convex, beta-smooth, L-Lipschitz loss with alpha_t <= 2/beta: for S, S' differing in example "
              "i and the same indices, ||w_t - w'_t|| <= 2 L sum_{s <= t: i_s = i} alpha_s on every path, and "
              "sup_z E|f(w_T; z) - f(w'_T; z)| <= (2 L^2/n) sum_t alpha_t.",
    source=f"{HRS}: Lemma 2.5 (growth recursion), Lemma 3.6 (expansivity), Thm 3.8 (convex)",
    assumptions={**_COMMON_ASSUMPTIONS, "convex": "f(.; z) convex (declared; observed <g - g', w - w'> >= 0)",
                 "step_convex": "step sizes alpha_t <= 2/beta"},
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval "
              "(Bonferroni over probe points)",
)


@sgd_stability_convex_kit.checker
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
    return _check_sgd(sgd_stability_convex_kit, run, constants, eta=np.ones(run.hits.shape),
                      assumptions={"convex": True, "step_convex": step_ok},
                      expectation=(value, "(2 L^2/n) sum_t alpha_t, HRS Thm 3.8"), confidence=confidence,
                      reasons=reasons)


sgd_stability_strongly_convex_kit = ClaimKit(
    id="sgd_stability_strongly_convex",
    statement="SGD on a gamma-strongly convex, beta-smooth, L-Lipschitz loss with alpha_t <= 2/(beta + gamma): "
              "||w_t - w'_t|| <= 2 L sum_{s: i_s = i} alpha_s prod_{s < u <= t}(1 - alpha_u gamma) on every path, and "
              "sup_z E|f(w_T; z) - f(w'_T; z)| <= 2 L^2/(gamma n).",
    source=f"{HRS}: Lemma 2.5, Lemma 3.6, Thm 3.9 (strongly convex, projected SGD)",
    assumptions={**_COMMON_ASSUMPTIONS, 
                 "strong": "f(.; z) gamma-strongly convex, gamma > 0 (declared; observed <g - g', w - w'> >= gamma ||w - w'||^2)",
                 "step_strong": "step sizes alpha_t <= 2/(beta + gamma)"},
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval",
)


@sgd_stability_strongly_convex_kit.checker
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
    return _check_sgd(sgd_stability_strongly_convex_kit, run, constants, eta=eta,
                      assumptions={"strong": True, "step_strong": step_ok},
                      expectation=(value, "2 L^2/(gamma n), HRS Thm 3.9"), confidence=confidence, reasons=reasons)


def nonconvex_bound(L: float, beta: float, c: float, n: int, T: int) -> float:
    """HRS Thm 3.12: (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)}."""
    q = beta * c
    return (1 + 1 / q) / (n - 1) * (2 * c * L ** 2) ** (1 / (q + 1)) * T ** (q / (q + 1))


sgd_stability_nonconvex_kit = ClaimKit(
    id="sgd_stability_nonconvex",
    statement="SGD on an L-Lipschitz, beta-smooth loss with values in [0, 1] and alpha_t <= c/t: sup_z "
              "E|f(w_T; z) - f(w'_T; z)| <= (1 + 1/(beta c))/(n - 1) (2 c L^2)^{1/(beta c + 1)} T^{beta c/(beta c + 1)}; "
              "pathwise, the growth recursion with expansivity 1 + alpha_t beta.",
    source=f"{HRS}: Lemma 2.5, Lemma 3.6, Thm 3.12 (non-convex)",
    assumptions={**_COMMON_ASSUMPTIONS, 
                 "step_decay": "step sizes non-increasing (alpha_t <= c/t, c = max_t t alpha_t)",
                 "range": "loss values in [0, 1] (declared range and every value seen)"},
    tolerance="pathwise: per-step rounding carried by the growth recursion; expectation: Student-t interval",
)


@sgd_stability_nonconvex_kit.checker
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
        and c > 0 else math.inf  # c = 0: every step size is 0, the runs never move
    return _check_sgd(sgd_stability_nonconvex_kit, run, constants, eta=eta,
                      assumptions={"step_decay": decreasing, "range": in_range},
                      expectation=(value, f"HRS Thm 3.12 with c = {c:.4g}, T = {run.steps}"),
                      confidence=confidence, reasons=reasons, extra={"c": c})


assert_sgd_stability_convex = sgd_stability_convex_kit.assert_


assert_sgd_stability_strongly_convex = sgd_stability_strongly_convex_kit.assert_


assert_sgd_stability_nonconvex = sgd_stability_nonconvex_kit.assert_


sgd_stability_convex_kit.dataclass_cases(random_case, CONTROLS["sgd_stability_convex"])
sgd_stability_strongly_convex_kit.dataclass_cases(random_case, CONTROLS["sgd_stability_strongly_convex"])
sgd_stability_nonconvex_kit.dataclass_cases(random_case, CONTROLS["sgd_stability_nonconvex"])
