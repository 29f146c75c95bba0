"""The hard-margin linear SVM without intercept, solved exactly as a least-distance program.

min ||w|| subject to y_n <w, x_n> >= 1 is least-distance programming (LDP): min ||w|| s.t. G w >= h with
G = diag(y) X, h = 1. Lawson & Hanson, "Solving Least Squares Problems" (1974), ch. 23: solve the
non-negative least squares problem min_{u >= 0} ||E u - f|| with E = [G^T; h^T], f = (0, ..., 0, 1);
with r = E u - f, the solution is w = -r[:d] / r[d], and u / (1 - h^T u) are the multipliers
(w = G^T alpha). A zero residual means the constraints are infeasible (the data are not linearly
separable through the origin). The problem is solved in the units of X / max_n ||x_n|| and every w is verified against all
constraints before it is returned. This is the oracle for Soudry et al. (JMLR 2018): gradient descent on
separable data converges in direction to this w.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import nnls

from ..core.errors import expect


@dataclasses.dataclass(frozen=True)
class HardMarginSVM:
    """w (min-norm with all margins >= 1), the multipliers alpha >= 0 (w = sum alpha_n y_n x_n), the
    support set {n: alpha_n > 0}, the active set {n: y_n <w, x_n> = 1} (within sqrt(eps): it also holds
    points on the margin with alpha_n = 0), the geometric margin 1/||w||, and the feasibility check of w:
    ``worst_violation`` = max_n (1 - y_n <w, x_n>) / tolerance_n (at most 1 when returned as separable)."""

    w: np.ndarray
    alpha: np.ndarray
    support: tuple[int, ...]
    active: tuple[int, ...]
    margin: float
    separable: bool
    worst_violation: float = float("nan")
    tolerance: np.ndarray | None = None  # per-constraint roundoff allowed in y_n <w, x_n> >= 1 (feasibility_tolerance)


def feasibility_tolerance(G: np.ndarray, w: np.ndarray, conditioning: float = 0.0) -> np.ndarray:
    """Per-constraint roundoff allowed in y_n <w, x_n> >= 1, in the units of G = diag(y) X / max ||g_n||:
    2 gamma_{N+d+1} ||g_n|| (sqrt(||w||^2 + 1) + conditioning).

    The NNLS's dual feasibility E^T (E u - f) >= 0 gives g_n . w >= 1 exactly (Lawson & Hanson, Thm 23.4);
    computed, each entry of E^T r carries a dot-product error gamma ||g_n|| ||r|| with ||r|| = |r_d|
    sqrt(||w||^2 + 1), divided by |r_d|; ``conditioning`` = cond(E_S) ||E_S|| ||u|| (1 + ||w||) / |r_d| adds the
    error of the final least-squares solve on the active columns E_S (relative error gamma cond(E_S))."""
    N, d = G.shape
    nu = (N + d + 1) * np.finfo(np.float64).eps / 2
    return 2 * nu / (1 - nu) * np.linalg.norm(G, axis=1) * (np.sqrt(float(w @ w) + 1.0) + conditioning)


def hard_margin_svm(X, y) -> HardMarginSVM:
    """Solve min ||w|| s.t. y_n <w, x_n> >= 1 exactly (Lawson-Hanson LDP via NNLS). X: (N, d), y in {-1, +1}.

    Scale-free: the problem is solved for X / s (s = the largest row norm) and w scaled back by 1/s, so
    separability and ||w|| do not depend on the units of X. Every w is checked against all N constraints
    (within :func:`feasibility_tolerance`) before it is returned; one that fails, or whose tolerance reaches 1
    (contradictory labels, margins below the resolution of float64 relative to s), is reported as not
    separable."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    expect(len(X) == len(y) and len(y) >= 1, expected="X of shape (N, d) and N labels",
           received=f"X {X.shape}, y {y.shape}", fix="pass one label per row of X")
    expect(bool(np.isfinite(X).all()) and bool(np.isin(y, (-1.0, 1.0)).all()),
           expected="finite X and labels in {-1, +1}", received="non-finite entries or other labels",
           fix="drop rows with NaN/inf; y = 2 * y - 1 for 0/1 labels")
    G = y[:, None] * X
    nan = np.full(X.shape[1], np.nan)
    inseparable = HardMarginSVM(nan, np.full(len(y), np.nan), (), (), float("nan"), separable=False)
    scale = float(np.linalg.norm(G, axis=1).max())
    if scale == 0:
        return inseparable
    E = np.vstack([G.T / scale, np.ones((1, len(y)))])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * E.shape[1])
    r = E @ u - f
    if abs(r[-1]) <= np.finfo(np.float64).eps * max(1.0, float(u.sum())):
        return inseparable
    w_scaled = -r[:-1] / r[-1]
    active = E[:, u > 0]
    conditioning = (float(np.linalg.cond(active)) * float(np.linalg.norm(active, 2)) * float(np.linalg.norm(u))
                    * (1 + float(np.linalg.norm(w_scaled))) / abs(float(r[-1]))) if active.size else 0.0
    tolerance = feasibility_tolerance(G / scale, w_scaled, conditioning)
    worst = float(np.max((1.0 - (G / scale) @ w_scaled) / tolerance))
    # a tolerance of 1 or more cannot tell y <w, x> >= 1 from <= 0: the margin is below float64's resolution
    if not (worst <= 1 and float(tolerance.max()) < 1):
        return dataclasses.replace(inseparable, worst_violation=worst)
    w = w_scaled / scale
    alpha = u / (1.0 - u.sum()) / scale**2
    on_margin = np.flatnonzero(G @ w <= 1 + np.sqrt(np.finfo(np.float64).eps))
    return HardMarginSVM(w, alpha, tuple(int(i) for i in np.flatnonzero(alpha > 0)), tuple(int(i) for i in on_margin),
                         float(1 / np.linalg.norm(w)), separable=True, worst_violation=worst, tolerance=tolerance)


def angle(a, b) -> float:
    """The angle between two vectors, accurate for small angles: 2 atan2(||a^ - b^||, ||a^ + b^||)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(2 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))
