"""Claim ``layer_balance``: gradient steps on a homogeneous network grow every layer's squared norm
alike.

By Euler, <W_k, grad_{W_k} L> = d_k sum_n l'(q_n) q_n for every layer k (d_k the degree of f in W_k:
1 for ReLU networks), so under gradient flow D_k = ||W_k||^2 - r_k ||W_{k+1}||^2, r_k = d_k / d_{k+1},
is conserved (per neuron too: ||W_k[i,:]||^2 - r_k ||W_{k+1}[:,i]||^2, r_k = the activation's degree).
For discrete steps W <- W - eta g (any batch) the identity is exact with the eta^2 term:
D_k(T) - D_k(0) = sum_t eta_t^2 (||g_k(t)||^2 - r_k ||g_{k+1}(t)||^2).
Sources: Du, Hu & Lee, NeurIPS 2018, Sec. 2 (balancedness); Poggio et al. Theory III (equal
layer-norm growth).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from ..core.comparisons import comparison
from ..core.devices import gamma, recorded_dtype, unit_roundoff
from ..core.errors import expect
from ..engines.recorder import BalanceTrajectory, Recorder
from ..core.kit import Case, ClaimKit
from ..core.verdict import Verdict
from ..generate.data import alternating_labels
from ..generate.models import build_network
from ..generate.sampling import network_and_batch, random_spec

MAX_SERIES_POINTS = 200
MAX_CONTROL_DRAWS = 20  # a control redraws a network dead on its batch (see _has_gradient)


def _inner_product_error(traj: BalanceTrajectory, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per step and layer, a bound on the error of the computed <W_k, g_k> against the exact gradient's, and per
    step whether that bound is rigorous.

    Where the Recorder formed the roundoff scale S (``grad_scale``): gamma_K d_k S for the backward pass and its
    batch sum (K = 2 x total fan-in + depth + samples) plus gamma_{P_k} sum|W_k * g_k| for the inner product of
    P_k terms. Elsewhere only the estimate gamma_K sum|W_k * g_k|, which misses a gradient whose per-sample terms
    cancel (balanced labels on a linear network: <W, g> 2e4 times below S, measured). gamma_K uses the unit
    roundoff of the arithmetic the step's backward ran in (``grad_roundoff``: a bfloat16 autocast forward on
    float32 weights rounds at 2^-8), never below the weights' own."""
    scale = np.full(traj.steps, np.nan) if traj.grad_scale is None else np.asarray(traj.grad_scale, dtype=float)
    samples = 0 if traj.grad_samples is None or not len(traj.grad_samples) else int(np.max(traj.grad_samples))
    u = _backward_roundoff(traj, dtype)
    count = 2 * traj.fan_in_total + len(traj.layers) + samples
    g_backward = np.where(count * u < 1, count * u / np.maximum(1 - count * u, 1e-300), np.inf)[:, None]
    g_inner = np.array([gamma(size, dtype) for size in traj.sizes])
    known = np.isfinite(scale)
    bound = np.where(known[:, None], g_backward * np.asarray(traj.degrees) * np.where(known, scale, 0.0)[:, None]
                     + g_inner * traj.abs_inner, g_backward * traj.abs_inner)
    return bound, known


def _backward_roundoff(traj: BalanceTrajectory, dtype) -> np.ndarray:
    """Per step, the unit roundoff of the gradient's arithmetic: the recorded one (autocast, half activations),
    at least the weights' dtype's."""
    own = np.full(traj.steps, unit_roundoff(dtype))
    if traj.grad_roundoff is None:
        return own
    seen = np.asarray(traj.grad_roundoff, dtype=float)
    return np.where(np.isfinite(seen), np.maximum(seen, own), own)


