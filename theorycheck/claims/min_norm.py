"""Claim ``min_norm``: gradient descent on least squares is a spectral filter and converges to the
minimum-distance solution.

L(w) = 1/2 ||Xw - y||^2 (a sum), GD w_{t+1} = w_t - eta X^T (X w_t - y), thin SVD X = U S V^T. Exactly,
with c_i = u_i^T y / s_i - v_i^T w0 (two lines of algebra: the error e_t = w_t - w_inf obeys
e_{t+1} = (I - eta X^T X) e_t and P_null e_t = 0 after the first step's null-space part is kept):

    w_t = w0 + sum_i [1 - (1 - eta s_i^2)^t] c_i v_i,
    w_t -> w_inf = X^+ y + (I - X^+ X) w0 = argmin {||w - w0|| : w minimizes L}   (0 < eta < 2/s_1^2),
    ||w_t - w_inf||^2 = sum_i (1 - eta s_i^2)^{2t} c_i^2.

From w0 = 0 the limit is X^+ y, the minimum-norm interpolant when rank X = n < d. Sources: the
implicit-regularization reading of Poggio, Liao & Banburski, Nat. Commun. 11:3371 (2020), intro
("t -> infinity corresponds to lambda -> 0"); the spectral-filter view of early stopping, Yao, Rosasco
& Caponnetto, Constr. Approx. 26 (2007). Adam (per-coordinate scaling leaves row(X)), weight decay
(-> ridge) and a start with a null-space part declared as 0 break it; heavy-ball momentum does not
change the limit but is not this filter (not checked here).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from ..core.devices import dtype_name, dtype_of, gamma, unit_roundoff
from ..core.errors import expect
from ..core.kit import ClaimKit
from ..core.verdict import Verdict
from ..engines.linear_estimator import estimator_matrix, linear_risk, linearity_probes

SOURCE = ("Poggio, Liao & Banburski, Nat. Commun. 11:3371 (2020), intro; Yao, Rosasco & Caponnetto, "
          "Constr. Approx. 26 (2007) (spectral filters)")


@dataclasses.dataclass(frozen=True)
class Spectrum:
    """Thin SVD of X in float64 above numpy's rank cutoff max(n, d) eps s_1, and the coefficients c_i."""

    s: np.ndarray
    U: np.ndarray
    V: np.ndarray
    c: np.ndarray
    limit: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, w0: np.ndarray) -> "Spectrum":
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        keep = s > max(X.shape) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
        U, s, V = U[:, keep], s[keep], Vt[keep].T
        c = (U.T @ y) / s - V.T @ w0
        return cls(s=s, U=U, V=V, c=c, limit=w0 + V @ c)

    def filter(self, lr: float, t: np.ndarray) -> np.ndarray:
        """phi_t(s_i) = 1 - (1 - eta s_i^2)^t for each t (rows) and i (columns)."""
        return gd_filter(lr * self.s ** 2, t)

    def iterates(self, lr: float, t: np.ndarray, w0: np.ndarray) -> np.ndarray:
        return w0 + (self.filter(lr, t) * self.c) @ self.V.T


