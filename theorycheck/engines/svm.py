"""The hard-margin linear SVM without intercept, solved exactly as a least-distance program.

min ||w|| subject to y_n <w, x_n> >= 1 is least-distance programming (LDP): min ||w|| s.t. G w >= h with
G = diag(y) X, h = 1. Lawson & Hanson, "Solving Least Squares Problems" (1974), ch. 23: solve the
non-negative least squares problem min_{u >= 0} ||E u - f|| with E = [G^T; h^T], f = (0, ..., 0, 1);
with r = E u - f, the solution is w = -r[:d] / r[d], and u / (1 - h^T u) are the multipliers
(w = G^T alpha). A zero residual means the constraints are infeasible (the data are not linearly
separable through the origin). The problem is solved in the units of X / max_n ||x_n|| (after an exact power-of-two
scaling), the active set re-solved by SVD, and every w verified against all constraints before it is returned. This is the oracle for Soudry et al. (JMLR 2018): gradient descent on
separable data converges in direction to this w.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import tempfile

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
    solver_messages: tuple[str, ...] = ()  # what LAPACK wrote to stderr while solving (captured, not printed)


def feasibility_tolerance(G: np.ndarray, w: np.ndarray, conditioning: float = 0.0) -> np.ndarray:
    """Per-constraint roundoff allowed in y_n <w, x_n> >= 1, in the units of G = diag(y) X / max ||g_n||:
    2 gamma_{N+d+1} ||g_n|| (sqrt(||w||^2 + 1) + conditioning).

    ``conditioning`` is the solver's error in w relative to gamma: for w solved on the active rows G_S (the
    minimum-norm solution of G_S w = 1, backward stable), ||w^ - w|| <= gamma cond(G_S) ||w|| to first order
    (Higham, Sec. 20.1), which moves each margin by ||g_n|| ||w^ - w||: ``conditioning`` = cond(G_S) ||w||.
    Without it, the error of the dot products that form the margins (and the NNLS's dual feasibility
    E^T (E u - f) >= 0, which gives g_n . w >= 1 exactly: Lawson & Hanson, Thm 23.4)."""
    N, d = G.shape
    nu = (N + d + 1) * np.finfo(np.float64).eps / 2
    return 2 * nu / (1 - nu) * np.linalg.norm(G, axis=1) * (np.sqrt(float(w @ w) + 1.0) + conditioning)


@contextlib.contextmanager
def _lapack_stderr(messages: list[str]):
    """LAPACK's XERBLA writes to the process's stderr (file descriptor 2), around Python: capture it into
    ``messages`` so the solver never prints to the user's terminal."""
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 (embedded interpreters): nothing can print there
            yield
            return
        os.dup2(sink.fileno(), 2)
        try:
            with np.errstate(all="ignore"):
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                messages.append(text)


def _power_of_two_scale(G: np.ndarray) -> float:
    """2^e with max |G| in [1/2, 1) after dividing by it: exact, so row norms neither overflow nor underflow."""
    largest = float(np.abs(G).max())
    return math.ldexp(1.0, math.frexp(largest)[1]) if largest > 0 else 0.0