def _pair_tolerance(traj: BalanceTrajectory, inner_error: np.ndarray, layers: list[int], weights, u: float,
                    dtype) -> np.ndarray:
    """Roundoff bound on sum_m w_m ||W_m||^2 drift against its eta^2 term (a layer pair: ``layers`` [k, k + 1],
    ``weights`` [1, r_k]; a per-unit symmetry: its members' layers and |exponents|), accumulated step by step.

    Per step: the rounded update (3u (||W^{t+1}||^2 + lr sum|W * g|) per layer), the computed
    gradient's Euler sums (2 lr times ``inner_error``, :func:`_inner_product_error`) and the eta^2 term
    (lr^2 (gamma_n + gamma_T) ||g||^2); plus gamma_n on the four endpoint norms. Returns the running
    bound after each step (length steps).
    """
    weight = np.asarray(weights, dtype=float)
    steps = traj.steps
    n = max(traj.sizes[k] for k in layers)
    lr = traj.lr[:, layers]
    inner_error = inner_error[:, layers]
    per_step = (3 * u * (traj.sq_norms[1:, layers] + lr * traj.abs_inner[:, layers])
                + 2 * lr * inner_error
                + lr ** 2 * (gamma(n, dtype) + gamma(max(steps, 1), dtype)) * traj.grad_sq[:, layers]) @ weight
    endpoints = gamma(n, dtype) * (traj.sq_norms[0, layers] @ weight + traj.sq_norms[1:, layers] @ weight)
    return np.cumsum(per_step) + endpoints


def _finite_prefix(traj: BalanceTrajectory) -> BalanceTrajectory:
    """The run cut before its first step with a non-finite record (the whole run when every record is finite)."""
    if traj.steps == 0:
        return traj
    per_step = [traj.inner, traj.abs_inner, traj.grad_sq, traj.lr, traj.plain_residual, traj.update_norm,
                traj.grad_norm, traj.sq_norms[1:], *(a.reshape(traj.steps, -1) for a in traj.neuron_grad_sq),
                *(a[1:].reshape(traj.steps, -1) for a in traj.neuron_sq)]
    per_step += [] if traj.edited is None else [traj.edited]
    good = np.ones(traj.steps, dtype=bool)
    for array in per_step:
        good &= np.isfinite(np.asarray(array, dtype=float).reshape(traj.steps, -1)).all(axis=1)
    start_finite = np.isfinite(traj.sq_norms[0]).all() and all(np.isfinite(a[0]).all() for a in traj.neuron_sq)
    steps = int(np.argmin(good)) if not good.all() else traj.steps
    steps = steps if start_finite else 0
    if steps == traj.steps:
        return traj
    return dataclasses.replace(
        traj, sq_norms=traj.sq_norms[:steps + 1], inner=traj.inner[:steps], abs_inner=traj.abs_inner[:steps],
        grad_sq=traj.grad_sq[:steps], lr=traj.lr[:steps], plain_residual=traj.plain_residual[:steps],
        update_norm=traj.update_norm[:steps], grad_norm=traj.grad_norm[:steps],
        neuron_sq=tuple(a[:steps + 1] for a in traj.neuron_sq),
        neuron_grad_sq=tuple(a[:steps] for a in traj.neuron_grad_sq),
        edited=None if traj.edited is None else traj.edited[:steps],
        outputs=None if traj.outputs is None else traj.outputs[:steps],
        grad_scale=None if traj.grad_scale is None else traj.grad_scale[:steps],
        grad_roundoff=None if traj.grad_roundoff is None else traj.grad_roundoff[:steps],
        grad_reused=None if traj.grad_reused is None else traj.grad_reused[:steps],
        grad_samples=None if traj.grad_samples is None else traj.grad_samples[:steps])


def _pair_name(pair) -> str:
    """A symmetry as its slices with exponents, e.g. ``a.weight[0]^1 * b.weight[1]^-1``."""
    return " * ".join(f"{m.layer}[{m.axis}{'' if m.layout == 'whole' else ', ' + m.layout}]^{m.exponent:g}"
                      for m in pair.members)


