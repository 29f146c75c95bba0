"""Per-sample classification losses l(q) of the margin q = y f(x), computed in log space.

Every loss gives log l(q) and its first two q-derivatives without overflow or underflow, so a summed
loss L = sum_n l(q_n) is represented by log L = logsumexp_n log l(q_n): 1e-300 and far below are
fine. ``margin_numerator`` is l^{-1}(L) written as a function of log L, the numerator of Lyu & Li's
smoothed margin (ICLR 2020, eq. 5 and Sec. 4.1): log(1/L) for the exponential loss,
-log(e^L - 1) for the logistic loss.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from ..core.errors import InvalidArgument


def _log1p_ratio(u: torch.Tensor) -> torch.Tensor:
    """log1p(u) / u for u in [0, 1], with its series 1 - u/2 below 1e-8 (where u may be subnormal or 0)."""
    small = u < 1e-8
    return torch.where(small, 1 - u / 2, torch.log1p(u) / torch.where(small, torch.ones_like(u), u))


def _logistic_log(q: torch.Tensor) -> torch.Tensor:
    """log(log(1 + e^{-q})): -q + log(log1p(u)/u) with u = e^{-q} for q > 0 (no underflow to log 0)."""
    u = torch.exp(-q.clamp(min=0))
    ratio = _log1p_ratio(u)
    return torch.where(q > 0, -q + torch.log(ratio), torch.log(torch.nn.functional.softplus(-q.clamp(max=0))))


def _logistic_dlog(q: torch.Tensor) -> torch.Tensor:
    """d/dq log l = -sigmoid(-q) / softplus(-q) (-> -1 as q -> infinity)."""
    u = torch.exp(-q.clamp(min=0))
    positive = -1.0 / ((1 + u) * _log1p_ratio(u))
    qn = q.clamp(max=0)
    return torch.where(q > 0, positive, -torch.sigmoid(-qn) / torch.nn.functional.softplus(-qn))


def _logistic_d2log(q: torch.Tensor) -> torch.Tensor:
    """d^2/dq^2 log l = sigmoid(q) sigmoid(-q) / l - (d log l)^2."""
    dlog = _logistic_dlog(q)
    logsig = torch.nn.functional.logsigmoid
    ratio = torch.exp(logsig(q) + logsig(-q) - _logistic_log(q))
    return ratio - dlog**2


def _expm1_ratio(x: torch.Tensor) -> torch.Tensor:
    """expm1(x) / x for x >= 0, with its series 1 + x/2 below 1e-8 (where x may be subnormal or 0)."""
    small = x < 1e-8
    return torch.where(small, 1 + x / 2, torch.expm1(x) / torch.where(small, torch.ones_like(x), x))


def _logistic_numerator(log_loss: torch.Tensor) -> torch.Tensor:
    """l^{-1}(L) = -log(expm1(L)) = -log L - log(expm1(L)/L), stable for log L -> -infinity."""
    return -log_loss - torch.log(_expm1_ratio(torch.exp(log_loss)))


def _logistic_numerator_slope(log_loss: torch.Tensor) -> torch.Tensor:
    """d l^{-1}(L) / d log L = -L e^L / (e^L - 1) (-> -1 as L -> 0)."""
    total = torch.exp(log_loss)
    return -torch.exp(total) / _expm1_ratio(total)


@dataclasses.dataclass(frozen=True)
class Loss:
    """A margin loss l(q): log l, its q-derivatives, l(0), and the smoothed-margin numerator."""

    name: str
    log: Callable[[torch.Tensor], torch.Tensor]  # log l(q), elementwise
    dlog: Callable[[torch.Tensor], torch.Tensor]  # d/dq log l(q)
    d2log: Callable[[torch.Tensor], torch.Tensor]  # d^2/dq^2 log l(q)
    at_zero: float  # l(0): the summed-loss threshold of Lyu & Li's assumption L(t0) < l(0)
    exponential_type: bool  # exponential tail (Lyu & Li's assumptions on the loss)
    margin_numerator: Callable[[torch.Tensor], torch.Tensor]  # l^{-1}(L) from log L
    margin_numerator_slope: Callable[[torch.Tensor], torch.Tensor]  # its d/d log L

    def log_total(self, q: torch.Tensor) -> torch.Tensor:
        """log sum_n l(q_n) by log-sum-exp."""
        return torch.logsumexp(self.log(q), 0)


def _square_log(q):
    return 2 * torch.log(torch.abs(1 - q)) - math.log(2.0)


LOSSES = {
    "exp": Loss("exp", log=lambda q: -q, dlog=lambda q: -torch.ones_like(q), d2log=torch.zeros_like,
                at_zero=1.0, exponential_type=True, margin_numerator=lambda s: -s,
                margin_numerator_slope=lambda s: -torch.ones_like(s)),
    "logistic": Loss("logistic", log=_logistic_log, dlog=_logistic_dlog, d2log=_logistic_d2log,
                     at_zero=math.log(2.0), exponential_type=True, margin_numerator=_logistic_numerator,
                     margin_numerator_slope=_logistic_numerator_slope),
    # l(q) = (1 - q)^2 / 2 = (f - y)^2 / 2 for y in {-1, +1}: a finite interpolant, no margin theory; its
    # "smoothed margin" is reported with the exponential loss's numerator log(1/L) for comparison only
    "square": Loss("square", log=_square_log, dlog=lambda q: -2 / (1 - q), d2log=lambda q: -2 / (1 - q) ** 2,
                   at_zero=0.5, exponential_type=False, margin_numerator=lambda s: -s,
                   margin_numerator_slope=lambda s: -torch.ones_like(s)),
}


def get_loss(name: str | Loss) -> Loss:
    """The loss called ``name`` (one of :data:`LOSSES`), or ``name`` itself if it is a Loss."""
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise InvalidArgument(f"expected a loss in {sorted(LOSSES)}, but got loss={name!r}. "
                              "Fix: loss='exp' or 'logistic' (exponential-type), or 'square'.")
    return LOSSES[name]
