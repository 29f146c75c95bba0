"""Claim ``kkt``: the direction gradient flow converges to is a KKT point of the max-margin problem,
with multipliers only on support vectors, which share the minimum margin.

Problem (P): minimize ||theta||^2 / 2 subject to q_n(theta) >= 1. Lyu & Li (ICLR 2020), Thm 4.4 and
Defs C.5/C.6: every limit direction of gradient flow on an L-homogeneous network with an
exponential-type loss is along a KKT point of (P); along the run, theta / q_min^{1/L} is an
(eps, delta)-KKT point with eps, delta -> 0: ||theta~ - sum lambda_n h_n|| <= eps and
lambda_n (q_n(theta~) - 1) <= delta, lambda >= 0, h_n in the (Clarke) subdifferential of q_n. Theory III
(Poggio, Liao & Banburski, Nat. Commun. 2020): "the surviving terms are the support vectors".
Linear case: Soudry, Hoffer, Nacson, Gunasekar & Srebro (JMLR 2018): w(t) / ||w(t)|| -> the hard-margin
SVM direction at rate O(1 / log t).

Multipliers: one bounded least squares problem (scipy.optimize.lsq_linear, BVLS) for stationarity AND
complementary slackness, min ||theta~ - G lambda||^2 + sum_n (L lambda_n (q~_n - 1) / ||theta~||)^2 over
0 <= lambda, with delta <= 1/(e q_min): the delta the flow's own multipliers lambda ~ exp(-q) never exceed.
Stationarity alone is not enough: with more samples than parameters it is solved exactly by many
lambda, most of them on non-support points. For networks with kinks (ReLU, max-pooling) the columns of
G are gradients at theta~ and at a few points within a relative radius r (Goldstein's r-subdifferential;
r = the run's per-step error tolerance, within which the flow's position is known), so that a state
sliding along a kink is judged with both one-sided gradients.

What a run decides: eps, delta -> 0 is a limit without a rate (eps may rise before it falls), so a run holds
where they decrease (or reach their roundoff) and is inconclusive otherwise, at any length; it is violated only by
what the theorem excludes at a finite time, the smoothed margin falling between snapshots beyond the run's own
allowance (Thm 4.1, exact for the flow). Homogeneity is joint in the trained parameters
(:mod:`theorycheck.engines.joint_homogeneity`), the only kind Lyu & Li assume.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
from scipy.optimize import lsq_linear, nnls

from ..core.devices import gamma
from ..engines.dynamics import DEFAULT_RTOL
from ..engines.flat_network import FlatNetwork, twice_differentiable
from ..engines.joint_homogeneity import run_degree
from ..engines.trajectory import Trajectory
from ..core.errors import expect
from ..engines.losses import get_loss
from ..core.kit import Case, ClaimKit
from ..engines.svm import angle, hard_margin_svm
from ..core.inputs import as_batch, as_labels
from ..core.verdict import Verdict
from .margin import (AUDIT_FAMILIES, RUN_ASSUMPTIONS, admitted, instance_line, largest_drop, random_instance,
                     run_assumptions, separation_index, trained, with_redraws)

NEAR_SUPPORT_DECADES = tuple(range(1, 8))  # Lyu & Li's counts #{q_n < q_min + ln 10^k}
# the support: samples whose loss is within 10^7 of the largest (Lyu & Li's widest band). Support vectors
# keep margins within O(1) of q_min (Soudry et al.: log of their dual-variable ratios), the others fall
# behind by a multiple of log t
SUPPORT_BAND = 7 * math.log(10)
GOLDSTEIN_SAMPLES = 8
GOLDSTEIN_STEPS = 3  # radius = 3 x the run's per-step relative error tolerance: where the flow is within a few steps
MIN_SNAPSHOTS = 3


def _subdifferential_columns(net: FlatNetwork, theta: torch.Tensor, radius: float, seed: int) -> list[torch.Tensor]:
    """Per-sample gradients of q at theta and, for radius > 0, at GOLDSTEIN_SAMPLES points within
    radius ||theta|| (each an N x P matrix)."""
    q, A = net.margin_jacobian(theta)
    blocks = [A]
    if radius > 0:
        generator = torch.Generator().manual_seed(seed)
        for _ in range(GOLDSTEIN_SAMPLES):
            direction = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
            point = theta + radius * float(theta.norm()) * direction / direction.norm()
            blocks.append(net.margin_jacobian(point)[1])
    return [q] + blocks


def delta_limit(q_min: float) -> float:
    """1 / (e q_min): the delta that the flow's own multipliers lambda_n ~ exp(-q_n) never exceed at min margin
    q_min (any L, any loss). Their term n is beta^2 e^{-(q_n - q_min)} (q_n - q_min) / sum_m e^{-(q_m - q_min)} q_m
    <= max_x x e^{-x} / q_min (beta = cos(theta~, sum lambda h) <= 1). For the exp loss q_min >= log(1/L), so
    this is Lyu & Li's delta = O(1 / log(1/L)) (Thm 4.4, Lemma C.x) with its constant."""
    return 1.0 / (math.e * q_min)