def _per_neuron_part(traj: BalanceTrajectory) -> dict:
    """What the per-neuron identity could be judged on: every weight in a measured per-unit symmetry (judged),
    weights in none (vacuous for them: their units have no rescaling symmetry, so the theorem says nothing per
    neuron), or symmetries that could not be measured (inconclusive for them)."""
    unmeasured = [layer for _, layer, why in traj.unpaired if "not measured" in why]
    without = [layer for _, layer, why in traj.unpaired if "not measured" not in why]
    status = "inconclusive" if unmeasured else "vacuous" if without else "judged"
    if not traj.pairs and not traj.unpaired:
        status = "not recorded"
    return {"status": status, "judged_symmetries": len(traj.pairs), "without_symmetry": without,
            "not_measured": unmeasured, "why": [why for _, _, why in traj.unpaired][:1]}


def _subsample_index(length: int) -> np.ndarray:
    """At most MAX_SERIES_POINTS indices spread over range(length), first and last included."""
    return np.unique(np.linspace(0, length - 1, min(length, MAX_SERIES_POINTS)).astype(int))


def _plain_step_observation(traj: BalanceTrajectory, u: float) -> tuple[bool, dict]:
    """Is every update -lr * grad to roundoff? Tolerance 2u (||W^{t+1}|| + 2 lr ||g||) (rounded step)."""
    step = traj.lr * traj.grad_norm
    allowed = 2 * u * (np.sqrt(traj.sq_norms[1:]) + 2 * step)
    ok = traj.plain_residual <= allowed
    # <update, g> recovered from ||update + lr g||^2 = ||update||^2 + 2 lr <update, g> + lr^2 ||g||^2
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = (traj.plain_residual ** 2 - traj.update_norm ** 2 - step ** 2) / (2 * traj.lr)
        cosine = np.where(traj.update_norm * traj.grad_norm > 0, -inner / (traj.update_norm * traj.grad_norm), 1.0)
        relative = np.where(step > 0, traj.plain_residual / step, 0.0)
    worst = np.unravel_index(np.argmax(relative), relative.shape) if relative.size else (0, 0)
    informative = int((step > allowed).sum())  # steps where a non-gradient update could be seen at all
    return bool(ok.all()), {"informative_steps": informative, "worst_relative_deviation": float(relative.max()) if relative.size else 0.0,
                            "worst_step": int(worst[0]), "worst_layer": traj.layers[worst[1]] if relative.size else None,
                            "min_update_gradient_cosine": float(np.nanmin(cosine)) if cosine.size else 1.0,
                            "steps_not_plain": int((~ok).any(1).sum())}


def _euler_observation(traj: BalanceTrajectory, error: np.ndarray, known: np.ndarray) -> tuple[bool | None, dict]:
    """Do the gradient's Euler sums <W_k, g_k>/d_k agree across layers at every step? For the gradient of
    any loss of f they all equal sum_n l'(f_n) f_n (Euler); each computed sum is within
    ``error`` / d_k of it (:func:`_inner_product_error`, rigorous where ``known``), so the spread about their
    mean is allowed twice the largest.
    Undecided (None) when a spread beyond the estimate falls on a step without a rigorous bound."""
    degrees = np.asarray(traj.degrees)
    per_degree = traj.inner / degrees
    spread = np.abs(per_degree - per_degree.mean(1, keepdims=True)).max(1)
    allowed = 2 * (error / degrees).max(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.where(spread > allowed, spread / np.where(allowed > 0, allowed, np.nan), 0.0)
    step = int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))) if len(excess) else 0
    off = spread > allowed
    agree = True if not off.any() else False if (off & known).any() else None
    return agree, {
        "steps_off": int(off.sum()), "worst_step": step,
        "worst_spread": float(spread[step]) if len(spread) else 0.0,
        "allowed": float(allowed[step]) if len(allowed) else 0.0,
        "rigorous_steps": int(known.sum()),
        "reused_steps_off": int((off & np.asarray(traj.grad_reused if traj.grad_reused is not None
                                                  else np.zeros(len(off), dtype=bool))).sum()),
        "per_degree_sums": per_degree[step].tolist() if len(per_degree) else []}


