"""Per-unit rescaling symmetries of a network and the degrees of its weight layers, measured on a batch.

A hidden unit j of a positively homogeneous net (ReLU, leaky ReLU: degree 1; max(z, 0)^p: degree p) can be
rescaled: its incoming slice times c, its outgoing slice times c^-p, leaves f unchanged. In general a symmetry
is a set of parameter slices m with exponents s_m (theta_m,j -> c^{s_m} theta_m,j for every unit j); then
Q_j = sum_m s_m ||theta_m,j||^2 is conserved by gradient flow and changed by a step theta - eta g by exactly
eta^2 sum_m s_m ||g_m,j||^2 (the symmetry makes sum_m s_m <theta_m,j, g_m,j> = 0).
Sources: Du, Hu & Lee, NeurIPS 2018, Thm 2.1-2.2 (per neuron); Kunin et al., ICLR 2021, Sec. 4 (rescale
symmetries and their conserved quantities).

Measured, not assumed from weight layouts: under a symmetry the slice Euler sums E_m[j] = sum over slice m,j of
theta * df/dtheta (for random combinations of the outputs) satisfy sum_m s_m E_m[j] = 0 for every unit j, so the
exponents span the null space of [E_m[j]]. They are read off that null space, rounded to small rationals and
kept only when a finite rescaling (random c_j in [1/2, 2] per unit) leaves f unchanged within its roundoff bound.
Slices are taken along any axis of any trained weight, whole or as channel-major blocks or strided groups of a
flattened axis, so (in, out) layouts, ConvTranspose, tied weights and gains are paired; units mixed across
(a max-pool over units) or a frozen neighbour leave no symmetry, and the layer is declared unpaired.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import torch
from torch.func import functional_call

from ..core.devices import unit_roundoff

MAX_COMBINATIONS = 8  # random combinations of the outputs whose gradients give the rows of [E_m[j]]: twice as many
# rows as candidate slices where that takes at most this many backward passes
MAX_DENOMINATOR = 12  # exponents and degrees are rationals p/q with q <= 12 (ReLU^p products)
LAYOUTS = ("whole", "blocks", "strided")  # axis of length H; H blocks of a longer axis; every H-th entry
_SEED = 20181203


@dataclasses.dataclass(frozen=True)
class UnitSlice:
    """Unit j's slice of weight ``layer`` along ``axis`` (``layout``: see :data:`LAYOUTS`), scaled by
    c^``exponent`` under the symmetry."""

    layer: str
    axis: int
    layout: str
    exponent: float


@dataclasses.dataclass(frozen=True)
class NeuronPair:
    """A measured per-unit symmetry over ``units`` units: ``members`` its slices; ``lower`` / ``upper`` the
    first slice scaled up / down (the incoming and outgoing weights of a plain layer pair)."""

    lower: str
    upper: str
    units: int
    members: tuple[UnitSlice, ...] = ()


def unit_rows(tensor: torch.Tensor, axis: int, layout: str, units: int) -> torch.Tensor:
    """``tensor`` as (units, -1): row j holds unit j's slice."""
    moved = tensor.movedim(axis, 0)
    if layout == "strided":
        return moved.reshape(moved.shape[0] // units, units, -1).transpose(0, 1).reshape(units, -1)
    return moved.reshape(units, -1)


def _unit_factor(c: torch.Tensor, tensor: torch.Tensor, axis: int, layout: str) -> torch.Tensor:
    """c (one per unit) laid along ``axis`` of ``tensor`` as its slices are, broadcastable to it."""
    repeat = tensor.shape[axis] // c.numel()
    along = c.repeat_interleave(repeat) if layout == "blocks" else c.repeat(repeat)
    shape = [1] * tensor.ndim
    shape[axis] = -1
    return along.reshape(shape)


def unit_sq(tensors: dict[str, torch.Tensor], pair: NeuronPair) -> torch.Tensor:
    """||T_m,j||^2 per member m and unit j, shape (members, units) (T: weights or gradients)."""
    rows = []
    for m in pair.members:
        t = tensors[m.layer]
        t = t.double() if t.dtype in (torch.float16, torch.bfloat16) else t
        rows.append((unit_rows(t, m.axis, m.layout, pair.units) ** 2).sum(1))
    return torch.stack(rows)


class _Probe:
    """f on a fixed batch with some parameters replaced; buffers copied and the random state forked and
    reseeded per call, so a random forward (dropout) draws the same mask each time and the user's run is kept."""

    def __init__(self, model, args, kwargs, dtype):
        self.model, self.dtype = model, dtype
        cast = (lambda t: t.detach().to(dtype) if t.is_floating_point() else t.detach())
        self.params = {n: cast(p) for n, p in model.named_parameters()}
        self.buffers = {n: cast(b) for n, b in model.named_buffers()}
        self.args = tuple(cast(a) if isinstance(a, torch.Tensor) else a for a in args)
        self.kwargs = {k: cast(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        self.device = next(iter(self.params.values())).device

    def __call__(self, replaced=None, *, absolute=False):
        params = {**self.params, **(replaced or {})}
        args = self.args
        if absolute:
            params = {n: p.abs() for n, p in params.items()}
            args = tuple(a.abs() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)
        state = {n: b.clone() for n, b in self.buffers.items()}
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_SEED)
            out = functional_call(self.model, (params, state), args, self.kwargs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the model returned {type(out).__name__}, not a tensor")
        return out.reshape(-1)


def _snap(value: float, tol: float) -> float | None:
    """``value`` as p/q (q <= MAX_DENOMINATOR) when within ``tol`` (relative) of one, 0 when below ``tol``."""
    if abs(value) <= tol:
        return 0.0
    near = Fraction(value).limit_denominator(MAX_DENOMINATOR)
    return float(near) if abs(value - float(near)) <= tol * max(1.0, abs(value)) else None


def _rref(basis: np.ndarray, tol: float) -> np.ndarray:
    """Reduced row echelon form of the rows of ``basis``: each row a pivot 1 with zeros at the other pivots."""
    a = basis.copy()
    row = 0
    for col in range(a.shape[1]):
        if row == len(a):
            break
        pivot = row + int(np.argmax(np.abs(a[row:, col])))
        if abs(a[pivot, col]) <= tol:
            continue
        a[[row, pivot]] = a[[pivot, row]]
        a[row] /= a[row, col]
        for other in range(len(a)):
            if other != row:
                a[other] -= a[other, col] * a[row]
        row += 1
    return a[:row]


class UnitSymmetries:
    """Measure per-unit symmetries and layer degrees of ``model`` on the batch ``args`` (``kwargs``) among the
    trained weights ``weights`` (name -> parameter, in the order the forward uses them)."""

    def __init__(self, model, weights: dict, args: tuple, kwargs: dict | None = None):
        first = next(iter(weights.values()))
        dtype = torch.float64 if first.dtype in (torch.float16, torch.bfloat16) else first.dtype
        self.weights = weights
        self.probe = _Probe(model, args, kwargs or {}, dtype)
        self.u = unit_roundoff(dtype)
        self.f = self.probe()
        # forward roundoff: K = the dot lengths and activations along a path (Higham, gamma_K)
        self.k_forward = sum((w[0].numel() if w.ndim else 1) + 2 for w in weights.values())

    def degrees(self) -> dict[str, float | None]:
        """Degree d of f in each weight, from f(2W) = 2^d f(W) on samples far above roundoff, as p/q; None when
        the samples disagree (not homogeneous in it) or none is informative."""
        found = {}
        # samples within a factor 10 of the largest |f|: their ratio errs by about gamma_K A / |f|; distinct p/q
        # (q <= 12) differ by >= 1/132, so a spread and a rounding below 1e-3 name one degree
        informative = self.f.abs() >= 0.1 * self.f.abs().max()
        tol = min(1e-3, 1e6 * self.u)
        for name in self.weights:
            ratio = self.probe({name: 2 * self.probe.params[name]}) / self.f
            keep = informative & (ratio > 0) & torch.isfinite(ratio)
            if not bool(keep.any()):
                found[name] = None
                continue
            values = torch.log2(ratio[keep])
            spread = float(values.max() - values.min())
            found[name] = _snap(float(values.median()), tol) if spread <= tol else None
        return found

    def pairs(self) -> tuple[list[NeuronPair], list[tuple]]:
        """The verified symmetries, and (None, layer, why) for each weight in none of them ("not measured" where
        f or the weight's every slice Euler sum is 0 on the batch: no unit of it is seen)."""
        if not bool((self.f != 0).any()):
            return [], [(None, name, "per-unit symmetries not measured (f = 0 on every sample of the batch)")
                        for name in self.weights]
        sizes = sorted({n for w in self.weights.values() for n in w.shape if n >= 2}, reverse=True)
        candidates = {units: [(name, axis, layout) for name, w in self.weights.items() for axis in range(w.ndim)
                              for layout in LAYOUTS if w.shape[axis] % units == 0
                              and (layout == "whole") == (w.shape[axis] == units)] for units in sizes}
        products = self._slice_products(max(math.ceil(2 * len(g) / units) for units, g in candidates.items())
                                        if candidates else 1)
        covered, found, failed = set(), [], []
        for units in sizes:
            groups = [g for g in candidates[units] if g[:2] not in covered]
            for pair in self._symmetries(units, groups, products, failed):
                found.append(pair)
                covered |= {(m.layer, m.axis) for m in pair.members}
        paired = {m.layer for pair in found for m in pair.members}
        silent = {name for name in self.weights if not any(bool(p[name].any()) for p in products)}
        why = ("no rescaling of its units along any axis is undone by other trained slices (units mixed across, "
               "as by pooling over units; a frozen neighbour; or a unit that is not positively homogeneous)")
        if failed:
            why += f"; candidate symmetries that changed f under a finite rescaling: {failed[:3]}"
        return found, [(None, name, "per-unit symmetries not measured (every unit of it is inactive on the batch)"
                        if name in silent else why) for name in self.weights if name not in paired]

    def _slice_products(self, count: int) -> list[dict[str, torch.Tensor]]:
        """theta * d(w . f)/d theta for ``count`` (at most MAX_COMBINATIONS) random combinations w of the outputs."""
        generator = torch.Generator().manual_seed(_SEED)
        out = []
        for _ in range(min(max(count, 2), MAX_COMBINATIONS)):
            w = torch.randn(self.f.shape, generator=generator, dtype=torch.float64).to(self.f)
            leaves = {n: self.probe.params[n].clone().requires_grad_(True) for n in self.weights}
            with torch.enable_grad():
                grads = torch.autograd.grad((w * self.probe(leaves)).sum(), list(leaves.values()), allow_unused=True)
            out.append({n: leaves[n].detach() * (torch.zeros_like(leaves[n]) if g is None else g)
                        for n, g in zip(leaves, grads)})
        return out

    def _symmetries(self, units: int, groups: list, products: list, failed: list) -> list[NeuronPair]:
        if len(groups) < 2:
            return []
        columns = np.stack([torch.cat([unit_rows(p[name], axis, layout, units).sum(1) for p in products])
                            .double().cpu().numpy() for name, axis, layout in groups], axis=1)
        norms = np.linalg.norm(columns, axis=0)
        live = norms > 0
        if live.sum() < 2:
            return []
        groups = [g for g, keep in zip(groups, live) if keep]
        columns, norms = columns[:, live] / norms[live], norms[live]
        if len(columns) <= columns.shape[1]:  # fewer equations than candidate slices: no null space can be read
            return []
        _, singular, vt = np.linalg.svd(columns, full_matrices=True)
        tol = math.sqrt(self.u)
        rank = int((singular > tol * singular[0]).sum())
        null = vt[rank:]
        if not len(null):
            return []
        pairs = []
        for vector in _rref(null, tol):
            exponents = vector / norms
            exponents = exponents / exponents[np.flatnonzero(np.abs(vector) > tol)[0]]
            snapped = [_snap(float(e), 1e3 * tol) for e in exponents]
            if any(s is None for s in snapped):
                continue
            members = tuple(UnitSlice(name, axis, layout, s) for (name, axis, layout), s in zip(groups, snapped) if s)
            if len(members) < 2:
                continue
            pair = NeuronPair(lower=next(m.layer for m in members if m.exponent > 0),
                              upper=next((m.layer for m in members if m.exponent < 0), members[-1].layer),
                              units=units, members=members)
            if self._verified(pair):
                pairs.append(pair)
            else:
                failed.append(" ".join(f"{m.layer}[axis {m.axis}, {m.layout}]^{m.exponent:g}" for m in members))
        return pairs

    def _verified(self, pair: NeuronPair) -> bool:
        """f(theta with unit j's slices times c_j^{s_m}) = f(theta) within 2 gamma_K (A + A'), A the network on
        |x| with |theta| (the absolute terms its rounding is bounded by), for random c_j in [1/2, 2]."""
        generator = torch.Generator().manual_seed(_SEED + pair.units)
        c = torch.exp((torch.rand(pair.units, generator=generator, dtype=torch.float64) * 2 - 1) * math.log(2))
        scaled = {}
        for m in pair.members:
            base = scaled.get(m.layer, self.probe.params[m.layer])
            factor = _unit_factor(c.to(base) ** m.exponent, base, m.axis, m.layout)
            scaled[m.layer] = base * factor
        moved = self.probe(scaled)
        bound_k = self.k_forward * max(1.0, max(abs(m.exponent) for m in pair.members))
        gamma = bound_k * self.u / (1 - bound_k * self.u) if bound_k * self.u < 1 else math.inf
        allowed = 2 * gamma * (self.probe(absolute=True) + self.probe(scaled, absolute=True))
        difference = (moved - self.f).abs()
        return bool(torch.isfinite(difference).all() and torch.isfinite(allowed).all()
                    and (difference <= allowed).all() and (self.f != 0).any())