def kkt_point(net: FlatNetwork, theta: torch.Tensor, degree: float, *, radius: float = 0.0, seed: int = 0,
              multipliers=None) -> dict:
    """(eps, delta)-KKT measurements of (P) at theta~ = theta / q_min^{1/L} (Lyu & Li Def C.5).

    ``eps`` = ||theta~ - sum_n lambda_n h_n|| / ||theta~||; ``delta`` = max_n lambda_n (q~_n - 1) L / ||theta~||^2
    (the largest share of ||theta~||^2 = sum_n lambda_n L q~_n carried by a constraint that is not tight).
    The multipliers are the least-squares solution (stationarity and complementary slackness) with
    lambda >= 0 and delta <= :func:`delta_limit` (q_min), so eps is the smallest residual among multipliers
    as good in delta as the flow's. ``multipliers``: evaluate these lambda (one per sample, for the
    gradients at theta) instead. Also the flow's own certificate lambda_n ~ exp(-q_n) (``eps_flow``,
    ``delta_flow``), and the roundoff of eps and delta (``eps_roundoff``, ``delta_roundoff``).
    """
    q, *blocks = _subdifferential_columns(net, theta, radius, seed)
    q64 = q.detach().double().cpu().numpy()
    N, L = len(q64), float(degree)
    q_min = float(q64.min())
    out = {"q_min": q_min, "margins": q64}
    if not q_min > 0:
        return out
    scale = q_min ** (1.0 / L)
    target = (theta / scale).detach().double().cpu().numpy()
    norm2 = float(target @ target)
    G = np.concatenate([(b.T * scale ** (-(L - 1))).detach().double().cpu().numpy() for b in blocks], axis=1)
    owner = np.tile(np.arange(N), len(blocks))
    slack = q64 / q_min - 1.0
    weight = L / math.sqrt(norm2)
    limit = delta_limit(q_min)
    # roundoff: the margins (and through them slack and the rescaling) to gamma_K |f|(|theta|, |x|) (Higham);
    # eps to (gamma_K + gamma_m) (||G||_F ||lambda|| + ||theta~||) (gradients and the least-squares residual)
    terms = net.dot_product_terms()
    u_K = gamma(terms, theta.dtype)
    u_m = gamma(G.shape[0] + G.shape[1], torch.float64)
    q_error = u_K * net.absolute_outputs(theta).detach().double().cpu().numpy() / q_min
    G_norm = float(np.linalg.norm(G))

    def measure(lam_columns: np.ndarray) -> dict:
        lam = np.bincount(owner, weights=lam_columns, minlength=N)
        eps = float(np.linalg.norm(target - G @ lam_columns) / math.sqrt(norm2))
        delta = float(np.max(lam * slack) * L / norm2)
        return {"eps": eps, "delta": delta, "multipliers": lam,
                "multiplier_roundoff": u_m * float(np.max(np.abs(lam))) if lam.size else 0.0,
                "eps_roundoff": (u_K + u_m) * (G_norm * float(np.linalg.norm(lam_columns)) + math.sqrt(norm2))
                / math.sqrt(norm2),
                "delta_roundoff": float(np.max(lam * (q_error + u_K * np.abs(slack)))) * L / norm2 + u_K * abs(delta)}

    if multipliers is None:
        upper = np.full(len(owner), np.inf)
        loose = slack[owner] > 0
        upper[loose] = limit * norm2 / (L * slack[owner][loose]) / len(blocks)
        system = np.vstack([G, np.diag(weight * slack[owner])])
        rhs = np.concatenate([target, np.zeros(len(owner))])
        # the NNLS optimum is the bounded one whenever its per-sample multipliers meet delta <= limit (a subset
        # of the feasible set containing it); else bounded-variable least squares, each of a sample's columns
        # held to its share of the bound
        solution, _ = nnls(system, rhs, maxiter=50 * system.shape[1])
        summed = np.bincount(owner, weights=solution, minlength=N)
        if not (summed * np.maximum(slack, 0.0) * L / norm2 <= limit).all():
            solution = np.clip(lsq_linear(system, rhs, bounds=(np.zeros(len(owner)), upper), method="bvls").x,
                               0.0, upper)  # BVLS can leave its bounds by roundoff
    else:
        solution = np.zeros(len(owner))
        solution[:N] = np.asarray(multipliers, dtype=np.float64).reshape(-1)
    decided = measure(solution)
    lam = decided["multipliers"]
    flow = np.exp(-(q64 - q_min))
    direction = G[:, :N] @ flow
    c = max(float(target @ direction) / float(direction @ direction), 0.0)
    flow_columns = np.zeros(len(owner))
    flow_columns[:N] = c * flow
    certificate = measure(flow_columns)
    shares = lam * L * q64 / q_min / norm2
    support = np.flatnonzero(q64 < q_min + SUPPORT_BAND)
    out.update(decided, shares=shares, support=support, delta_limit=limit,
               off_support_share=float(shares[np.setdiff1d(np.arange(N), support)].sum()),
               near_support={k: int((q64 < q_min + k * math.log(10)).sum()) for k in NEAR_SUPPORT_DECADES},
               eps_flow=certificate["eps"], delta_flow=certificate["delta"])
    return out