_TOLERANCE_BASIS = ("roundoff accumulated over the steps: 3u(||W'||^2 + lr sum|W*g|) for each rounded update, 2 lr "
                    "(gamma_K d_k S + gamma_P sum|W*g|) for the computed gradient's Euler sums (S: the backward pass's "
                    "roundoff scale sum_n |l'_n| A_n, A the network on |x| with |W|; gamma_K in the arithmetic the "
                    "backward ran in, autocast's included; a reused gradient keeps the S of the pass that computed it, "
                    "carried by the growth of sum|W*g|), lr^2 (gamma_n + gamma_T) ||g||^2 "
                    "for the eta^2 term, gamma_n on the endpoint norms; the eta^2 term is the exact discrete correction")


kit = ClaimKit(
    id="layer_balance",
    statement="Plain gradient steps on a bias-free homogeneous network change D_k = ||W_k||^2 - r_k ||W_{k+1}||^2 "
              "(r_k = d_k / d_{k+1}, 1 for ReLU; and each neuron's ||W_k[i,:]||^2 - r_k ||W_{k+1}[:,i]||^2) by exactly "
              "eta^2 (||g_k||^2 - r_k ||g_{k+1}||^2) per step; under gradient flow D_k is conserved.",
    source="Du, Hu & Lee, NeurIPS 2018, Sec. 2 (invariance of squared-norm differences under gradient flow, per "
           "neuron and per layer, fully connected and convolutional); Poggio et al., Theory III",
    assumptions={
        "plain": "updates are plain gradient steps (update = -lr * grad)",
        "common_lr": "one step size for all layers",
        "no_bias": "no bias parameters",
        "grads": "every layer has a gradient at every step",
        "two_layers": "at least two weight layers",
        "homogeneous": "network positively homogeneous on X",
        "euler": ("gradients are a loss gradient of the homogeneous f: Euler sums <W_k, g_k>/d_k agree across layers "
                 "(no penalty, clipping or noise)"),
        "unedited": "weights unchanged between optimizer steps"},
    tolerance="roundoff of the rounded updates, the gradient's Euler sums and the eta^2 term, accumulated per step",
)


