"""A user's estimator y -> b on a fixed design, read as a matrix: its columns are its values on the unit
vectors e_1 .. e_n, and a probe y checks that it is linear (b(y) = A y); exact expected risks of a linear
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
                     seed: int = 0) -> tuple[np.ndarray, float]:
    """(A, linearity gap): A (d, n) with column i = estimator(e_i, *args) in float64, and the relative gap
    ||estimator(y) - A y|| / (||A|| ||y||) on one standard normal probe y (0 for a linear estimator, up to its
    rounding)."""
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
    probe = np.random.default_rng(seed).standard_normal(n)
    scale = np.linalg.norm(A) * np.linalg.norm(probe)
    gap = float(np.linalg.norm(call(probe) - A @ probe))
    return A, (gap / scale if scale > 0 else (0.0 if gap == 0 else np.inf))


def linear_risk(A: np.ndarray, X: np.ndarray, beta0: np.ndarray, sigma: float) -> float:
    """E||A y - beta0||^2 for y = X beta0 + noise of covariance sigma^2 I."""
    return float(np.sum((A @ (X @ beta0) - beta0) ** 2) + sigma ** 2 * np.sum(A ** 2))
