"""A user's estimator y -> b on a fixed design, read as a matrix: its columns are its values on the unit
vectors e_1 .. e_n, and probes y at the scales of the data check that it is linear (b(y) = A y); exact expected risks of a linear
estimator follow from A (a record, never a verdict).

For y = X beta0 + noise (mean 0, covariance sigma^2 I): E||A y - beta0||^2 = ||(A X - I) beta0||^2 +
sigma^2 ||A||_F^2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..core.errors import InvalidArgument, expect


def estimator_matrix(estimator: Callable, n: int, d: int, *, dtype: torch.dtype, device, args=(),
                     probes: np.ndarray | None = None, seed: int = 0) -> tuple[np.ndarray, float]:
    """(A, linearity gap): A (d, n) with column i = estimator(e_i, *args) in float64, and the largest relative gap
    ||estimator(y) - A y|| / (||A|| ||y||) over the columns y of ``probes`` (n, p) (default one standard normal
    probe): 0 for a linear estimator, up to its rounding. A nonlinearity shows only at the scales probed."""
    def call(y: np.ndarray) -> np.ndarray:
        try:
            out = estimator(torch.as_tensor(y, dtype=dtype, device=device), *args)
        except Exception as error:  # the user's code: its failure is reported as what it was asked to do
            raise InvalidArgument(f"expected the estimator to evaluate at y of shape ({n},) with arguments {args}, but "
                                  f"it raised {type(error).__name__}: {error}. Fix: make it accept every y (the unit "
                                  "vectors e_i are used to read it as a matrix)") from error
        expect(isinstance(out, torch.Tensor) and tuple(out.shape) in ((d,), (d, 1)), expected=f"an estimator "
               f"returning a tensor of shape ({d},) (the coefficients b)", received=f"{type(out).__name__} "
               f"{tuple(getattr(out, 'shape', ()))}", fix="return the fitted coefficient vector")
        return out.detach().cpu().to(torch.float64).numpy().reshape(d)

    A = np.stack([call(e) for e in np.eye(n)], axis=1)
    probes = np.random.default_rng(seed).standard_normal((n, 1)) if probes is None else probes
    worst = 0.0
    for probe in probes.T:
        scale = np.linalg.norm(A) * np.linalg.norm(probe)
        gap = float(np.linalg.norm(call(probe) - A @ probe))
        worst = max(worst, gap / scale if scale > 0 else (0.0 if gap == 0 else np.inf))
    return A, worst


def linearity_probes(X: np.ndarray, beta0: np.ndarray, sigma: float, *, count: int = 3, seed: int = 0) -> np.ndarray:
    """Probe vectors (n, p) at the scales of y = X beta0 + noise (sd sigma): the signal X beta0, ``count`` draws of
    X beta0 + sigma z and of sigma z alone, each also times a in (1e-2, 0.1, 1 + 8 / sqrt(n)): from well below
    the typical ||y|| to beyond its tail (||sigma z|| > sigma (sqrt(n) + 8) has probability < 1e-13)."""
    n = X.shape[0]
    Z = np.random.default_rng(seed).standard_normal((n, count))
    mean = X @ beta0
    base = [mean] + [mean + sigma * z for z in Z.T] + [sigma * z for z in Z.T]
    base = [b for b in base if np.any(b != 0)] or [z for z in Z.T]
    return np.stack([a * b for b in base for a in (1e-2, 0.1, 1.0, 1 + 8 / np.sqrt(n))], axis=1)


def linear_risk(A: np.ndarray, X: np.ndarray, beta0: np.ndarray, sigma: float) -> float:
    """E||A y - beta0||^2 for y = X beta0 + noise of covariance sigma^2 I."""
    return float(np.sum((A @ (X @ beta0) - beta0) ** 2) + sigma ** 2 * np.sum(A ** 2))
