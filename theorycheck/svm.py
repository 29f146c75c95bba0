"""The hard-margin linear SVM without intercept, solved exactly as a least-distance program.

min ||w|| subject to y_n <w, x_n> >= 1 is least-distance programming (LDP): min ||w|| s.t. G w >= h with
G = diag(y) X, h = 1. Lawson & Hanson, "Solving Least Squares Problems" (1974), ch. 23: solve the
non-negative least squares problem min_{u >= 0} ||E u - f|| with E = [G^T; h^T], f = (0, ..., 0, 1);
with r = E u - f, the solution is w = -r[:d] / r[d], and u / (1 - h^T u) are the multipliers
(w = G^T alpha). A zero residual means the constraints are infeasible (the data are not linearly
separable through the origin). This is the oracle for Soudry et al. (JMLR 2018): gradient descent on
separable data converges in direction to this w.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import nnls

from .errors import expect


@dataclasses.dataclass(frozen=True)
class HardMarginSVM:
    """w (min-norm with all margins >= 1), the multipliers alpha >= 0 (w = sum alpha_n y_n x_n), the
    support set {n: alpha_n > 0}, the active set {n: y_n <w, x_n> = 1} (within sqrt(eps): it also holds
    points on the margin with alpha_n = 0), and the geometric margin 1/||w||."""

    w: np.ndarray
    alpha: np.ndarray
    support: tuple[int, ...]
    active: tuple[int, ...]
    margin: float
    separable: bool


def hard_margin_svm(X, y) -> HardMarginSVM:
    """Solve min ||w|| s.t. y_n <w, x_n> >= 1 exactly (Lawson-Hanson LDP via NNLS). X: (N, d), y in {-1, +1}."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    expect(len(X) == len(y) and len(y) >= 1, expected="X of shape (N, d) and N labels",
           received=f"X {X.shape}, y {y.shape}", fix="pass one label per row of X")
    G = y[:, None] * X
    E = np.vstack([G.T, np.ones((1, len(y)))])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * E.shape[1])
    r = E @ u - f
    if abs(r[-1]) <= np.finfo(np.float64).eps * max(1.0, float(u.sum())):
        nan = np.full(X.shape[1], np.nan)
        return HardMarginSVM(nan, np.full(len(y), np.nan), (), (), float("nan"), separable=False)
    w = -r[:-1] / r[-1]
    alpha = u / (1.0 - u.sum())
    active = np.flatnonzero(G @ w <= 1 + np.sqrt(np.finfo(np.float64).eps))
    return HardMarginSVM(w, alpha, tuple(int(i) for i in np.flatnonzero(alpha > 0)), tuple(int(i) for i in active),
                         float(1 / np.linalg.norm(w)), separable=True)


def angle(a, b) -> float:
    """The angle between two vectors, accurate for small angles: 2 atan2(||a^ - b^||, ||a^ + b^||)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(2 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))