def gd_filter(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """1 - (1 - a_i)^t for each t (rows) and a_i = eta s_i^2 (columns), accurate for small a (expm1/log1p)."""
    base = 1.0 - a
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(base > 0, -np.expm1(t[:, None] * np.log1p(-a)), 1.0 - np.power(base, t[:, None]))


def _numpy(tensor, name: str) -> np.ndarray:
    expect(isinstance(tensor, torch.Tensor) and tensor.is_floating_point(), expected=f"{name} as a floating "
           "torch tensor", received=type(tensor).__name__, fix=f"torch.as_tensor({name}, dtype=torch.float64)")
    return tensor.detach().cpu().to(torch.float64).numpy()


def _recursion_roundoff(X, y, W, lr, dtype) -> np.ndarray:
    """Per-step bound on ||computed step - exact GD step from the computed iterate||: the residual
    r = Xw - y and gradient X^T r (any summation order, Higham gamma_{n+d+1} componentwise, so also
    X^T X w - X^T y), the product with eta (eta rounded to the dtype) and the update's rounding."""
    n, d = X.shape
    g, u = gamma(n + d + 1, dtype), unit_roundoff(dtype)
    absX = np.abs(X)
    R = W[:-1] @ X.T - y
    grad_err = g * (np.linalg.norm(np.abs(R) @ absX, axis=1)
                    + np.linalg.norm((np.abs(W[:-1]) @ absX.T + np.abs(y)) @ absX, axis=1))
    steps = np.linalg.norm(np.diff(W, axis=0), axis=1)
    return lr * (1 + gamma(3, dtype)) * grad_err + gamma(3, dtype) * steps + u * np.linalg.norm(W[1:], axis=1)


def plain_steps(X, y, W, lr, dtype) -> dict:
    """Each recorded step against the full-batch gradient step from its own iterate, w_t - eta X^T (X w_t - y),
    evaluated in float64: the run's rounding (:func:`_recursion_roundoff` in its dtype) plus this evaluation's
    (the same bound in float64) is all a plain GD step may differ by; momentum, Adam, weight decay or
    mini-batches differ by more."""
    exact = W[:-1] - lr * ((W[:-1] @ X.T - y) @ X)
    deviation = np.linalg.norm(W[1:] - exact, axis=1)
    allowed = _recursion_roundoff(X, y, W, lr, dtype) + _recursion_roundoff(X, y, W, lr, torch.float64)
    ratio = np.divide(deviation, allowed, out=np.where(deviation > 0, np.inf, 0.0), where=allowed > 0)
    worst = int(np.argmax(ratio))
    return {"plain": bool((deviation <= allowed).all()), "worst_step": worst, "deviation": float(deviation[worst]),
            "allowed": float(allowed[worst]), "steps_not_plain": int((deviation > allowed).sum())}


def _oracle_roundoff(spec: Spectrum, X, y, w0, lr, t) -> np.ndarray:
    """Error of the float64 filter formula: the SVD is exact for X + E, ||E|| <= max(n, d) u s_1 (LAPACK's
    backward error); w_t - w0 = eta sum_{k<t} M^k X^T r0 (M = I - eta X^T X, ||M|| <= 1, r0 = y - X w0)
    moves by <= ||E|| (eta t ||r0|| (1 + eta s_1^2 t) + eta t s_1 ||w0||), plus the formula's own rounding."""
    s1 = float(spec.s[0]) if spec.s.size else 0.0
    eps_x = max(X.shape) * unit_roundoff(torch.float64) * s1
    r0, nw0 = float(np.linalg.norm(y - X @ w0)), float(np.linalg.norm(w0))
    sensitivity = lr * t * r0 * (1 + lr * s1 ** 2 * t) + lr * t * s1 * nw0
    return eps_x * sensitivity + max(X.shape) * unit_roundoff(torch.float64) * (nw0 + lr * t * s1 * r0 + nw0)


def steps_needed(spec: Spectrum, lr: float, target: float) -> float:
    """T with max_i |1 - eta s_i^2|^T ||w0 - w_inf|| <= target (inf when the iteration does not contract)."""
    rate = float(np.max(np.abs(1 - lr * spec.s ** 2))) if spec.s.size else 0.0
    start = float(np.linalg.norm(spec.c))
    if start <= target:
        return 0.0
    return math.ceil(math.log(target / start) / math.log(rate)) if 0 < rate < 1 else math.inf


min_norm_kit = ClaimKit(
    id="min_norm",
    statement="GD on 1/2 ||Xw - y||^2 from w0 with 0 < eta < 2/s_1^2 is the spectral filter "
              "w_t = w0 + sum_i [1 - (1 - eta s_i^2)^t] (u_i^T y / s_i - v_i^T w0) v_i at every step and converges to "
              "X^+ y + (I - X^+ X) w0 (from 0: the minimum-norm interpolant X^+ y).",
    source=SOURCE,
    assumptions={"step": "0 < eta < 2 / s_1^2 (the iteration contracts on row(X))", "finite": "iterates finite",
                 "plain": "every step is a full-batch gradient step w_t - eta X^T (X w_t - y) (measured, to its "
                          "roundoff)"},
    tolerance="accumulated roundoff of the GD recursion (gamma_{n+d+1} gradient error, update rounding) plus the "
              "float64 SVD backward error through the filter",
)


@min_norm_kit.checker(samples=("X", "y"), finite=("w0",))
def check_min_norm(X: torch.Tensor, y: torch.Tensor, iterates: torch.Tensor, *, lr: float, w0=None,
                   limit_tol: float | None = None, seed: int | None = None) -> Verdict:
    """Check recorded GD iterates on 1/2 ||Xw - y||^2 against the exact spectral filter at every step.

    ``iterates``: shape (T + 1, d), rows w_0 .. w_T (a run of :func:`least_squares_run` or your own);
    ``w0``: the start the claim is made for (default 0); ``limit_tol``: also decide convergence to
    w_inf = X^+ y + (I - X^+ X) w0, ``inconclusive`` (with the steps needed) if the filter says the run
    is too short for it. The iterates' dtype sets the roundoff tolerance.
    """
    Xn, yn, W = _numpy(X, "X"), _numpy(y, "y"), _numpy(iterates, "iterates")
    expect(Xn.ndim == 2 and yn.shape == (Xn.shape[0],), expected="X of shape (n, d) and y of shape (n,)",
           received=f"{Xn.shape} and {yn.shape}", fix="one target per row of X")
    expect(W.ndim == 2 and W.shape[1] == Xn.shape[1] and W.shape[0] >= 2, expected=f"iterates of shape "
           f"(T + 1, {Xn.shape[1]}) with T >= 1 (rows w_0 .. w_T)", received=f"shape {W.shape}",
           fix="stack the weights after every step, the start first")
    expect(lr > 0, expected="a step size lr > 0", received=repr(lr), fix="the lr of the GD run")
    expect(limit_tol is None or limit_tol > 0, expected="limit_tol > 0 (a distance to the limit GD reaches in "
           "finitely many steps) or None", received=repr(limit_tol), fix="e.g. limit_tol=1e-6 * ||X^+ y||")
    dtype = dtype_of(iterates.dtype)
    w_start = np.zeros(Xn.shape[1]) if w0 is None else _numpy(torch.as_tensor(w0), "w0").reshape(-1)
    spec = Spectrum.of(Xn, yn, w_start)
    s1 = float(spec.s[0]) if spec.s.size else 0.0
    t = np.arange(W.shape[0], dtype=np.float64)
    finite = bool(np.isfinite(W).all())
    steps = plain_steps(Xn, yn, W, lr, dtype) if finite else {"plain": None}
    assumptions = {"step": lr * s1 ** 2 < 2, "finite": finite, "plain": steps["plain"]}
    common = dict(device=str(iterates.device), dtype=dtype_name(dtype))
    if not finite:
        return min_norm_kit.decide(assumptions=assumptions, inconclusive=lr * s1 ** 2 < 2,
                                   tolerance_basis="not computed", reason="non-finite iterates (overflow or NaN)",
                                   **common)
    predicted = spec.iterates(lr, t, w_start)
    residual = np.linalg.norm(W - predicted, axis=1)
    tolerance = (np.concatenate([[0.0], np.cumsum(_recursion_roundoff(Xn, yn, W, lr, dtype))])
                 + _oracle_roundoff(spec, Xn, yn, w_start, lr, t) + unit_roundoff(dtype) * np.linalg.norm(W, axis=1))
    ratio = np.divide(residual, tolerance, out=np.where(residual > 0, np.inf, 0.0), where=tolerance > 0)
    worst = int(np.argmax(ratio))
    held_filter = bool((residual <= tolerance).all())
    null_drift = float(np.max(np.linalg.norm((W - w_start) - ((W - w_start) @ spec.V) @ spec.V.T, axis=1)))
    distance = float(np.linalg.norm(W[-1] - spec.limit))
    predicted_distance = float(np.linalg.norm((1 - spec.filter(lr, t[-1:])[0]) * spec.c))
    reasons, too_short, held_limit = [], False, True
    if not assumptions["step"]:
        reasons.append(f"eta s_1^2 = {lr * s1 ** 2:.4g} >= 2: GD diverges along v_1")
    if not steps["plain"]:
        reasons.append(f"not plain full-batch GD: step {steps['worst_step']} differs from w_t - eta X^T (X w_t - y) by "
                       f"{steps['deviation']:.3g}, roundoff allows {steps['allowed']:.3g} ({steps['steps_not_plain']} "
                       "step(s): momentum, Adam, weight decay or mini-batches?)")
    if not held_filter:
        reasons.append(f"w_t departs from the GD spectral filter: ||w_t - w_t^filter|| = {residual[worst]:.3g} at "
                       f"t = {worst}, roundoff allows {tolerance[worst]:.3g} (not plain GD from the declared w0: "
                       f"Adam, weight decay, momentum, another start or step size?); null-space drift {null_drift:.3g}")
    if limit_tol is not None:
        too_short = predicted_distance > limit_tol
        held_limit = distance <= limit_tol + tolerance[-1]
        if too_short:
            reasons.append(f"run too short for ||w_T - w_inf|| <= {limit_tol:.3g}: the filter leaves "
                           f"{predicted_distance:.3g}; T >= {steps_needed(spec, lr, limit_tol)} steps needed")
        elif not held_limit:
            reasons.append(f"||w_T - w_inf|| = {distance:.3g} > {limit_tol:.3g}")
    return min_norm_kit.decide(
        assumptions=assumptions, conclusion_held=held_filter and held_limit,
        inconclusive=too_short and held_filter and assumptions["step"] and steps["plain"],
        statistic=float(residual[worst]), bound=0.0, tolerance=float(tolerance[worst]),
        tolerance_basis=("||w_t - w_t^filter|| at the step of largest ratio to its bound: the accumulated per-step "
                         "roundoff of the GD recursion (residual and gradient gamma_{n+d+1} componentwise, eta and "
                         "update rounding; ||I - eta X^T X|| <= 1 carries it undamped) plus the float64 filter's "
                         "SVD backward error max(n, d) u s_1 through the filter's sensitivity"),
        details={"n": Xn.shape[0], "d": Xn.shape[1], "rank": int(spec.s.size), "steps": int(W.shape[0] - 1),
                 "eta_s1_squared": lr * s1 ** 2, "max_ratio": float(ratio[worst]),
                 "worst_step": worst, "null_space_drift": null_drift, "plain_steps": steps, "limit_norm": float(np.linalg.norm(spec.limit)),
                 "final_norm": float(np.linalg.norm(W[-1])), "distance_to_limit": distance,
                 "predicted_distance_to_limit": predicted_distance, "limit_tol": limit_tol,
                 "series": {"||w_t - w_t^filter|| and its bound": {
                     "x": t[1:].tolist(), "y": {"residual": residual[1:].tolist(), "bound": tolerance[1:].tolist()},
                     "xlabel": "step t", "yscale": "log"},
                     "distance to the min-norm limit vs step": {
                     "x": t.tolist(), "y": {"run ||w_t - w_inf||": np.linalg.norm(W - spec.limit, axis=1).tolist(),
                                            "filter ||w_t^filter - w_inf||":
                                                np.linalg.norm(predicted - spec.limit, axis=1).tolist()},
                     "xlabel": "step t", "ylabel": "distance", "yscale": "log"}}},
        reason="; ".join(reasons), **common)


assert_min_norm = min_norm_kit.assert_


def least_squares_run(X: torch.Tensor, y: torch.Tensor, *, lr: float, steps: int, w0=None, optimizer: str = "gd",
                      weight_decay: float = 0.0) -> torch.Tensor:
    """Full-batch torch.optim on 1/2 ||Xw - y||^2 from ``w0`` (default 0); returns w_0 .. w_T stacked.
    ``optimizer``: ``gd`` (SGD without momentum, ``weight_decay`` as torch adds it) or ``adam``."""
    expect(optimizer in ("gd", "adam"), expected="optimizer 'gd' or 'adam'", received=repr(optimizer),
           fix="pass optimizer='gd'")
    start = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device) if w0 is None else w0
    w = torch.nn.Parameter(start.detach().clone().to(X.dtype))
    opt = (torch.optim.SGD([w], lr=lr, weight_decay=weight_decay) if optimizer == "gd"
           else torch.optim.Adam([w], lr=lr, weight_decay=weight_decay))
    record = [w.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((X @ w - y) ** 2).sum()).backward()
        opt.step()
        record.append(w.detach().clone())
    return torch.stack(record)