def linear_weights(model: torch.nn.Module) -> np.ndarray | None:
    """The weight vector of a one-layer linear model (a single bias-free Linear layer, after optional
    Flatten/Identity), else None."""
    from torch import nn

    modules = [m for m in model.modules() if not isinstance(m, (nn.Sequential, nn.Flatten, nn.Identity))]
    params = list(model.parameters())
    if len(modules) == 1 and isinstance(modules[0], nn.Linear) and len(params) == 1:
        return params[0].detach().double().cpu().numpy().reshape(-1)
    return None


def snapshot_margins(trajectory: Trajectory, snaps: list, margins: list) -> dict:
    """The smoothed margin l^{-1}(L) / ||theta||^L (L the run's degree, as recorded) recomputed from each snapshot's
    parameters and margins, and its
    largest fall between two snapshots against the run's allowance: the margin drift the run recorded between
    their records (sum of ||grad gamma~|| x local error estimates) plus the recorded roundoff at both."""
    loss = get_loss(trajectory.loss)
    r = trajectory.records
    values = np.array([float(loss.margin_numerator(loss.log_total(torch.as_tensor(q, dtype=torch.float64))))
                       / float(np.linalg.norm(s.theta)) ** trajectory.degree for s, q in zip(snaps, margins)])
    if len(snaps) < 2:
        return {"values": values.tolist(), "drop": -math.inf, "allowed": 0.0, "pair_log_inverse_loss": [math.nan] * 2}
    records = [s.record for s in snaps]
    drift = np.nan_to_num(r["margin_drift"], nan=0.0)
    between = np.array([0.0] + [float(drift[a + 1:b + 1].sum()) for a, b in zip(records, records[1:])])
    roundoff = np.nan_to_num(np.asarray(r["margin_roundoff"])[records], nan=0.0)
    drop, allowed, i, j = largest_drop(values, between, roundoff)
    return {"values": values.tolist(), "drop": drop, "allowed": allowed,
            "pair_log_inverse_loss": [-snaps[i].log_loss, -snaps[j].log_loss]}


