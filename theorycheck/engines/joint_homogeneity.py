"""Joint positive homogeneity in the TRAINED parameters: f(c theta; x_n) = c^L f(theta; x_n) for c > 0, with
theta the parameters that require gradients and every frozen parameter held fixed, on the training inputs.

This is the homogeneity Lyu & Li (ICLR 2020, Assumption (A1) with Thm 4.1/4.4) assume: gradient flow moves only
theta, and only the margins q_n(theta) = y_n f(theta; x_n) on the training inputs enter it. Per-layer
homogeneity is not needed: a frozen biased backbone with a bias-free trainable head, or two branches of the same
joint degree, qualify; a trainable parameter f is not homogeneous in (an output bias) does not.

Measured on a float64 copy (or in the model's dtype where its forward fixes dtypes itself) by scaling theta
alone by exact powers of two c = 2^{+-k} (the scaled parameters are exact, so the only error is each forward
pass's roundoff): the degree is read off the widest factor, L = log(f(c theta) / f(theta)) / log c on the sample
that resolves it best, and the identity is tested at every factor and sample within
gamma_K (|f|(c|theta|) + c^L |f|(|theta|)) + |log c| dL c^L |f(theta)|, with |f|(.) the pass on absolute values
(Higham's forward-error scale), K the summed fan-ins of all weight layers (x max(1, L)), and dL the degree's
own roundoff (0 for a stated degree).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.func import functional_call

from ..core.devices import dtype_name, gamma, unit_roundoff

EXPONENTS = (1, 2, 4, 8, 16, 32, 64)  # c = 2^{+-k}, kept while |k L| <= half the dtype's largest exponent
REFERENCE = torch.float64  # the passes run on a float64 copy (float32 weights exactly) where the forward allows


@dataclasses.dataclass(frozen=True)
class JointHomogeneity:
    """A measurement of f(c theta) = c^L f(theta) in the trained parameters theta on a batch.

    ``homogeneous``: True (every scaling within tolerance), False (one fails, or the pass is random, or f does
    not grow with theta: L <= 0), None (undecided: f within roundoff of 0 on every sample, or non-finite).
    ``degree``: the L tested (the stated one, else ``measured``); ``statistic``: worst residual / tolerance.
    """

    homogeneous: bool | None
    degree: float
    measured: float
    statistic: float
    reason: str
    details: dict

    def summary(self) -> str:
        word = {True: "jointly homogeneous", None: "homogeneity undecided", False: "not homogeneous"}[self.homogeneous]
        return (f"{word} in the trained parameters (degree {self.degree:.6g}, measured {self.measured:.6g}; worst "
                f"residual / tolerance {self.statistic:.3e})" + (f": {self.reason}" if self.reason else ""))


def measure_joint_homogeneity(model: torch.nn.Module, X: torch.Tensor, *, degree: float | None = None
                              ) -> JointHomogeneity:
    """f(c theta) = c^L f(theta) on ``X`` for theta = ``model``'s parameters with requires_grad, frozen ones
    fixed; L = ``degree`` when stated, else measured. The model is not changed (buffers are copied, the random
    state restored)."""
    with torch.random.fork_rng(devices=[X.device] if X.device.type == "cuda" else []):
        return _measure(model, X, degree)


def _measure(model, X, stated) -> JointHomogeneity:
    """On a float64 copy (the weights exactly, the tightest roundoff), or in the model's own dtype where its forward
    refuses the copy (it fixes dtypes itself); the details say which."""
    try:
        return _measure_in(model, X, stated, REFERENCE)
    except RuntimeError:
        if X.dtype == REFERENCE:
            raise
        return _measure_in(model, X, stated, X.dtype)


def _measure_in(model, X, stated, precision: torch.dtype) -> JointHomogeneity:
    named = {n: p.detach().to(precision) for n, p in model.named_parameters()}
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    buffers = {n: b.detach().to(precision) if b.is_floating_point() else b.detach() for n, b in model.named_buffers()}
    X = X.detach().to(precision)
    computed = []  # the dtypes the passes returned: a forward that casts (x.float()) computes in its own

    def forward(factor: float = 1.0, absolute: bool = False) -> torch.Tensor:
        params = dict(named)
        params.update({n: factor * params[n] for n in trained})
        if absolute:
            params = {n: p.abs() for n, p in params.items()}
        with torch.no_grad():
            out = functional_call(model, (params, {n: b.clone() for n, b in buffers.items()}),
                                  (X.abs() if absolute else X,))
        computed.append(out.dtype)
        return out.reshape(-1).to(torch.float64)

    f0, S0 = forward(), forward(absolute=True)
    dtype = max([precision] + computed, key=unit_roundoff)  # the least precise arithmetic seen
    u = unit_roundoff(dtype)

    def result(homogeneous, measured=math.nan, statistic=math.nan, reason="", **details):
        return JointHomogeneity(homogeneous, float(stated) if stated is not None else measured, measured, statistic,
                                reason, {"trained_parameters": trained, "arithmetic": dtype_name(dtype), **details})

    if not trained:
        return result(False, reason="no trained parameters (every parameter has requires_grad=False)")
    weights = [p for p in named.values() if p.ndim >= 2]
    fan_in = sum(math.prod(p.shape[1:]) + 2 for p in weights) + len(named)
    floor = torch.finfo(dtype).tiny / u  # Higham's bounds assume no underflow

    def tolerance_count(L: float) -> float:
        return gamma(int(math.ceil(max(1.0, L) * fan_in)), dtype)

    if not (torch.isfinite(f0).all() and torch.isfinite(S0).all()):
        return result(None, reason="non-finite output at theta (overflow or NaN)")
    if bool(((forward() - f0).abs() > 2 * tolerance_count(1.0) * S0).any()):
        return result(False, reason="the forward pass is random (two passes differ beyond roundoff): call "
                                    "model.eval() first")

    def best_degree(c: float, fc: torch.Tensor, Sc: torch.Tensor, L: float) -> tuple[float, float]:
        """log(f(c theta) / f(theta)) / log c on the sample with the smallest relative roundoff eps_c + eps_0, and
        that bound over |log c| (its error, first order); (nan, nan) where no sample resolves the ratio."""
        g = tolerance_count(L)
        eps = g * (Sc / fc.abs() + S0 / f0.abs())
        eps = torch.where((f0 * fc > 0) & (S0 >= floor) & torch.isfinite(fc), eps, torch.full_like(eps, math.inf))
        best = int(torch.argmin(eps))
        if not float(eps[best]) < 1:
            return math.nan, math.nan
        return float(torch.log(fc[best] / f0[best])) / math.log(c), float(eps[best]) / abs(math.log(c))

    # a first degree from c = 2 (its ratio is exact up to two passes' roundoff), to size the factors
    rough, _ = best_degree(2.0, forward(2.0), forward(2.0, absolute=True), 1.0 if stated is None else stated)
    if math.isnan(rough):
        return result(None, reason="f is within roundoff of 0 on every sample: nothing to test")
    rough = float(stated) if stated is not None else rough
    if not rough > 0:
        return result(False, measured=rough, reason=f"f does not grow with the trained parameters (degree {rough:.3g} "
                                                    "<= 0; Lyu & Li need L > 0)")
    reach = math.frexp(torch.finfo(dtype).max)[1] / 2 / max(rough, 1.0)  # 2^e > max: e = 128 for float32
    factors = [2.0**s for k in EXPONENTS if k <= reach for s in (k, -k)]
    scaled = {c: (forward(c), forward(c, absolute=True)) for c in factors}
    scaled = {c: v for c, v in scaled.items() if bool(torch.isfinite(v[0]).all() and torch.isfinite(v[1]).all())}
    if not scaled:
        return result(None, measured=rough, reason="every scaled pass overflows")
    # the degree from the widest factor: |dL| <= (eps_c + eps_0) / |log c|, eps the relative roundoff bounds
    widest = max(scaled, key=lambda c: abs(math.log(c)))
    measured, dL = best_degree(widest, *scaled[widest], rough)
    if math.isnan(measured):
        return result(None, measured=rough, reason=f"no sample resolves f(c theta) / f(theta) at the widest factor "
                                                   f"{widest:g}")
    L, dL = (float(stated), 0.0) if stated is not None else (measured, dL)
    if not L > 0:
        return result(False, measured=measured, reason=f"measured degree {L:.3g} <= 0")
    g = tolerance_count(L)
    worst, worst_at = 0.0, None
    for c, (fc, Sc) in scaled.items():
        target = c**L
        # samples in the normal range; one whose terms all vanish must stay 0 (f(c theta) = c^L 0)
        kept = ((S0 >= floor) & (target * S0 >= floor)) | (S0 == 0)
        residual = (fc - target * f0).abs()
        allowed = g * (Sc + target * S0) + abs(math.log(c)) * dL * target * f0.abs()
        ratio = torch.where(allowed > 0, residual / allowed, torch.where(residual > 0, math.inf, 0.0))[kept]
        if ratio.numel() and float(ratio.max()) > worst:
            worst, worst_at = float(ratio.max()), c
    held = worst <= 1
    reason = "" if held else (f"f(c theta) != c^{L:.6g} f(theta) at c = {worst_at:g} (residual {worst:.3g} x its "
                              f"tolerance; measured degree {measured:.6g})")
    return result(held, measured=measured, statistic=worst, reason=reason, factors=list(scaled), degree_roundoff=dL,
                  gamma_K=g, tolerance_basis=("|f(c theta) - c^L f(theta)| <= gamma_K (|f|(c|theta|) + c^L "
                                              "|f|(|theta|)) + |log c| dL c^L |f(theta)|, c exact powers of 2"))


def run_degree(model: torch.nn.Module, X: torch.Tensor, degree: float | None = None
               ) -> tuple[float, JointHomogeneity]:
    """(L, the joint measurement at L) for a run of ``model`` on ``X``. L: ``degree`` if given, else the declared
    one (:func:`declared_degree`), else the measured one; where none is known (homogeneity undecided or not met)
    1 per trained weight layer, the speed of the flow's clock only (the measurement then says what failed)."""
    declared = declared_degree(model, X)
    stated = degree if degree is not None else declared
    measured = measure_joint_homogeneity(model, X, degree=stated)
    if stated is None:
        stated = measured.measured if measured.homogeneous else float(
            max(1, sum(1 for p in model.parameters() if p.requires_grad and p.ndim >= 2)))
        measured = dataclasses.replace(measured, degree=float(stated))
    if degree is not None and declared is not None and float(degree) != declared:
        note = f"degree L={float(degree):g} given, but the trained layers' declared degrees sum to {declared:g}"
        measured = dataclasses.replace(measured, reason="; ".join(filter(None, [measured.reason, note])))
    return float(stated), measured


def declared_degree(model: torch.nn.Module, X: torch.Tensor) -> float | None:
    """The sum over the TRAINED weight layers of ``model.homogeneity_degrees``, or None when it is not set.

    ``homogeneity_degrees`` follows the homogeneity engine's convention (one degree per weight layer, trainable or
    frozen, in registration order, or a dict by name), so one tuple serves both; frozen layers do not count
    towards the degree in the trained parameters."""
    from ..core.modules import declared_degrees, read_parameters

    if getattr(model, "homogeneity_degrees", None) is None:
        return None
    found = read_parameters(model, X)
    layers = {**found.weights, **found.frozen_weights}
    names = [n for n, _ in model.named_parameters() if n in layers]
    total = sum(d for n, d in zip(names, declared_degrees(model, names)) if n in found.weights)
    return float(total) if total > 0 else None