# --- early stopping vs ridge (Ali, Kolter & Tibshirani 2019) -------------------------------------

AKT = "Ali, Kolter & Tibshirani, AISTATS 2019, A Continuous-Time View of Early Stopping for Least Squares, Thm 1"


@functools.lru_cache(maxsize=1)
def akt_constant() -> float:
    """sup_x ((1 - e^-x)(1 + x)/x)^2 = 1.68591 (at x = 1.7933): the variance ratio of the gradient-flow and
    ridge filters 1 - e^{-ts} and s/(s + 1/t) at x = ts (the paper rounds it up to 1.6862; 1.69 in its abstract)."""
    from scipy.optimize import minimize_scalar

    best = minimize_scalar(lambda x: -(-math.expm1(-x) * (1 + x) / x) ** 2, bounds=(0.5, 5.0), method="bounded",
                           options={"xatol": 1e-10})
    return -float(best.fun)


early_stopping_kit = ClaimKit(
    id="early_stopping",
    statement="Gradient flow on (1/2n)||y - Xb||^2 from 0 at time t has estimation risk at most 1.68591 times that of "
              "ridge with lambda = 1/t, for every t, X and beta0 (per eigendirection: bias e^{-2ts} <= (1 + ts)^-2, "
              "variance ratio ((1 - e^{-x})(1 + x)/x)^2 <= 1.68591).",
    source=AKT,
    assumptions={"flow": "gradient flow (not discrete GD steps)",
                 "estimators": "the estimators given are gradient flow from 0 and ridge on X: linear in y, their matrices "
                               "within estimator_error (relative) of the exact operators (measured)"},
    tolerance="2 gamma_{d+10} relative (the sums of positive terms; the eigendecomposition is exact for a nearby PSD matrix)",
)