@kit.checker
def check_layer_balance(trajectory: BalanceTrajectory, *, seed=None) -> Verdict:
    """Check the exact discrete balance identity (layer-wise and per neuron) on a recorded run."""
    expect(isinstance(trajectory, BalanceTrajectory), expected="a BalanceTrajectory (Recorder(...).trajectory)",
           received=type(trajectory).__name__, fix="attach theorycheck.Recorder(model, optimizer) to your loop "
           "and pass rec.trajectory")
    traj = trajectory
    dtype = recorded_dtype(traj.dtype)  # a float16/bfloat16 run is judged with its own roundoff
    u = unit_roundoff(dtype)
    common = dict(device=traj.device, dtype=traj.dtype)
    seen = _finite_prefix(traj)  # the assumptions are judged on the steps before any overflow or NaN
    finite = seen.steps == traj.steps
    plain, plain_details = _plain_step_observation(seen, u) if seen.steps else (True, {})
    inner_error, bounded = _inner_product_error(seen, dtype) if seen.steps else (None, None)
    euler, euler_details = _euler_observation(seen, inner_error, bounded) if seen.steps else (True, {})
    edited = seen.edited if seen.edited is not None else np.zeros((seen.steps, len(seen.layers)))
    assumptions = {
        "plain": plain,
        "common_lr": bool((seen.lr == seen.lr[:, :1]).all()) if seen.steps else True,
        "no_bias": not traj.non_weight_parameters,
        "grads": traj.missing_gradients == 0,
        "two_layers": len(traj.layers) >= 2,
        "euler": euler,
        "unedited": bool((edited == 0).all()),
    }
    if traj.homogeneity is not None:
        assumptions["homogeneous"] = traj.homogeneity.homogeneous
    frozen = bool(seen.steps) and plain_details["informative_steps"] == 0
    if traj.steps == 0 or len(traj.layers) < 2 or not finite or frozen:
        reason = ("no optimizer step recorded: run at least one step with the Recorder attached"
                  if traj.steps == 0 else "fewer than two weight layers: nothing to balance"
                  if len(traj.layers) < 2 else f"non-finite norms or gradients (overflow or NaN) from step "
                  f"{seen.steps}; the assumptions are judged on the {seen.steps} step(s) before" if not finite
                  else "every update lr*||g|| was below the weights' roundoff: the run tests nothing")
        # a frozen or overflowing run tests nothing, but an assumption it was seen to break (a weight-decay or
        # momentum update is visible even when lr*||g|| is below roundoff, or in the steps before an overflow)
        # already makes the theorem silent: vacuous
        return kit.decide(assumptions=assumptions, inconclusive=traj.steps == 0, undecided=frozen or not finite,
                          details={"plain_steps": plain_details}, reason=reason, **common)

    pairs, worst = {}, None
    index = _subsample_index(traj.steps + 1)
    drift_lines, unexplained_lines = {}, {}
    for k in range(len(traj.layers) - 1):
        name = f"{traj.layers[k]} -> {traj.layers[k + 1]}"
        r = traj.degrees[k] / traj.degrees[k + 1]
        balance = traj.sq_norms[:, k] - r * traj.sq_norms[:, k + 1]
        eta_term = np.concatenate([[0.0], np.cumsum(traj.lr[:, k] ** 2 * traj.grad_sq[:, k]
                                                    - r * traj.lr[:, k + 1] ** 2 * traj.grad_sq[:, k + 1])])
        drift = balance - balance[0]
        residual = drift - eta_term
        tol = np.concatenate([[0.0], _pair_tolerance(traj, inner_error, [k, k + 1], [1.0, r], u, dtype)])
        ratio = float(np.abs(residual[1:]).max() / tol[-1]) if tol[-1] > 0 else math.inf
        # the size of what D_k is made of: a tolerance at least this large cannot see any change of D_k
        scale = float((traj.sq_norms[:, k] + r * traj.sq_norms[:, k + 1]).max())
        pairs[name] = {"degree_ratio": r, "drift": float(drift[-1]), "eta2_term": float(eta_term[-1]),
                       "residual": float(residual[-1]), "max_abs_residual": float(np.abs(residual).max()), "tolerance": float(tol[-1]),
                       "ratio": ratio, "scale": scale, "resolved": bool(tol[-1] < scale)}
        drift_lines[f"D_{k + 1}"] = drift[index].tolist()
        unexplained_lines[f"D_{k + 1}"] = np.abs(residual[index]).tolist()
        if worst is None or ratio > pairs[worst]["ratio"]:
            worst = name
    steps = index.tolist()
    series = {
        "||W_k||^2": {"x": steps, "y": {f"layer {k + 1}": traj.sq_norms[index, k].tolist()
                                        for k in range(len(traj.layers))}, "xlabel": "step"},
        "D_k(t) - D_k(0)": {"x": steps, "y": drift_lines, "xlabel": "step", "yscale": "symlog"},
        "|drift - eta^2 term|": {"x": steps, "y": unexplained_lines, "xlabel": "step", "yscale": "symlog"},
    }

    neurons = {}
    for p, pair in enumerate(traj.pairs):
        # Q_j = sum_m s_m ||W_m,j||^2 changes by sum_m s_m lr_m^2 ||g_m,j||^2 per step (unit_pairing)
        members = [traj.layers.index(m.layer) for m in pair.members]
        exponents = np.array([m.exponent for m in pair.members])
        lr = traj.lr[:, members][:, :, None]
        q = np.einsum("m,tmj->tj", exponents, traj.neuron_sq[p])
        eta_term = np.einsum("m,tmj->j", exponents, lr ** 2 * traj.neuron_grad_sq[p])
        residual = q[-1] - q[0] - eta_term
        # each unit's roundoff terms are parts of its layers' terms: the members' layer bound covers it
        tol = _pair_tolerance(traj, inner_error, members, np.abs(exponents), u, dtype)[-1]
        unit = int(np.argmax(np.abs(residual)))
        neurons[_pair_name(pair)] = {"units": pair.units, "worst_unit": unit, "residual": float(residual[unit]),
                                     "tolerance": float(tol),
                                     "ratio": float(abs(residual[unit]) / tol) if tol > 0 else math.inf}
    per_neuron = _per_neuron_part(traj)
    worst_neuron = max(neurons, key=lambda n: neurons[n]["ratio"], default=None)
    reasons = []
    if pairs[worst]["ratio"] > 1:
        reasons.append(f"D ({worst}) drifted by {pairs[worst]['residual']:.1e} beyond the eta^2 term "
                       f"{pairs[worst]['eta2_term']:.1e}, allowed {pairs[worst]['tolerance']:.1e}")
    if worst_neuron is not None and neurons[worst_neuron]["ratio"] > 1:
        reasons.append(f"neuron {neurons[worst_neuron]['worst_unit']} of {worst_neuron} drifted by "
                       f"{neurons[worst_neuron]['residual']:.1e}, allowed {neurons[worst_neuron]['tolerance']:.1e}")
    if per_neuron["status"] in ("vacuous", "inconclusive"):
        layers = per_neuron["without_symmetry"] + per_neuron["not_measured"]
        reasons.append(f"per-neuron identity {per_neuron['status']} for {layers} ({per_neuron['why'][0]}); the "
                       "layer-wise identity is judged")
    if not plain:
        reasons.append(f"update/gradient cosine {plain_details['min_update_gradient_cosine']:.3f}, relative "
                       f"deviation {plain_details['worst_relative_deviation']:.1e} in {plain_details['steps_not_plain']}"
                       f" step(s) ({traj.optimizer}: momentum, weight decay or adaptive steps?)")
    if euler is None:
        reasons.append(f"Euler sums <W_k, g_k>/d_k disagree by {euler_details['worst_spread']:.2e} at step "
                       f"{euler_details['worst_step']}, beyond the estimate {euler_details['allowed']:.2e} from "
                       "sum|W*g|, on steps whose gradient roundoff was not bounded (the Recorder saw no backward pass "
                       "through the model's output): undecided")
    if euler is False:
        reasons.append(f"Euler sums <W_k, g_k>/d_k = {euler_details['per_degree_sums']} disagree by "
                       f"{euler_details['worst_spread']:.2e} > {euler_details['allowed']:.2e} at step "
                       f"{euler_details['worst_step']} ({euler_details['steps_off']} step(s)): the gradient is not a "
                       "loss gradient of f (a penalty, per-layer or value clipping, noise, or wrong degrees?)"
                       + (f"; {euler_details['reused_steps_off']} of those step(s) reused the previous step's gradient "
                          "with no backward pass since (a gradient of earlier weights)"
                          if euler_details["reused_steps_off"] else ""))
    if not assumptions["unedited"]:
        step, layer = np.unravel_index(int(np.argmax(edited)), edited.shape)
        reasons.append(f"{traj.layers[layer]} changed by {edited[step, layer]:.2e} between steps {step - 1} and "
                       f"{step}, outside the optimizer")
    if traj.non_weight_parameters:
        reasons.append(f"bias/non-weight parameters: {list(traj.non_weight_parameters)}")
    if traj.homogeneity is not None and traj.homogeneity.homogeneous is not True:
        reasons.append(f"on X: {traj.homogeneity.summary()}")
    parts = [comparison(f"D ({name}) drift - eta^2 term, max over steps", pair["max_abs_residual"], 0.0,
                        pair["tolerance"], _TOLERANCE_BASIS) for name, pair in pairs.items()]
    parts += [comparison(f"neuron {n['worst_unit']} of {name}: drift - eta^2 term", abs(n["residual"]), 0.0,
                         n["tolerance"], "the layer pair's bound (each unit's roundoff terms are parts of its layers')")
              for name, n in neurons.items()]
    held = all(part.held for part in parts)
    unbounded = not bounded.all()  # past the early return the run is finite: seen is traj
    if unbounded and not held:
        reasons.append("the drift exceeds a tolerance whose gradient-roundoff term is an estimate (the Recorder saw no "
                       "backward pass through the model's output on some steps): undecided")
    unresolved = [name for name, pair in pairs.items() if not pair["resolved"]]
    if held and unresolved:
        reasons.append(f"the roundoff bound of {unresolved} is at least max_t (||W_k||^2 + r ||W_k+1||^2) "
                       f"({pairs[unresolved[0]]['tolerance']:.3g} >= {pairs[unresolved[0]]['scale']:.3g}): the "
                       "arithmetic the run used cannot resolve D_k at all, so its holding says nothing: undecided")
    return kit.decide(
        assumptions=assumptions, undecided=(unbounded and not held) or (held and bool(unresolved)), comparisons=parts,
        details={"steps": traj.steps, "optimizer": traj.optimizer, "pairs": pairs, "neurons": neurons,
                 "plain_steps": plain_details, "euler_sums": euler_details,
                 "max_edit_between_steps": float(edited.max(initial=0.0)),
                 "neurons_unpaired": [{"lower": lo, "upper": up, "why": why} for lo, up, why in traj.unpaired],
                 "per_neuron": per_neuron, "roles": traj.roles,
                 "series": series},
        reason="; ".join(reasons), **common)