def _polished(u: np.ndarray, Gs: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The minimum-norm w with g_n . w = 1 on the NNLS's active rows (a backward-stable SVD solve, one step of
    iterative refinement), its multipliers alpha (w = G_S^T alpha, all >= 0 for a KKT point) and cond(G_S);
    None where the active set gives no such point (negative alpha)."""
    support = np.flatnonzero(u > 0)
    if not support.size:
        return None
    rows = Gs[support]
    ones = np.ones(len(support))
    w = np.linalg.lstsq(rows, ones, rcond=None)[0]
    w = w + np.linalg.lstsq(rows, ones - rows @ w, rcond=None)[0]
    alpha_s = np.linalg.lstsq(rows.T, w, rcond=None)[0]
    singular = np.linalg.svd(rows, compute_uv=False)
    cond = float(singular[0] / singular[-1]) if singular[-1] > 0 else math.inf
    # alpha_s is solved to relative error gamma cond(G_S): a support vector's alpha within it of 0 is 0
    resolution = 2 * (sum(Gs.shape) + 1) * np.finfo(np.float64).eps * cond * float(np.abs(alpha_s).max())
    if not (alpha_s >= -resolution).all():
        return None
    alpha = np.zeros(Gs.shape[0])
    alpha[support] = np.maximum(alpha_s, 0.0)
    return w, alpha, cond


def hard_margin_svm(X, y) -> HardMarginSVM:
    """Solve min ||w|| s.t. y_n <w, x_n> >= 1 exactly (Lawson-Hanson LDP via NNLS). X: (N, d), y in {-1, +1}.

    Scale-free: G = diag(y) X is divided by a power of two (exact) and then by its largest row norm s, so
    separability and ||w|| do not depend on the units of X (X x 1e160 or x 1e-300 alike), and w is scaled
    back by 1/s. The NNLS's active set is then solved again for the minimum-norm w with unit margins there
    (an SVD solve), so margins down to ~1e-7 of the largest ||x_n|| are resolved. Every w is checked against
    all N constraints within :func:`feasibility_tolerance` (the margins' dot products and the solver's error
    cond(G_S) ||w|| gamma) before it is returned; one that fails, or whose tolerance reaches 1 (contradictory
    labels, margins below the resolution of float64), is reported as not separable. LAPACK's messages are
    captured, never printed (``solver_messages``)."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    expect(len(X) == len(y) and len(y) >= 1, expected="X of shape (N, d) and N labels",
           received=f"X {X.shape}, y {y.shape}", fix="pass one label per row of X")
    expect(bool(np.isfinite(X).all()) and bool(np.isin(y, (-1.0, 1.0)).all()),
           expected="finite X and labels in {-1, +1}", received="non-finite entries or other labels",
           fix="drop rows with NaN/inf; y = 2 * y - 1 for 0/1 labels")
    messages: list[str] = []
    with _lapack_stderr(messages):
        result = _solve(y[:, None] * X, len(y), X.shape[1])
    return dataclasses.replace(result, solver_messages=tuple(messages))


def _solve(G: np.ndarray, N: int, d: int) -> HardMarginSVM:
    nan = np.full(d, np.nan)
    inseparable = HardMarginSVM(nan, np.full(N, np.nan), (), (), float("nan"), separable=False)
    binary = _power_of_two_scale(G)
    if binary == 0:
        return inseparable
    G = G / binary
    scale = float(np.linalg.norm(G, axis=1).max())
    Gs = G / scale
    E = np.vstack([Gs.T, np.ones((1, N))])
    f = np.zeros(E.shape[0])
    f[-1] = 1.0
    u, _ = nnls(E, f, maxiter=50 * E.shape[1])
    r = E @ u - f
    if abs(r[-1]) <= np.finfo(np.float64).eps * max(1.0, float(u.sum())):
        return inseparable
    polished = _polished(u, Gs)
    if polished is not None:
        w_scaled, alpha_scaled, cond = polished
        tolerance = feasibility_tolerance(Gs, w_scaled, cond * float(np.linalg.norm(w_scaled)))
    else:  # the NNLS's own w, its error bounded through the active columns' conditioning
        w_scaled = -r[:-1] / r[-1]
        alpha_scaled = u / (1.0 - u.sum())
        active = E[:, u > 0]
        conditioning = (float(np.linalg.cond(active)) * float(np.linalg.norm(active, 2)) * float(np.linalg.norm(u))
                        * (1 + float(np.linalg.norm(w_scaled))) / abs(float(r[-1]))) if active.size else 0.0
        tolerance = feasibility_tolerance(Gs, w_scaled, conditioning)
    worst = float(np.max((1.0 - Gs @ w_scaled) / tolerance))
    # a tolerance of 1 or more cannot tell y <w, x> >= 1 from <= 0: the margin is below float64's resolution
    if not (worst <= 1 and float(tolerance.max()) < 1):
        return dataclasses.replace(inseparable, worst_violation=worst)
    w = w_scaled / scale / binary
    alpha = alpha_scaled / scale**2 / binary / binary  # may underflow to 0 for huge X (alpha ~ 1 / ||x||^2)
    margins = Gs @ w_scaled
    on_margin = np.flatnonzero(margins <= 1 + np.maximum(np.sqrt(np.finfo(np.float64).eps), tolerance))
    return HardMarginSVM(w, alpha, tuple(int(i) for i in np.flatnonzero(alpha_scaled > 0)), tuple(int(i) for i in on_margin),
                         float(scale * binary / np.linalg.norm(w_scaled)),  # 1 / ||w||, formed in scaled units
                         separable=True, worst_violation=worst, tolerance=tolerance)


def angle(a, b) -> float:
    """The angle between two vectors, accurate for small angles: 2 atan2(||a^ - b^||, ||a^ + b^||), at any scale."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    a, b = a / _power_of_two_scale(a), b / _power_of_two_scale(b)  # exact: norms neither overflow nor underflow
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(2 * np.arctan2(np.linalg.norm(a - b), np.linalg.norm(a + b)))