@early_stopping_kit.checker(finite=("X", "beta0", "times"))
def check_early_stopping(X, beta0, *, sigma: float, times=None, calibration: float = 1.0, step: float | None = None,
                         estimators=None, estimator_error: float | None = None, seed: int | None = None) -> Verdict:
    """Estimation risk E||b - beta0||^2 (y = X beta0 + noise of variance sigma^2) of gradient flow on
    (1/2n)||y - X b||^2 from 0 at time t against ridge (1/n)||y - X b||^2 + lambda ||b||^2 at lambda =
    ``calibration`` / t: risk(GF, t) <= 1.68591 risk(ridge, 1/t) for every t, X, beta0 (AKT Thm 1), per
    eigendirection of S = X^T X / n (bias e^{-2ts} <= (1 + ts)^-2, variance ratio <= 1.68591).
    The supremum over t > 0 is located, not sampled: the ratio is evaluated on a log grid over the spectrum
    (x = t s from 0.01 to 100 in every direction, steps <= 0.1 in log t) joined with ``times``, and each local
    maximum of the grid is refined by bounded scalar maximization between its grid neighbours
    (``details["worst_t"]``, ``details["located_maxima"]``).
    ``step``: discrete GD with that step instead of the flow (an assumption not met), judged at ``times``.
    ``estimators=(flow, ridge)``: your own, ``flow(y, t)`` and ``ridge(y, lam)`` returning the coefficients
    fitted on X (see :func:`_your_estimators`): judged at the located worst t, your ``times`` and a few
    times across the spectrum, on their own exact expected risks."""
    Xn, b0 = _numpy(torch.as_tensor(X), "X"), _numpy(torch.as_tensor(beta0), "beta0").reshape(-1)
    expect(Xn.ndim == 2 and b0.shape == (Xn.shape[1],), expected="X of shape (n, d) and beta0 of shape (d,)",
           received=f"{Xn.shape} and {b0.shape}", fix="one coefficient per column of X")
    expect(sigma >= 0 and calibration > 0 and (step is None or step > 0), expected="sigma >= 0, calibration > 0, "
           "step > 0 or None", received=f"sigma={sigma!r}, calibration={calibration!r}, step={step!r}",
           fix="sigma is the noise standard deviation; lambda = calibration / t")
    n, d = Xn.shape
    # the eigendecomposition is exact for a symmetric S + E, ||E|| <= d u ||S||; the inequality holds for every
    # PSD matrix, so only the evaluation of the sums below is rounded (clamping negative eigenvalues to 0)
    with np.errstate(over="ignore", invalid="ignore"):
        S = Xn.T @ Xn / n
    size = float(np.abs(S).max()) if S.size else 0.0
    if not math.isfinite(size) or 0 < size < np.finfo(np.float64).tiny / unit_roundoff(torch.float64):
        # overflow, or S below the normal range: its eigenvalues lost their digits, and the flow times 1 / s
        # the supremum ranges over are not representable
        return early_stopping_kit.decide(
            assumptions={"flow": step is None}, inconclusive=True, details={"n": n, "d": d, "max_abs_S": size},
            reason=f"X^T X / n has entries of size {size:.3g}: outside float64's normal range (overflow or "
                   "underflow); rescale X (the ratio over t > 0 does not depend on the scale of X)")
    s, V = np.linalg.eigh(S)
    s = np.clip(s, 0.0, None)
    coef = (V.T @ b0) ** 2
    positive = s[s > 0]

    def risks(t):
        x = t[:, None] * s[None, :]
        phi = -np.expm1(-x) if step is None else gd_filter(step * s, np.round(t / step))
        with np.errstate(divide="ignore", invalid="ignore"):
            ridge = x / (x + calibration)
            var_gf = np.where(s > 0, phi ** 2 / np.where(s > 0, s, 1.0), 0.0)
            var_r = np.where(s > 0, ridge ** 2 / np.where(s > 0, s, 1.0), 0.0)
        return (((1 - phi) ** 2 * coef).sum(1) + sigma ** 2 * var_gf.sum(1) / n,
                ((1 - ridge) ** 2 * coef).sum(1) + sigma ** 2 * var_r.sum(1) / n)

    def ratio_at(t):
        risk_gf, risk_r = risks(t)
        usable = risk_r > 0
        return np.where(usable, risk_gf / np.where(usable, risk_r, 1.0), np.nan), risk_gf, risk_r

    # a log grid over the spectrum, x = t s from 0.01 to 100 in every direction, steps of at most 0.1 in log t
    # (each direction's terms vary on a scale of 1 in log t); X = 0 learns nothing: both risks are ||beta0||^2
    if positive.size:
        ends = np.log(0.01 / positive.max()), np.log(100 / positive.min())
        spectrum = np.exp(np.linspace(*ends, max(60, min(4000, int(np.ceil((ends[1] - ends[0]) / 0.1)) + 1))))
    else:
        spectrum = np.ones(1)
    if times is None:
        t = spectrum
    else:
        t = np.asarray(times, dtype=np.float64)
    expect(t.ndim == 1 and t.size >= 1 and bool((t > 0).all()), expected="times > 0", received=repr(times),
           fix="times=None (a log grid over the spectrum)")
    if step is None:  # the flow: the supremum is over every t > 0, the given times only add grid points
        t = np.unique(np.concatenate([t, spectrum]))
    ratio, risk_gf, risk_r = ratio_at(t)
    trivial = sigma == 0 and not np.any(b0)  # y = 0: every linear estimator's risk is exactly 0 <= bound x 0
    if trivial:
        ratio = np.zeros_like(t)
    finite = bool(np.isfinite(risk_gf).all() and np.isfinite(risk_r).all()) and bool(np.isfinite(ratio).any())
    worst = int(np.nanargmax(ratio)) if finite else 0
    worst_t, worst_ratio, located = float(t[worst]), float(ratio[worst]) if finite else math.nan, []
    if step is None and finite and not trivial:
        worst_t, worst_ratio, located = _locate_maximum(lambda u: ratio_at(np.exp(np.atleast_1d(u)))[0][0],
                                                        np.log(t), ratio)
    bound = akt_constant()
    tolerance = bound * 2 * gamma(d + 10, torch.float64)
    held = finite and worst_ratio <= bound + tolerance
    reasons, details, assumptions = [], {}, {"flow": step is None}
    if estimators is not None and finite:
        expect(step is None, expected="estimators= or step=, not both", received="both",
               fix="judge your estimators (estimators=) or the closed-form GD filter (step=)")
        # the probed times stay within the spectrum the eigendecomposition resolves (s > d u s_1): a lambda below
        # the rounding of S asks any solver for a singular system
        resolved = positive[positive > d * unit_roundoff(torch.float64) * positive.max()] if positive.size else positive
        span = (0.01 / resolved.max(), 100 / resolved.min()) if resolved.size else (1.0, 1.0)
        given = [] if times is None else list(np.asarray(times, np.float64))
        probe_times = np.unique(np.clip([worst_t, *given, *np.geomspace(*span, 4)], *span))
        yours = _your_estimators(estimators, torch.as_tensor(X), Xn, b0, sigma, s, V, probe_times, calibration,
                                 estimator_error, resolved)
        assumptions["estimators"] = yours["within_error"]
        details["estimators"] = yours
        probed = yours["linearity_probed"]["norm_range"]
        worst_yours = max(yours["times"], key=lambda row: row["ratio"] - row["allowed"])
        held = held and all(row["ratio"] <= row["allowed"] for row in yours["times"])
        worst_t, worst_ratio, tolerance = worst_yours["t"], worst_yours["ratio"], worst_yours["allowed"] - bound
        if not yours["within_error"]:
            reasons.append(f"your estimators are not gradient flow and ridge on X: relative deviation from the exact "
                           f"operators (linearity gap on probes of norm {probed[0]:.3g} .. {probed[1]:.3g} included) "
                           f"{yours['deviation_over_allowed']:.3g} x the error allowed ({yours['error_basis']})")
        else:
            reasons.append(f"your estimators read as matrices, linear on probes y of norm {probed[0]:.3g} .. "
                           f"{probed[1]:.3g} (the signal X beta0, noise at sigma and both, scaled)")
    if step is not None:
        reasons.append(f"discrete GD (step {step:g}, eta s_1 = {step * s.max():.3g}), not the flow: the filter "
                       "1 - (1 - eta s)^k exceeds 1 - e^{-ts} where eta s is not small")
    if finite and not held:
        reasons.append(f"risk(GF, t) / risk(ridge, {calibration:g}/t) = {worst_ratio:.7g} > {bound:.6g} at t = {worst_t:.6g}"
                       + (" (lambda != 1/t: mis-calibrated)" if calibration != 1 else ""))
    if trivial:
        reasons.append("beta0 = 0 and sigma = 0: y = 0, both risks are exactly 0 at every t (0 <= bound x 0)")
    if not finite:
        reasons.append("the risks are not finite: nothing to compare")
    return early_stopping_kit.decide(
        assumptions=assumptions, conclusion_held=held, inconclusive=not finite,
        statistic=worst_ratio, bound=bound, tolerance=tolerance,
        tolerance_basis=("max over t > 0 of risk(GF, t) / risk(ridge, 1/t) (located by bounded scalar maximization "
                         "between the grid neighbours of each local maximum of the grid; discrete GD: on its steps) "
                         "from the float64 eigendecomposition of X^T X / n "
                         "(exact for a nearby PSD matrix, for which the theorem holds too); 2 gamma_{d+10}: the rounding "
                         "of the two sums of positive terms"
                         + ("; with estimators=: the worst of your estimators' exact expected risk ratios at the probed "
                            "times (details['estimators']), the bound widened to (sqrt(bound) (sqrt(r_ridge) + D_ridge) "
                            "+ D_gf)^2 / r_ridge, D = ||A - A_exact||_F (||X beta0|| + sigma), plus 2 gamma_{nd+10}"
                            if "estimators" in details else "")),
        details={**details, "n": n, "d": d, "sigma": sigma, "calibration": calibration, "step": step, "worst_t": worst_t,
                 "located_maxima": located,
                 "series": {"risk(GF, t) / risk(ridge, 1/t)": {"x": t.tolist(), "y": np.nan_to_num(ratio).tolist(),
                                                              "xlabel": "gradient-flow time t"}}},
        reason="; ".join(reasons))