assert_layer_balance = kit.assert_


OPTIMIZERS = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "weight_decay": lambda params, lr: torch.optim.SGD(params, lr=lr, weight_decay=1e-2),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
}


def _penalty(model, generator):  # the gradient of 0.01 sum ||W||^2 added to the loss
    for p in model.parameters():
        p.grad.add_(p.detach(), alpha=2e-2)


def _clip_each_layer(model, generator):  # every layer clipped to half the smallest layer's gradient norm
    cap = 0.5 * min(float(p.grad.norm()) for p in model.parameters())
    for p in model.parameters():
        torch.nn.utils.clip_grad_norm_([p], cap)


def _clip_value(model, generator):
    torch.nn.utils.clip_grad_value_(model.parameters(), 0.5 * max(float(p.grad.abs().max()) for p in model.parameters()))


def _noise(model, generator):  # 1% of each layer's gradient norm
    for p in model.parameters():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.grad)
        p.grad.add_(noise * (1e-2 * p.grad.norm() / noise.norm()))


def _edit_first_layer(model, generator):
    with torch.no_grad():
        next(iter(model.parameters())).mul_(1.01)


# loops outside the theorem though every update is -lr * (recorded grad): gradient edits before each step
LOOP_CONTROLS = {"l2_penalty": _penalty, "clip_per_layer": _clip_each_layer, "clip_value": _clip_value,
                 "noise": _noise}