def _trend_ratio(values: list[float]) -> float:
    """The median of the last third over the median of the first third (below 1: decreasing)."""
    third = max(1, len(values) // 3)
    return float(np.median(values[-third:]) / max(np.median(values[:third]), 1e-300))


def _trend(values: list[float]) -> bool:
    return _trend_ratio(values) < 1


def _soudry_rate(angles: list[float], log_ts: list[float]) -> dict:
    """angle x log t (bounded under the O(1/log t) rate) and the slope of log angle against log log t."""
    keep = [(a, t) for a, t in zip(angles, log_ts) if a > 0 and t > 1]
    out = {"angle_times_log_t": [a * t for a, t in keep]}
    if len(keep) >= 2:
        x = np.log([t for _, t in keep])
        out["log_log_slope"] = float(np.polyfit(x, np.log([a for a, _ in keep]), 1)[0])
    return out


kit = ClaimKit(
    id="kkt",
    streams_from="margin_monotone",  # the same case names draw the same runs: each flow is trained once
    statement="Along gradient flow on an L-homogeneous network with an exponential-type loss, theta / q_min^{1/L} is an "
              "(eps, delta)-KKT point of min ||theta||^2/2 s.t. q_n >= 1 with eps, delta -> 0: the limit direction is a "
              "KKT point whose multipliers sit on support vectors of equal (minimum) margin; for linear models it is "
              "the hard-margin SVM direction, reached at rate O(1/log t).",
    source="Lyu & Li, ICLR 2020, Thm 4.4, Defs C.5-C.6; Soudry et al., JMLR 2018, Thm 3; Poggio, Liao & Banburski, "
           "Nat. Commun. 2020",
    assumptions={**RUN_ASSUMPTIONS, "separated": "theta separates the data (q_min > 0)"},  # a run's: margin's
    tolerance="delta <= 1/(e q_min) (the flow's own multipliers' bound) at every state; eps and delta decrease "
              "along the run or reach their roundoff (a missing decrease is inconclusive: the limit has no rate); "
              "violated by a smoothed margin falling at the snapshots beyond the run's allowance; a single state "
              "only as an exact KKT point (eps within roundoff)",
)


@kit.checker(samples=("X", "y"), finite=("multipliers",))
def check_kkt(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, trajectory: Trajectory | None = None,
              multipliers=None, degree: float | None = None, loss: str = "exp", radius: float | None = None,
              seed: int | None = None) -> Verdict:
    """Check that ``model``'s direction is an approximate KKT point of max-margin problem (P) on (X, y).

    The multipliers are chosen with delta <= 1/(e q_min), the bound the flow's own multipliers meet at that
    margin (:func:`delta_limit`), and eps is the smallest residual they leave. With ``trajectory`` (the run
    from :func:`theorycheck.train` that produced the model): it holds where eps and delta decrease along the run
    (median of the last third of the snapshots after t0 below that of the first third) or sit within their
    roundoff at the end (the limit reached); eps, delta -> 0 has no rate, so a missing decrease is
    inconclusive at any length, and the run is violated only by what the theorem excludes at a finite time:
    the smoothed margin recomputed at the snapshots falling beyond the run's allowance (C^2 networks). Without it, one state holds only as an exact KKT point
    (eps within roundoff); otherwise it is inconclusive: Lyu & Li bound eps only along the run.
    ``multipliers``: judge these lambda (one per sample) at this state: a negative lambda (dual feasibility of
    (P)) or delta above 1/(e q_min) (a large multiplier on a non-support point) is violated, both within
    roundoff; otherwise the state holds only as an exact KKT point with them (eps within roundoff) and is
    inconclusive if not (eps is bounded only along the run, never by this state's own flow certificate).
    One-layer linear models are also compared with the exact hard-margin SVM (angle, support set,
    Soudry's rate). ``radius``: Goldstein sampling radius relative to ||theta|| (default: 0 for C^2
    networks, else 3 x the run's rtol, or 3 x the default rtol for networks with kinks). ``degree``: L of f
    jointly in the trained parameters (default: the run's; on one state the declared degrees of the trained
    layers, else the measured one: :func:`theorycheck.engines.joint_homogeneity.run_degree`).
    """
    X = as_batch(X, model)
    y = as_labels(y, X)
    net = FlatNetwork(model, X, y)
    theta = net.flatten()
    if trajectory is not None and degree is None:
        L, homogeneity = trajectory.degree, None  # the run measured homogeneity at its snapshots
    else:
        L, homogeneity = run_degree(model, X, degree)
    smooth, _ = twice_differentiable(model, X)
    if radius is None:
        radius = 0.0 if smooth else GOLDSTEIN_STEPS * (trajectory.rtol if trajectory is not None and trajectory.rtol
                                                       else DEFAULT_RTOL[False, X.dtype])
    if trajectory is not None:
        expect(isinstance(trajectory, Trajectory), expected="trajectory as a Trajectory from tc.train(...)",
               received=type(trajectory).__name__, fix="trajectory = tc.train(model, X, y)")
        expect(trajectory.n_parameters == theta.numel() and trajectory.n_samples == len(y),
               expected=f"a trajectory of this model and data ({theta.numel()} parameters, {len(y)} samples)",
               received=f"{trajectory.n_parameters} parameters, {trajectory.n_samples} samples",
               fix="pass the Trajectory returned by train(model, X, y) for this model")
    if multipliers is not None:
        expect(np.asarray(multipliers).size == len(y), expected=f"{len(y)} multipliers (one per sample)",
               received=f"{np.asarray(multipliers).size}", fix="one lambda_n >= 0 per row of X")
    now = kkt_point(net, theta, L, radius=radius, seed=seed or 0, multipliers=multipliers)
    separated = now["q_min"] > 0
    reasons: list[str] = []
    if trajectory is not None and not trajectory.finite:
        return kit.decide(assumptions=run_assumptions(trajectory, True)[0], inconclusive=True,
                          reason="non-finite records in the trajectory (overflow or NaN)")
    if trajectory is not None:
        t0 = separation_index(trajectory)
        snaps = [s for s in trajectory.snapshots if t0 is not None and s.record >= t0]
        assumptions, unmet = run_assumptions(trajectory, t0 is not None)
        assumptions["separated"] = separated
    else:
        snaps, unmet = [], []
        log_loss = float(torch.logsumexp(get_loss(loss).log(torch.as_tensor(now["margins"])), 0))
        assumptions = {"homogeneous": homogeneity.homogeneous, "separated": separated,
                       "t0": log_loss < math.log(get_loss(loss).at_zero)}
        if assumptions["homogeneous"] is not True:
            unmet.append(homogeneity.summary())
        if not assumptions["t0"]:
            unmet.append(f"summed {loss} loss {math.exp(log_loss):.4g} is not below l(0)")
    if not separated:
        unmet.append(f"min margin {now['q_min']:.3g} <= 0: not separated, (P) has no feasible rescaling")
        return kit.decide(assumptions=assumptions, tolerance_basis="no KKT measurement without separation",
                          reason="; ".join(unmet), details={"q_min": now["q_min"]})

    details: dict = {
        "eps": now["eps"], "delta": now["delta"], "delta_limit": now["delta_limit"],
        "eps_roundoff": now["eps_roundoff"], "delta_roundoff": now["delta_roundoff"],
        "support": [int(i) for i in now["support"]],
        "multipliers": now["multipliers"].tolist(), "multiplier_shares": now["shares"].tolist(),
        "off_support_share": now["off_support_share"], "near_support_counts": now["near_support"],
        "q_min": now["q_min"], "eps_flow": now["eps_flow"], "delta_flow": now["delta_flow"],
        "goldstein_radius": radius, "degree": L,
    }
    inconclusive = False
    if multipliers is not None:
        # the given lambda at this one state: dual feasibility (lambda >= 0) and delta <= 1/(e q_min) hold at
        # every state for KKT multipliers of (P) in Lyu & Li's sense, so failing either is a violation; eps is
        # bounded only along the run (it tends to 0), so this state holds only as an exact KKT point (eps within
        # its roundoff) and is otherwise inconclusive (never judged against this state's own flow certificate)
        given = now["multipliers"]
        sign_tolerance = now["multiplier_roundoff"]
        delta_allowed = now["delta_limit"] + now["delta_roundoff"]
        negative = given < -sign_tolerance
        feasible = not negative.any() and now["delta"] <= delta_allowed
        exact = now["eps"] <= now["eps_roundoff"]
        held = feasible and exact
        inconclusive = feasible and not exact and all(assumptions.values())
        statistic = max(now["eps"] / now["eps_roundoff"] if now["eps_roundoff"] > 0 else math.inf,
                        now["delta"] / delta_allowed)
        statistic = max(statistic, float(-given.min() / sign_tolerance) if negative.any() else 0.0)
        bound, tolerance = 1.0, 0.0
        basis = ("given multipliers at one state: lambda_n >= -gamma_m max|lambda| (dual feasibility, float64 "
                 "roundoff of a solver's multipliers), delta over (1/(e q_min) + roundoff of delta) and eps over its "
                 "roundoff (gamma_K + gamma_m)(||G|| ||lambda|| + ||theta~||) / ||theta~||, at most 1 for all: an "
                 "exact KKT point; eps above roundoff alone is inconclusive (bounded only along the run)")
        details.update(eps_allowed=now["eps_roundoff"], delta_allowed=delta_allowed,
                       multiplier_sign_tolerance=sign_tolerance)
        if negative.any():
            worst = int(np.argmin(given))
            reasons.append(f"multipliers are not KKT multipliers: lambda_{worst} = {given[worst]:.3g} < 0 (dual "
                           f"feasibility of (P) needs lambda >= 0; {int(negative.sum())} negative)")
        if now["delta"] > delta_allowed:
            worst = int(np.argmax(given * (now["margins"] / now["q_min"] - 1)))
            reasons.append(f"multipliers are not KKT multipliers: delta {now['delta']:.3e} (allowed "
                           f"{delta_allowed:.3e}); sample {worst} has margin "
                           f"{now['margins'][worst] / now['q_min']:.4g} x q_min but lambda {given[worst]:.3g}")
        if inconclusive:
            reasons.append(f"eps = {now['eps']:.3e} with the given multipliers is above its roundoff "
                           f"{now['eps_roundoff']:.1e}: not an exact KKT point; Lyu & Li bound eps only along the "
                           "run, pass trajectory=... (without multipliers) to judge its decrease")
        _linear_report(model, X, y, [], [], details, now["q_min"])
    elif trajectory is not None:
        history = []
        current = theta.detach().double().cpu().numpy()
        for snap in snaps:  # the final snapshot is usually the model's state, already measured
            point = now if np.array_equal(snap.theta, current) else kkt_point(
                net, torch.as_tensor(snap.theta, dtype=X.dtype, device=X.device), L, radius=radius, seed=seed or 0)
            if point["q_min"] > 0:
                history.append((snap, point))
        eps_series = [p["eps"] for _, p in history]
        delta_series = [p["delta"] for _, p in history]
        log_t = [float(trajectory.records["log_t"][s.record]) for s, _ in history]
        details["history"] = {"log_loss": [s.log_loss for s, _ in history], "log_t": log_t, "eps": eps_series,
                              "delta": delta_series, "delta_limit": [p["delta_limit"] for _, p in history],
                              "eps_roundoff": [p["eps_roundoff"] for _, p in history],
                              "support_size": [len(p["support"]) for _, p in history]}
        details["series"] = {"KKT residuals": {"x": [-s.log_loss for s, _ in history],
                                               "y": {"eps": eps_series, "delta": delta_series},
                                               "xlabel": "log(1/L)", "ylabel": "relative residual",
                                               "xscale": "log", "yscale": "log"}}
        enough = len(history) >= MIN_SNAPSHOTS
        # the finite-time part of the theorem: the smoothed margin is non-decreasing after t0 (Lyu & Li Thm 4.1, on
        # which Thm 4.4 rests), judged at the snapshots against the run's own allowance (decisive for C^2 networks)
        margin = snapshot_margins(trajectory, [s for s, _ in history], [p["margins"] for _, p in history])
        fell = bool(margin["drop"] > margin["allowed"]) and trajectory.smooth
        # a residual already at its roundoff at the end has reached the limit: no trend left to show
        eps_limit_reached = bool(history) and history[-1][1]["eps"] <= history[-1][1]["eps_roundoff"]
        delta_limit_reached = bool(history) and history[-1][1]["delta"] <= history[-1][1]["delta_roundoff"]
        eps_down = enough and (eps_limit_reached or _trend(eps_series))
        delta_down = enough and (delta_limit_reached or _trend(delta_series))
        _linear_report(model, X, y, history, log_t, details, now["q_min"])
        angles = details.get("svm", {}).get("angles", [])
        angle_reached = bool(angles) and angles[-1] <= details["svm"]["angle_roundoff"]
        angle_down = len(angles) < MIN_SNAPSHOTS or angle_reached or _trend(angles)
        trend = bool(eps_down and delta_down and angle_down)
        # eps, delta -> 0 is a limit with no rate: a finite run that has not shown the decrease (eps may peak before
        # it falls, the flow passing near another KKT direction) does not resolve it; only the margin's fall decides
        held = trend and not fell
        inconclusive = not fell and not trend and all(assumptions.values())
        details.update(eps_decreasing=eps_down, delta_decreasing=delta_down, eps_limit_reached=eps_limit_reached,
                       delta_limit_reached=delta_limit_reached, snapshot_margin=margin)
        if fell:
            statistic, bound, tolerance = margin["drop"], 0.0, margin["allowed"]
        else:
            statistic = max(_trend_ratio(eps_series), _trend_ratio(delta_series)) if enough else math.nan
            bound, tolerance = 1.0, 0.0
        basis = ("at every snapshot after t0 the multipliers meet delta <= 1/(e q_min) (the flow's own delta); "
                 "violated only where the smoothed margin at the snapshots falls by more than the run's allowance "
                 "(sum of ||grad gamma~|| x local error estimates between them + roundoff at both; C^2 networks); "
                 "holds where eps and delta decrease (median over the last third of the snapshots below that over "
                 "the first third) or sit within their roundoff at the end; otherwise the run does not resolve the limit")
        if fell:
            reasons.append(f"the smoothed margin at the snapshots fell by {margin['drop']:.3e} between log(1/L) = "
                           f"{margin['pair_log_inverse_loss'][0]:.4g} and {margin['pair_log_inverse_loss'][1]:.4g}, "
                           f"more than the allowed {margin['allowed']:.3e}: not a gradient flow of this network "
                           "(Lyu & Li Thm 4.1, on which Thm 4.4 rests)")
        elif inconclusive:
            reasons.append(f"only {len(history)} snapshots after t0 (need {MIN_SNAPSHOTS}): run too short" if not enough
                           else f"run too short to resolve the limit eps, delta -> 0 (Lyu & Li give no rate): the decrease "
                                f"has not shown by log(1/L) = {-history[-1][0].log_loss:.3g}, and nothing the theorem "
                                "excludes at a finite time did" + (
                                    " (the smoothed margin never fell beyond its allowance)" if trajectory.smooth
                                    or margin["drop"] <= margin["allowed"] else
                                    f" (the smoothed margin fell by {margin['drop']:.3e} at the snapshots, more than "
                                    f"the allowed {margin['allowed']:.3e}, which is not decisive at kinks: the local "
                                    "error estimates are not bounds there)"))
        if enough and not trend:
            reasons.append(f"eps {'decreasing' if eps_down else 'not decreasing'} ({eps_series[:1]} -> "
                           f"{eps_series[-1:]}), delta {'decreasing' if delta_down else 'not decreasing'} "
                           f"({delta_series[:1]} -> {delta_series[-1:]})"
                           + ("" if angle_down else "; the angle to the SVM direction does not decrease"))
    else:
        # one state: Lyu & Li bound delta at each margin level (1/(e q_min)) but eps only along the run (it
        # vanishes with 1 - cos(theta, -grad L), which has no pointwise rate): a single state holds only as an
        # exact KKT point, eps within its roundoff
        held = now["eps"] <= now["eps_roundoff"]
        inconclusive = not held and all(assumptions.values())
        statistic, bound, tolerance = now["eps"], 0.0, now["eps_roundoff"]
        basis = ("eps of the best multipliers with lambda >= 0 and delta <= 1/(e q_min) (the flow's own delta at this "
                 "margin) within its roundoff (gamma_K + gamma_m)(||G|| ||lambda|| + ||theta~||) / ||theta~||: an exact "
                 "KKT point")
        if inconclusive:
            reasons.append(f"eps = {now['eps']:.3e} (delta <= {now['delta_limit']:.3e}) is above roundoff "
                           f"{now['eps_roundoff']:.1e}: not an exact KKT point; Lyu & Li bound eps only along the run, "
                           "pass trajectory=... to judge its decrease")
        _linear_report(model, X, y, [], [], details, now["q_min"])
    return kit.decide(assumptions=assumptions, conclusion_held=held, inconclusive=inconclusive,
                      statistic=float(statistic), bound=float(bound), tolerance=float(tolerance),
                      tolerance_basis=basis, details=details, reason="; ".join(reasons + unmet))


def _linear_report(model, X, y, history, log_t, details: dict, q_min: float) -> None:
    """For a one-layer linear model: the exact SVM, its angle to the model's w, support sets, Soudry's rate.

    The run resolves the support only up to its band: a sample within SUPPORT_BAND / q_min (relative) of the
    SVM margin is indistinguishable from a support vector at this time, so the run's support is compared
    with the SVM's samples within that relative band (``same_support``) and with its exact active set."""
    w = linear_weights(model)
    if w is None:
        return
    svm = hard_margin_svm(X.detach().double().cpu().numpy(), y.detach().double().cpu().numpy())
    if not svm.separable:
        details["svm"] = {"separable": False}
        return
    angles = [angle(snap.theta, svm.w) for snap, _ in history]  # theta is w for a one-layer linear model
    G = (y[:, None] * X.reshape(len(y), -1)).detach().double().cpu().numpy()
    resolved = [int(i) for i in np.flatnonzero(G @ svm.w < 1 + SUPPORT_BAND / q_min)]
    details["svm"] = {"angle": angle(w, svm.w), "support": list(svm.support), "active": list(svm.active),
                      "support_at_resolution": resolved, "margin": svm.margin,
                      "same_support": resolved == details["support"],
                      "same_active_set": list(svm.active) == details["support"],
                      # the flow steers w along an n-term gradient sum formed in the model's dtype (relative
                      # error gamma_n) and stores it rounded (u): gamma_{n+1}; the angle is evaluated in float64
                      "angle_roundoff": gamma(len(y) + 1, next(model.parameters()).dtype)
                      + gamma(4 * X.reshape(len(y), -1).shape[1] + 4, torch.float64),
                      "angles": angles, **_soudry_rate(angles, log_t)}


assert_kkt = kit.assert_


CONTROLS = ("weight_decay", "square", "inseparable", "before_separation", "wrong_multipliers")
# the audit families whose units never switch off for good (a ReLU CNN can die on a sample and never separate:
# an audit float32 draw, 3 ReLU channels with average pooling, stopped with training error)
SEPARATING_FAMILIES = tuple(f for f in AUDIT_FAMILIES if not f.endswith("-relu"))


def _kkt_case(rng, device: str, dtype: str, control: str | None = None) -> Case:
    """The margin claim's run of the same case name (the kit derives this claim's streams from the margin claim's,
    so the flow is trained once for both, an instance drawn again where that claim's is: :func:`admitted`);
    controls: that claim's weight decay, square loss and inseparable data, a run stopped before separation
    (expected: vacuous) and a large multiplier on a non-support point (violated), drawn without ReLU units
    (SEPARATING_FAMILIES): a wrong multiplier shows only on a run that separated."""
    families = SEPARATING_FAMILIES if control == "wrong_multipliers" else AUDIT_FAMILIES
    drawn = random_instance(rng, control=control if control in ("weight_decay", "square", "inseparable") else None,
                            families=families)
    if control == "before_separation":
        drawn = dataclasses.replace(drawn, log_loss_target=math.log(drawn.n) - 0.5)
    redraw_seed = None if control else int(rng.integers(2**63))

    def run():
        instance, rejected = (drawn, ()) if control else admitted(drawn, redraw_seed, device, dtype)
        (model, X, y), trajectory = trained(instance, device, dtype)
        lam = None
        if control == "wrong_multipliers":
            point = kkt_point(FlatNetwork(model, X, y), FlatNetwork(model, X, y).flatten(), trajectory.degree)
            lam = np.array(point.get("multipliers", np.zeros(len(y))))
            lam[int(np.argmax(point["margins"]))] += 10 * max(float(lam.max()), 1.0)
        return with_redraws(check_kkt(model, X, y, trajectory=None if control == "wrong_multipliers" else trajectory,
                                      multipliers=lam, seed=instance.seed), rejected)

    call = ("tc.check_kkt(m, X, y, trajectory=t)" if control != "wrong_multipliers" else
            "tc.check_kkt(m, X, y, multipliers=<NNLS multipliers + a large one on the largest-margin sample>)")
    return Case(run=run, size=drawn.size, reproduce=instance_line(drawn, device, dtype, call, redraw_seed))


kit.instances(_kkt_case)
for _control in CONTROLS:
    kit.control(_control, expect="violated" if _control == "wrong_multipliers" else "vacuous")(
        functools.partial(_kkt_case, control=_control))