assert_early_stopping = early_stopping_kit.assert_


def _your_estimators(estimators, X: torch.Tensor, Xn, beta0, sigma, s, V, times, calibration, estimator_error,
                     resolved) -> dict:
    """Your (flow, ridge) read as matrices at each t (and lambda = calibration / t) by
    :func:`theorycheck.engines.linear_estimator.estimator_matrix`, against the exact operators
    V diag((1 - e^{-ts}) / s) V^T X^T / n and (S + lambda I)^{-1} X^T / n; their exact expected risks and the
    ratio the theorem allows them: (sqrt(bound) (sqrt(r_ridge) + D_ridge) + D_gf)^2 / r_ridge, D = ||A -
    A_exact||_F (||X beta0|| + sigma) the change of sqrt(risk) a deviation of A can make."""
    given = estimator_error is not None
    expect(isinstance(estimators, (tuple, list)) and len(estimators) == 2 and all(map(callable, estimators)),
           expected="estimators=(flow, ridge): flow(y, t) and ridge(y, lam) returning the coefficients on X",
           received=repr(estimators), fix="estimators=(my_flow, my_ridge)")
    n, d = Xn.shape
    u = unit_roundoff(X.dtype)
    cond = float(resolved.max() / resolved.min()) if resolved.size else 1.0  # over the resolved spectrum
    expect(estimator_error is None or estimator_error >= 0, expected="estimator_error >= 0 (relative) or None",
           received=repr(estimator_error), fix="your solver's relative error, e.g. its rtol")
    # a backward-stable solver errs by 16 (n + d) u cond(S) relative; in the directions S does not resolve
    # (null or below d u ||S||) the computed eigenvectors are off by an angle <= 16 (n + d) u ||S|| / gap (Davis-
    # Kahan, gap = the smallest resolved eigenvalue) and keep components of X^T y / n of that angle times
    # ||X||_2 / n, which a filter of size <= t (flow) or <= 1 / lambda (ridge) multiplies: at most sqrt(d) of them
    null_scale = 16 * (n + d) * u * cond * math.sqrt(d) * float(np.linalg.norm(Xn, 2)) / n
    probes = linearity_probes(Xn, beta0, sigma)
    probe_norms = np.linalg.norm(probes, axis=0)
    scale = float(np.linalg.norm(Xn @ beta0)) + sigma
    XtV = V.T @ Xn.T / n
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where(s > 0, 1 / np.where(s > 0, s, 1.0), 0.0)
    bound, rows, deviation, over = akt_constant(), [], 0.0, 0.0
    for t in times:
        lam = calibration / t
        exact = {"flow": V @ ((-np.expm1(-t * s) * inverse)[:, None] * XtV),
                 "ridge": V @ ((1 / (s + lam))[:, None] * XtV)}
        row = {"t": float(t), "lambda": lam}
        within = True
        for (name, fn), arg, filter_size in zip(zip(("flow", "ridge"), estimators), (t, lam), (t, 1 / lam)):
            A, gap = estimator_matrix(fn, n, d, dtype=X.dtype, device=X.device, args=(float(arg),), probes=probes)
            norm = float(np.linalg.norm(exact[name]))
            off = float(np.linalg.norm(A - exact[name]))
            allowed = estimator_error if given else (16 * (n + d) * u * cond + (null_scale * filter_size / norm
                                                                                 if norm > 0 else 0.0))
            row[f"{name}_deviation"] = max(off / norm if norm > 0 else (0.0 if off == 0 else math.inf), gap)
            row[f"{name}_linearity_gap"], row[f"{name}_error_allowed"] = gap, allowed
            row[f"{name}_risk"], row[f"{name}_shift"] = linear_risk(A, Xn, beta0, sigma), off * scale
            deviation = max(deviation, row[f"{name}_deviation"])
            over = max(over, row[f"{name}_deviation"] / allowed if allowed > 0 else
                       (0.0 if row[f"{name}_deviation"] == 0 else math.inf))
            within &= row[f"{name}_deviation"] <= allowed
        row["within_error"] = within
        r_gf, r_ridge = row["flow_risk"], row["ridge_risk"]
        row["ratio"] = r_gf / r_ridge if r_ridge > 0 else (0.0 if r_gf == 0 else math.inf)  # 0 <= bound x 0
        # r_gf <= (sqrt(r_gf*) + D_gf)^2 <= (sqrt(bound r_ridge*) + D_gf)^2, r_ridge* <= (sqrt(r_ridge) + D_ridge)^2
        row["allowed"] = ((math.sqrt(bound) * (math.sqrt(r_ridge) + row["ridge_shift"]) + row["flow_shift"]) ** 2
                          / r_ridge + bound * 2 * gamma(n * d + 10, torch.float64)) if r_ridge > 0 else (
            bound if row["flow_shift"] == 0 else math.inf)
        rows.append(row)
    return {"times": rows, "deviation": deviation, "deviation_over_allowed": over,
            "estimator_error": estimator_error if given else max(max(r["flow_error_allowed"], r["ridge_error_allowed"])
                                                                 for r in rows),
            "within_error": all(r["within_error"] for r in rows),
            "linearity_probed": {"probes": probes.shape[1], "norm_range": [float(probe_norms.min()),
                                                                            float(probe_norms.max())]},
            "error_basis": "estimator_error given" if given else
            f"16 (n + d) u cond(S), cond = {cond:.3g} (a backward-stable solver's relative error), plus 16 (n + d) u "
            "cond sqrt(d) ||X||_2 / n x (t for the flow, 1 / lambda for ridge) / ||A_exact||_F: the components of "
            "X^T y / n rounding leaves in the directions S does not resolve (Davis-Kahan), times the filter there"}