BETWEEN_STEPS = {"edit_between": _edit_first_layer}  # weights changed after each step


def recorded_run(model, X, y, *, optimizer="sgd", lr=0.05, steps=20, batch=None, seed=0,
                 loop_control=None) -> BalanceTrajectory:
    """Train ``model`` with the summed logistic loss on minibatches and return the recorded trajectory.

    ``optimizer`` is one of :data:`OPTIMIZERS` (plain SGD, and the negative controls); ``loop_control`` one
    of :data:`LOOP_CONTROLS` or :data:`BETWEEN_STEPS` (a loop that edits gradients or weights).
    """
    expect(optimizer in OPTIMIZERS, expected=f"optimizer in {sorted(OPTIMIZERS)}", received=repr(optimizer),
           fix="choose one of those")
    expect(loop_control is None or loop_control in {**LOOP_CONTROLS, **BETWEEN_STEPS},
           expected=f"loop_control None or in {sorted({**LOOP_CONTROLS, **BETWEEN_STEPS})}",
           received=repr(loop_control), fix="choose one of those")
    opt = OPTIMIZERS[optimizer](model.parameters(), lr)
    generator = torch.Generator().manual_seed(seed)
    batch = batch or len(X)
    with Recorder(model, opt) as rec:
        for _ in range(steps):
            index = torch.randperm(len(X), generator=generator)[:batch].to(X.device)
            opt.zero_grad()
            margins = y[index] * model(X[index]).reshape(-1)
            torch.nn.functional.softplus(-margins).sum().backward()
            if loop_control in LOOP_CONTROLS:
                LOOP_CONTROLS[loop_control](model, generator)
            opt.step()
            if loop_control in BETWEEN_STEPS:
                BETWEEN_STEPS[loop_control](model, generator)
        return rec.trajectory


