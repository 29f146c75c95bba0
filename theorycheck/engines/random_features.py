"""Random ReLU features on the sphere: the Mei & Montanari ridgeless limit of the min-norm test error, and its
label-averaged Monte Carlo estimate.

Setting (Mei & Montanari, Comm. Pure Appl. Math. 75, 2022, arXiv:1908.05355, Eqs. 8, 15-19): x_i, theta_a
uniform on the sphere of radius sqrt(d), i <= n, a <= N; features Z_ia = relu(<theta_a, x_i> / sqrt(d));
y = <beta, x> + eps with ||beta||^2 = F1^2, E eps^2 = tau^2; a_hat = Z^+ y. With psi1 = N / d, psi2 = n / d
fixed as d -> infinity, E_x (<beta, x> - a_hat . z(x))^2 -> F1^2 B + tau^2 V, B = E1 / E0, V = E2 / E0
(ridgeless chi below; zeta = mu_1 / mu_*, ReLU: 1.658897).
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
from threadpoolctl import threadpool_limits

from ..core.threads import THREAD_VARIABLES

__all__ = ["one_blas_thread", "ZETA_RELU", "ZETA_SQUARED_RELU", "RandomFeaturesDraws", "ridgeless_terms", "ridgeless_coefficients",
           "random_features_draws"]

MU1, MU_STAR2 = 0.5, 0.25 - 1 / (2 * math.pi)  # E G relu(G), E relu(G)^2 - mu_0^2 - mu_1^2 for G ~ N(0, 1)
ZETA_RELU = MU1 / math.sqrt(MU_STAR2)
ZETA_SQUARED_RELU = MU1 ** 2 / MU_STAR2  # mu_1^2 / mu_*^2: a misprint of zeta (a negative control)


def ridgeless_terms(psi1: float, psi2: float, zeta: float = ZETA_RELU) -> tuple[float, float, float, float]:
    """(chi, E0, E1, E2) of the ridgeless limit: chi the negative root of
    zeta^2 chi^2 - (1 + zeta^2 - psi zeta^2) chi - psi = 0, psi = min(psi1, psi2)."""
    psi, z2 = min(psi1, psi2), zeta ** 2
    a = psi * z2 - z2 - 1
    chi = -(a + math.sqrt(a * a + 4 * psi * z2)) / (2 * z2)
    p12 = psi1 * psi2
    E0 = (-chi ** 5 * zeta ** 6 + 3 * chi ** 4 * zeta ** 4 + (p12 - psi2 - psi1 + 1) * chi ** 3 * zeta ** 6
          - 2 * chi ** 3 * zeta ** 4 - 3 * chi ** 3 * z2 + (psi1 + psi2 - 3 * p12 + 1) * chi ** 2 * zeta ** 4
          + 2 * chi ** 2 * z2 + chi ** 2 + 3 * p12 * chi * z2 - p12)
    E1 = psi2 * chi ** 3 * zeta ** 4 - psi2 * chi ** 2 * z2 + p12 * chi * z2 - p12
    E2 = (chi ** 5 * zeta ** 6 - 3 * chi ** 4 * zeta ** 4 + (psi1 - 1) * chi ** 3 * zeta ** 6
          + 2 * chi ** 3 * zeta ** 4 + 3 * chi ** 3 * z2 + (-psi1 - 1) * chi ** 2 * zeta ** 4 - 2 * chi ** 2 * z2
          - chi ** 2)
    return chi, E0, E1, E2


def ridgeless_coefficients(psi1: float, psi2: float, zeta: float = ZETA_RELU) -> tuple[float, float]:
    """(B, V): the limit test error is F1^2 B + (tau^2 + F*^2) V + F*^2 (infinite at psi1 = psi2)."""
    if psi1 == psi2:
        return math.inf, math.inf
    _, E0, E1, E2 = ridgeless_terms(psi1, psi2, zeta)
    return E1 / E0, E2 / E0


@dataclasses.dataclass(frozen=True)
class RandomFeaturesDraws:
    """Per draw of (X, Theta, test set): ``bias`` = ||M X - X_test||_F^2 / (d m) (per unit F1^2, beta uniform on
    its sphere) and ``variance`` = ||M||_F^2 / m (per unit tau^2), M = Z_test Z^+; the label randomness is
    integrated out exactly."""

    d: int
    n: int
    N: int
    bias: np.ndarray
    variance: np.ndarray

    def risks(self, r2: float, sigma2: float) -> np.ndarray:
        """The per-draw test error of F1^2 = ``r2``, tau^2 = ``sigma2``."""
        return r2 * self.bias + sigma2 * self.variance


def one_blas_thread():
    """One BLAS thread unless the user chose a count (OMP_NUM_THREADS / MKL_NUM_THREADS): products of a few hundred
    rows are too small to split, and on a loaded 2-core machine two threads ran them 10-25x slower (d = 50-100,
    measured)."""
    user_set = any(os.environ.get(variable) for variable in THREAD_VARIABLES)
    return threadpool_limits(limits=None if user_set else 1, user_api="blas")


def _sphere(rng: np.random.Generator, rows: int, d: int, dtype) -> np.ndarray:
    x = rng.standard_normal((rows, d))
    return (x * (math.sqrt(d) / np.linalg.norm(x, axis=1, keepdims=True))).astype(dtype)


def random_features_draws(d: int, n: int, N: int, *, draws: int, test_points: int = 1000, seed: int = 0,
                          dtype: str = "float64") -> RandomFeaturesDraws:
    """``draws`` independent (X, Theta, test set) of the min-norm random ReLU features fit (SVD pseudo-inverse,
    singular values below max(n, N) eps s_max dropped), computed in ``dtype``."""
    rng = np.random.default_rng([seed, d, n, N])
    bias, variance = np.empty(draws), np.empty(draws)
    with one_blas_thread():
        for k in range(draws):
            X, X_test, Theta = (_sphere(rng, rows, d, dtype) for rows in (n, test_points, N))
            Z, Z_test = (np.maximum(A @ Theta.T / np.asarray(math.sqrt(d), dtype), 0) for A in (X, X_test))
            U, s, Vt = np.linalg.svd(Z, full_matrices=False)
            keep = s > max(n, N) * np.finfo(dtype).eps * s[0]
            M = ((Z_test @ Vt[keep].T) / s[keep]) @ U[:, keep].T  # Z_test Z^+, m x n
            bias[k] = np.sum((M @ X - X_test).astype(np.float64) ** 2) / (d * test_points)
            variance[k] = np.sum(M.astype(np.float64) ** 2) / test_points
    return RandomFeaturesDraws(d=d, n=n, N=N, bias=bias, variance=variance)