def _locate_maximum(f, u: np.ndarray, values: np.ndarray) -> tuple[float, float, list[dict]]:
    """The maximum of f over u (log t) near each local maximum of the grid ``values = f(u)``: bounded scalar
    maximization (scipy's Brent, xatol 1e-10) on the bracket between its grid neighbours (one grid step beyond
    an end point), so that a narrow peak between grid points is located, not sampled. Returns (t, f, maxima)."""
    from scipy.optimize import minimize_scalar

    v = np.where(np.isfinite(values), values, -np.inf)
    best = int(np.argmax(v))
    best_t, best_value = float(np.exp(u[best])), float(v[best])
    located = []
    span = float(u[-1] - u[0]) / max(len(u) - 1, 1) if len(u) > 1 else 1.0
    for i in range(len(u)):
        if not ((i == 0 or v[i] >= v[i - 1]) and (i == len(u) - 1 or v[i] >= v[i + 1])):
            continue
        lo = u[i - 1] if i > 0 else u[i] - span
        hi = u[i + 1] if i < len(u) - 1 else u[i] + span
        found = minimize_scalar(lambda w: -f(w) if np.isfinite(f(w)) else np.inf, bounds=(lo, hi), method="bounded",
                                options={"xatol": 1e-10})
        value, t = -float(found.fun), float(np.exp(found.x))
        if not value >= v[i]:  # Brent's bracket may miss the grid point itself
            value, t = float(v[i]), float(np.exp(u[i]))
        located.append({"t": t, "ratio": value})
        if value > best_value:
            best_t, best_value = t, value
    return best_t, best_value, located