def _has_gradient(spec, seed: int, batch: int, dtype: str) -> bool:
    """Does the loss of ``recorded_run`` have a nonzero gradient at the start? On a network dead on its batch (every
    ReLU unit off) no optimizer moves anything, so a control there shows nothing (the checker says inconclusive)."""
    model, X = network_and_batch(spec, seed, batch, "cpu", dtype)
    y = alternating_labels(batch, dtype=X.dtype)
    torch.nn.functional.softplus(-y * model(X).reshape(-1)).sum().backward()
    return any(p.grad is not None and bool(p.grad.any()) for p in model.parameters())


def _sgd_case(rng, device: str, dtype: str, control: str | None = None) -> Case:
    """A plain-SGD run (or, with ``control``, a momentum / weight-decay / Adam / biased / edited one) of 5-30
    steps on a random homogeneous network of depth 1-3 and 2-16 samples; a control redraws a network that has no
    gradient on its batch."""
    for _ in range(MAX_CONTROL_DRAWS):
        spec = random_spec(rng, breaks="bias" if control == "bias" else None, depth=int(rng.integers(1, 4)))
        instance_seed, batch = int(rng.integers(2**31)), int(rng.integers(2, 17))
        if control is None or _has_gradient(spec, instance_seed, batch, dtype):
            break
    lr, steps = float(10 ** rng.uniform(-3, -1)), int(rng.integers(5, 31))
    optimizer = control if control in OPTIMIZERS else "sgd"
    loop = control if control in LOOP_CONTROLS or control in BETWEEN_STEPS else None

    def run():
        model, X = network_and_batch(spec, instance_seed, batch, device, dtype)
        y = alternating_labels(batch, dtype=X.dtype, device=X.device)
        return check_layer_balance(recorded_run(model, X, y, optimizer=optimizer, lr=lr, steps=steps,
                                                seed=instance_seed, loop_control=loop), seed=instance_seed)

    return Case(run=run, size=sum(p.numel() for p in build_network(spec).parameters()), reproduce=(
        f"import torch, theorycheck as tc; from theorycheck.generate.models import NetworkSpec; "
        f"from theorycheck.generate.sampling import network_and_batch; "
        f"from theorycheck.claims.layer_balance import recorded_run; "
        f"m, X = network_and_batch({spec.repr_line()}, seed={instance_seed}, batch={batch}, "
        f"device={device!r}, dtype={dtype!r}); y = torch.where(torch.arange({batch}) % 2 == 0, 1.0, "
        f"-1.0).to(X); print(tc.check_layer_balance(recorded_run(m, X, y, optimizer={optimizer!r}, "
        f"lr={lr!r}, steps={steps}, seed={instance_seed}, loop_control={loop!r})).summary())"))


kit.instances(_sgd_case)
for _control in ("momentum", "weight_decay", "adam", "bias", *LOOP_CONTROLS, *BETWEEN_STEPS):
    kit.control(_control, expect="vacuous")(functools.partial(_sgd_case, control=_control))


@kit.battery
def battery_check(model, X, y, *, seed):
    """The battery adapter: layer balance along a recorded plain-SGD run of the family's model."""
    return check_layer_balance(recorded_run(model, X, y, seed=seed), seed=seed)
