"""Kernels and kernel ridge regression with its exact leave-one-out residuals.

f_S(x) = sum_j alpha_j k(x_j, x), alpha = A^{-1} y, A = K + mu I with mu = n lambda (the minimizer of
(1/n) sum (f(x_i) - y_i)^2 + lambda ||f||_k^2; mu = 0: the minimum-norm interpolant). Leave-one-out
with mu held fixed (Wahba 1990, the PRESS / hat-matrix identity): y_i - f_{S\\i}(x_i) = alpha_i / (A^{-1})_ii.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from ..core.devices import gamma
from ..core.errors import expect

__all__ = ["KERNELS", "RidgeFit", "kernel_matrix", "kernel_kappa2", "kernel_ridge_refit", "ridge_fit"]


def _distance(A, B):
    """Pairwise distances by differences: the matmul form ||a||^2 + ||b||^2 - 2<a, b> loses sqrt(eps) in the
    distance of near-duplicates, enough to make a Laplace kernel matrix indefinite."""
    return torch.cdist(A, B, compute_mode="donot_use_mm_for_euclid_dist")


def _rbf(A, B, h):
    return torch.exp(-_distance(A, B) ** 2 / (2 * h ** 2))


def _laplace(A, B, h):
    return torch.exp(-_distance(A, B) / h)


def _linear(A, B, h):
    return A @ B.T


def _sigmoid(A, B, h):  # tanh(<a, b>/h - 1): not positive semi-definite (a negative control)
    return torch.tanh(A @ B.T / h - 1.0)


KERNELS: dict[str, Callable] = {"rbf": _rbf, "laplace": _laplace, "linear": _linear, "sigmoid": _sigmoid}


def kernel_matrix(kernel: str | Callable, A: torch.Tensor, B: torch.Tensor, *, bandwidth: float = 1.0) -> torch.Tensor:
    """k(a_i, b_j) for a kernel name in :data:`KERNELS` or a callable ``k(A, B) -> (len(A), len(B))``."""
    if callable(kernel):
        return kernel(A, B)
    expect(kernel in KERNELS, expected=f"a kernel in {sorted(KERNELS)} or a callable k(A, B)", received=repr(kernel),
           fix="pick one of those names or pass your own function")
    expect(bandwidth > 0, expected="bandwidth > 0", received=repr(bandwidth), fix="e.g. bandwidth=1.0")
    return KERNELS[kernel](A.reshape(A.shape[0], -1), B.reshape(B.shape[0], -1), float(bandwidth))


def kernel_kappa2(kernel: str | Callable, X: torch.Tensor, *, bandwidth: float = 1.0) -> tuple[float, str]:
    """kappa^2 = sup_x k(x, x) and where the sup is taken: every x for rbf/laplace (k(x, x) = 1),
    else the largest k(x, x) over the points given (the data and probes)."""
    if kernel in ("rbf", "laplace"):
        return 1.0, f"{kernel}: k(x, x) = 1 for every x"
    diag = torch.stack([kernel_matrix(kernel, x[None], x[None], bandwidth=bandwidth)[0, 0] for x in X])
    return float(diag.max()), "max k(x, x) over the data and probe points (the domain of the check)"


@dataclasses.dataclass(frozen=True)
class RidgeFit:
    """alpha = A^{-1} y with A = K + mu I; ``inverse_diag`` = diag(A^{-1}); ``loo`` = y - f_{S\\i}(x_i)
    by the exact formula; ``eigenvalues`` of A (ascending); ``backward`` = n gamma_{n+1}, the normwise
    backward error of the Cholesky solves relative to ||A|| (Higham, Thm 10.4)."""

    alpha: torch.Tensor
    inverse_diag: torch.Tensor | None
    eigenvalues: torch.Tensor | None
    ridge: float
    positive_definite: bool

    @property
    def loo(self) -> torch.Tensor:
        return self.alpha / self.inverse_diag

    @property
    def condition(self) -> float:
        if self.eigenvalues is None:
            return math.nan
        lo, hi = float(self.eigenvalues[0]), float(self.eigenvalues[-1])
        return hi / lo if lo > 0 else math.inf

    @property
    def backward(self) -> float:
        n = self.alpha.numel()
        return n * gamma(n + 1, self.alpha.dtype)


def ridge_fit(K: torch.Tensor, y: torch.Tensor, ridge: float, *, full: bool = True) -> RidgeFit:
    """Solve (K + ridge I) alpha = y by Cholesky (alpha NaN when A is not positive definite in floating
    point); with ``full``, also diag(A^{-1}) and A's eigenvalues."""
    A = K + ridge * torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    eigenvalues = torch.linalg.eigvalsh(A) if full else None
    factor, info = torch.linalg.cholesky_ex(A)
    if int(info) != 0:
        nan = torch.full_like(y, math.nan)
        return RidgeFit(nan, nan if full else None, eigenvalues, float(ridge), False)
    alpha = torch.cholesky_solve(y.reshape(-1, 1), factor).reshape(-1)
    inverse = torch.diagonal(torch.cholesky_inverse(factor)).clone() if full else None
    return RidgeFit(alpha, inverse, eigenvalues, float(ridge), True)


def kernel_ridge_refit(kernel: str | Callable = "rbf", *, ridge: float, bandwidth: float = 1.0) -> Callable:
    """A refit ``(X_train, y_train) -> alpha`` (coefficients on X_train) solving (K + ridge I) alpha = y with
    ``ridge`` held fixed: pass ridge = n lambda of the full sample (the convention of the exact LOO formula
    and of Bousquet & Elisseeff's removal stability, whose objective keeps the 1/n normalization)."""

    def refit(X_train, y_train):
        return ridge_fit(kernel_matrix(kernel, X_train, X_train, bandwidth=bandwidth), y_train, ridge, full=False).alpha

    return refit