# --- audit cases ---------------------------------------------------------------------------------

CONTROLS = {"adam": "vacuous", "weight-decay": "vacuous", "null-start-declared-zero": "violated",
            "divergent-step": "vacuous", "too-short": "inconclusive"}


@dataclasses.dataclass(frozen=True)
class MinNormCase:
    """One generated least-squares run (rebuilt from these fields alone; see :meth:`verdict`)."""

    n: int = 6
    d: int = 12
    steps: int = 50
    step_scale: float = 1.0  # eta = step_scale / s_1^2
    start: str = "zero"  # zero or random (a random w0, declared)
    converged: bool = False  # steps enough for ||w_T - w_inf|| <= 1e-6 ||w_inf||, then decided
    seed: int = 0
    control: str | None = None
    claim: str = "min_norm"

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        torch_dtype = dtype_of(dtype)
        gen = torch.Generator().manual_seed(self.seed)
        X = torch.randn(self.n, self.d, generator=gen, dtype=torch.float64)
        y = torch.randn(self.n, generator=gen, dtype=torch.float64)
        w0 = torch.randn(self.d, generator=gen, dtype=torch.float64) if self.start == "random" else None
        X, y = X.to(device, torch_dtype), y.to(device, torch_dtype)
        w0 = None if w0 is None else w0.to(device, torch_dtype)
        s1 = float(torch.linalg.matrix_norm(X.double(), ord=2))
        lr = (2.05 if self.control == "divergent-step" else self.step_scale) / s1 ** 2
        weight_decay = 0.1 * s1 ** 2 if self.control == "weight-decay" else 0.0
        steps, limit_tol = self.steps, None
        if self.converged or self.control == "too-short":
            spec = Spectrum.of(X.double().cpu().numpy(), y.double().cpu().numpy(),
                               np.zeros(self.d) if w0 is None else w0.double().cpu().numpy())
            limit_tol = 1e-6 * float(np.linalg.norm(spec.limit))
            needed = steps_needed(spec, lr, limit_tol)
            steps = max(1, needed // 4) if self.control == "too-short" else needed
        run = least_squares_run(X, y, lr=lr, steps=steps, w0=w0, weight_decay=weight_decay,
                                optimizer="adam" if self.control == "adam" else "gd")
        if self.control == "null-start-declared-zero":  # a start with a null-space part, declared as 0
            run = least_squares_run(X, y, lr=lr, steps=steps, w0=torch.randn(self.d, generator=gen,
                                                                                dtype=torch.float64).to(device, torch_dtype))
            w0 = None
        return check_min_norm(X, y, run, lr=lr, w0=w0, limit_tol=limit_tol, seed=self.seed)


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> MinNormCase:
    """n in [2, 10], d in [n + 1, 3n] (under-determined), eta s_1^2 in [0.1, 1.9], 10..120 steps; a
    third of the instances run to convergence (well-conditioned: d >= 2n) and decide the limit."""
    n = int(rng.integers(2, 11))
    converged = control is None and rng.uniform() < 1 / 3
    d = int(rng.integers(2 * n if converged else n + 1, 3 * n + 1))
    return MinNormCase(n=n, d=d, steps=int(rng.integers(10, 121)), step_scale=float(rng.uniform(0.1, 1.9)),
                       start=("zero", "random")[int(rng.integers(2))], converged=converged,
                       seed=int(rng.integers(2**31)), control=control)


min_norm_kit.dataclass_cases(random_case, CONTROLS)


ES_CONTROLS = {"discrete-step": "vacuous", "mis-calibrated": "violated"}


@dataclasses.dataclass(frozen=True)
class EarlyStoppingCase:
    """Gaussian X (columns scaled over a decade), beta0 and noise level; rebuilt from these fields alone."""

    n: int = 10
    d: int = 20
    sigma: float = 1.0
    seed: int = 0
    control: str | None = None
    claim: str = "early_stopping"

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        rng = np.random.default_rng(self.seed)
        X = rng.normal(size=(self.n, self.d)) * np.geomspace(0.3, 3.0, self.d)
        beta0 = rng.normal(size=self.d) * (0.01 if self.control == "mis-calibrated" else 1.0)
        s1 = float(np.linalg.eigvalsh(X.T @ X / self.n)[-1])
        as_dtype = dict(dtype=dtype_of(dtype), device=device)  # the inputs in the audit's dtype (computed in float64)
        return check_early_stopping(torch.as_tensor(X, **as_dtype), torch.as_tensor(beta0, **as_dtype), sigma=self.sigma,
                                    seed=self.seed,
                                    calibration=10.0 if self.control == "mis-calibrated" else 1.0,
                                    step=1 / s1 if self.control == "discrete-step" else None,
                                    times=[1 / s1] if self.control == "discrete-step" else None)


def random_early_stopping_case(claim: str, rng: np.random.Generator, control: str | None = None) -> EarlyStoppingCase:
    """n in [2, 30], d in [1, 40] (both regimes), sigma in [0, 3] (a noise-dominated 3 for the controls)."""
    return EarlyStoppingCase(n=int(rng.integers(2, 31)), d=int(rng.integers(1, 41)),
                             sigma=3.0 if control else float(rng.uniform(0.0, 3.0)), seed=int(rng.integers(2**31)),
                             control=control)


early_stopping_kit.dataclass_cases(random_early_stopping_case, ES_CONTROLS)
