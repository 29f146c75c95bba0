"""Coupled SGD runs: the same SGD on S and on S' (one example replaced or removed), driven by the
same sampled indices from the same initialization, for stability arguments (Hardt, Recht & Singer,
ICML 2016, Sec. 2-3: the growth recursion compares exactly these two runs).

Works on any ``torch.nn.Module`` and any per-sample loss ``loss(model_output, y) -> (batch,)``: the
parameters are flattened into one vector w, and ``runs`` independent index sequences are simulated at
once (``torch.func.vmap`` over 2 x runs parameter vectors). Every step records ||w_t - w'_t||, the
loss gap f(w_t; z) - f(w'_t; z) on probe (held-out) points, and what the theorems' assumptions can
be checked against along the path: per-sample gradient norms (Lipschitz), and on steps that use the
same example in both runs, ||g - g'|| and <g - g', w - w'> (smoothness, convexity). At a few visited
points it estimates the largest per-example curvature ||hess_w f(w; z)||_2 by power iteration on
Hessian-vector products: secants only see the curvature along w - w', this sees every direction.

Removal: the run on S \\ {z_i} skips the steps whose sampled index is i (given the shared sequence,
its other indices are uniform over the n - 1 remaining points).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.func import functional_call, grad, grad_and_value, vmap

from ..core.devices import DEFAULT_DTYPE, dtype_name, dtype_of, resolve_device
from ..core.errors import expect
from ..core.inputs import check_record_shapes
from ..core.threads import threads_for

__all__ = ["CoupledRun", "coupled_sgd", "path_curvature", "step_sizes"]

CURVATURE_STEPS = 4  # visited steps (evenly spaced, first and last included) where the curvature is estimated
CURVATURE_RUNS = 2  # run pairs (both runs of each) per visited step
POWER_ITERATIONS = 20


@dataclasses.dataclass(frozen=True)
class CoupledRun:
    """What :func:`coupled_sgd` recorded (numpy arrays on the CPU; R runs, T steps, m probe points).

    ``distance[r, t]`` = ||w_t - w'_t|| (t = 0..T); ``loss_gap[r, t, j]`` = f(w_t; p_j) - f(w'_t; p_j)
    on probe point j; ``hits[r, t]``: the index sampled at step t+1 is the changed one; ``grad_norm[r, t]``
    = (||g_t||, ||g'_t||) for the sampled example; ``grad_diff``/``grad_inner`` = ||g - g'|| and
    <g - g', w - w'> (NaN on hit steps, where the two runs use different examples);
    ``param_norm[r, t]`` = (||w_t||, ||w'_t||); ``loss_seen`` = (min, max) of every loss value seen.
    ``inputs``/``targets``: the training set, then the replacement point (if any), then the probes.
    ``curvature``: the largest power-iteration estimate of ||hess_w f(w; z)||_2 over ``curvature_points``
    visited w and every training example z (:func:`path_curvature`; a lower bound on the path's curvature);
    ``curvature_error``: why it could not be estimated (NaN, 0 points), else empty. ``probe_grad_norm``: the
    largest per-sample gradient norm at the probe points (the z the verdict ranges over) over the same visited
    w (NaN where it could not be formed): a declared Lipschitz constant must hold there too.
    """

    n: int
    index: int
    removal: bool
    step_sizes: np.ndarray
    indices: np.ndarray
    sampled_uniformly: bool
    distance: np.ndarray
    loss_gap: np.ndarray
    hits: np.ndarray
    grad_norm: np.ndarray
    grad_diff: np.ndarray
    grad_inner: np.ndarray
    param_norm: np.ndarray
    loss_seen: tuple[float, float]
    inputs: torch.Tensor
    targets: torch.Tensor
    input_dim: int
    param_count: int
    weight_decay: float
    radius: float | None
    seed: int | None
    device: str
    dtype: str
    curvature: float = float("nan")
    curvature_points: int = 0
    curvature_error: str = ""
    probe_grad_norm: float = float("nan")  # max ||grad_w f(w; z)|| over the probe points z at the visited w

    def __post_init__(self):
        R, T = self.indices.shape if getattr(self.indices, "ndim", 0) == 2 else (0, 0)
        expect(R >= 1 and T >= 1, expected="CoupledRun.indices of shape (runs >= 1, steps >= 1)",
               received=f"shape {tuple(getattr(self.indices, 'shape', ()))}", fix="record at least one step of one run")
        check_record_shapes("CoupledRun", {
            "step_sizes": (self.step_sizes, ("T",)), "distance": (self.distance, ("R", "T1")),
            "loss_gap": (self.loss_gap, ("R", "T1", None)), "hits": (self.hits, ("R", "T")),
            "grad_norm": (self.grad_norm, ("R", "T", 2)), "grad_diff": (self.grad_diff, ("R", "T")),
            "grad_inner": (self.grad_inner, ("R", "T")), "param_norm": (self.param_norm, ("R", "T1", 2)),
            "inputs": (self.inputs, (None,) * max(getattr(self.inputs, "ndim", 1), 1)),
            "targets": (self.targets, (None,) * max(getattr(self.targets, "ndim", 1), 1))}, R=R, T=T, T1=T + 1)

    @property
    def runs(self) -> int:
        return int(self.indices.shape[0])

    @property
    def steps(self) -> int:
        return int(self.indices.shape[1])

    @property
    def finite(self) -> bool:
        """Every recorded number finite (the secant terms off the hit steps, where both runs use one example)."""
        recorded = (self.distance, self.loss_gap, self.grad_norm, self.param_norm, self.step_sizes,
                    self.grad_diff[~self.hits], self.grad_inner[~self.hits], self.inputs, self.targets)
        return bool(all(np.isfinite(np.asarray(a)).all() for a in recorded)) and not (
            self.curvature_points and np.isnan(self.curvature))


def step_sizes(step_size, steps: int) -> np.ndarray:
    """alpha_1..alpha_T from a constant, a sequence of length T, or a callable t -> alpha_t (t = 1..T)."""
    if callable(step_size):
        values = np.array([float(step_size(t)) for t in range(1, steps + 1)])
    elif np.ndim(step_size) == 0:
        values = np.full(steps, float(step_size))
    else:
        values = np.asarray(step_size, dtype=float).reshape(-1)
        expect(values.size == steps, expected=f"{steps} step sizes (one per step)", received=f"{values.size}",
               fix="pass a constant, a callable t -> alpha_t, or one value per step")
    expect(bool(np.all(np.isfinite(values)) and np.all(values > 0)), expected="positive finite step sizes",
           received=f"min {values.min():.3g}, max {values.max():.3g}", fix="use step sizes > 0")
    return values


def path_curvature(objective: Callable, points: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *,
                   iterations: int = POWER_ITERATIONS, seed: int = 0) -> torch.Tensor:
    """||H v_k|| per visited point (rows of ``points``) and example (rows of ``X``, ``y``), H = hess_w f(w; z),
    after ``iterations`` power-iteration steps v_{j+1} = H v_j / ||H v_j|| from a random unit v_0: each value is
    at most ||H||_2 (up to the rounding of the Hessian-vector product), so an estimate above beta refutes
    beta; one below it can miss a sharper direction or point (power iteration converges from below)."""
    P, N = points.shape[0], X.shape[0]
    W = points.repeat_interleave(N, 0)
    XX, YY = X.repeat(P, *[1] * (X.ndim - 1)), y.repeat(P, *[1] * (y.ndim - 1))

    def hvp(w, x, t, v):  # reverse over reverse: more losses have double backward than forward-mode AD
        slope = grad(lambda u: objective(u, x.unsqueeze(0), t.unsqueeze(0)).sum())
        return grad(lambda u: (slope(u) * v).sum())(w)

    v = torch.randn(W.shape, generator=torch.Generator().manual_seed(seed), dtype=W.dtype).to(W.device)
    v = v / v.norm(dim=1, keepdim=True)
    norm = torch.zeros(W.shape[0], dtype=W.dtype, device=W.device)
    for _ in range(iterations):
        Hv = vmap(hvp)(W, XX, YY, v)
        norm = Hv.norm(dim=1)
        v = torch.where(norm[:, None] > 0, Hv / norm.clamp_min(torch.finfo(W.dtype).tiny)[:, None], v)
    return norm.reshape(P, N)


def _flat_parameters(model: torch.nn.Module, device, dtype):
    expect(isinstance(model, torch.nn.Module), expected="a torch.nn.Module", received=type(model).__name__,
           fix="pass the model itself")
    named = [(name, p) for name, p in model.named_parameters()]
    expect(bool(named), expected="a module with parameters", received=f"{type(model).__name__} with none",
           fix="pass the network whose SGD run is compared")
    shapes = [(name, p.shape) for name, p in named]
    w0 = torch.cat([p.detach().reshape(-1) for _, p in named]).to(device=device, dtype=dtype)
    buffers = {name: b.detach().to(device=device, dtype=dtype if b.is_floating_point() else b.dtype)
               for name, b in model.named_buffers()}

    def unflatten(w: torch.Tensor) -> dict[str, torch.Tensor]:
        out, start = {}, 0
        for name, shape in shapes:
            size = int(np.prod(shape)) if len(shape) else 1
            out[name] = w[start:start + size].reshape(shape)
            start += size
        return out

    return w0, buffers, unflatten


def _as_data(X, y, name: str, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    expect(isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor), expected=f"{name} inputs and targets "
           "as torch tensors", received=f"{type(X).__name__}, {type(y).__name__}",
           fix="torch.as_tensor(...) both")
    expect(X.ndim >= 2 and y.shape[:1] == X.shape[:1], expected=f"{name} inputs of shape (n, ...) and targets "
           "of shape (n, ...)", received=f"{tuple(X.shape)} and {tuple(y.shape)}",
           fix="one target per input row; a single point needs a leading dimension of 1")
    y = y.to(device=device, dtype=dtype if y.is_floating_point() else y.dtype)
    return X.to(device=device, dtype=dtype), y


def coupled_sgd(model: torch.nn.Module, loss: Callable, X: torch.Tensor, y: torch.Tensor, *, index: int = 0,
                replacement: tuple[torch.Tensor, torch.Tensor] | None = None, steps: int | None = None,
                step_size: float | Sequence[float] | Callable[[int], float] = 0.1, runs: int = 1,
                indices=None, X_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                weight_decay: float = 0.0, radius: float | None = None, seed: int = 0,
                device=None, dtype=DEFAULT_DTYPE) -> CoupledRun:
    """Run SGD (one example per step) on S = (X, y) and on S' from the model's current parameters.

    S' is S with example ``index`` replaced by ``replacement = (x, y)`` or, with ``replacement=None``,
    removed. Both runs use the same sampled indices: ``indices`` (shape (T,) or (runs, T)) or ``runs``
    sequences drawn uniformly with replacement from ``seed``. Per-sample objective
    f(w; z) = loss(model_w(x), y) + weight_decay/2 ||w||^2; after each step w is projected onto the
    ball ||w|| <= ``radius`` when given (projected SGD). Probe points: ``X_test``/``y_test``, default
    the training set (plus the replacement point). The model is not changed: a float64 (``dtype``)
    copy of its parameters and buffers is used, on ``device`` (default: the model's).
    """
    torch_dtype = dtype_of(dtype)
    if device is None and isinstance(model, torch.nn.Module):
        device = next((p.device for p in model.parameters()), "cpu")
    device = resolve_device(device or "cpu")
    w0, buffers, unflatten = _flat_parameters(model, device, torch_dtype)
    X, y = _as_data(X, y, "training", device, torch_dtype)
    n = int(X.shape[0])
    expect(0 <= int(index) < n, expected=f"an index in [0, {n})", received=repr(index),
           fix="name the training example to replace or remove")
    index, removal = int(index), replacement is None
    X2, y2 = X.clone(), y.clone()
    if not removal:
        x_new, y_new = _as_data(*replacement, "replacement", device, torch_dtype)
        expect(x_new.shape[1:] == X.shape[1:] and x_new.shape[0] == 1, expected="one replacement point shaped "
               f"(1, {', '.join(map(str, X.shape[1:]))})", received=f"{tuple(x_new.shape)}",
               fix="pass (x[None], y[None]) for a single point")
        X2[index], y2[index] = x_new[0], y_new[0]
    if X_test is None:
        X_test, y_test = (X, y) if removal else (torch.cat([X, X2[index:index + 1]]),
                                                  torch.cat([y, y2[index:index + 1]]))
    X_test, y_test = _as_data(X_test, y_test, "probe", device, torch_dtype)

    if indices is None:
        steps = n if steps is None else int(steps)
        expect(steps >= 1 and int(runs) >= 1, expected="steps >= 1 and runs >= 1",
               received=f"steps={steps}, runs={runs}", fix="ask for at least one step and one run")
        sequence = torch.randint(n, (int(runs), steps), generator=torch.Generator().manual_seed(int(seed)))
    else:
        sequence = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        sequence = sequence.reshape(1, -1) if sequence.ndim == 1 else sequence
        expect(sequence.ndim == 2 and sequence.numel() > 0, expected="indices of shape (T,) or (runs, T)",
               received=f"shape {tuple(sequence.shape)}", fix="one sampled index per step (and per run)")
        expect(bool(((sequence >= 0) & (sequence < n)).all()), expected=f"indices in [0, {n})",
               received=f"range [{int(sequence.min())}, {int(sequence.max())}]", fix="index the training set")
        steps = int(sequence.shape[1])
    R, T = int(sequence.shape[0]), steps
    alphas = step_sizes(step_size, T)
    expect(radius is None or float(radius) > 0, expected="radius > 0 or None", received=repr(radius),
           fix="the projection ball needs a positive radius")
    expect(float(weight_decay) >= 0, expected="weight_decay >= 0", received=repr(weight_decay),
           fix="weight decay adds weight_decay/2 ||w||^2 to every per-sample loss")

    def objective(w, x, target):
        out = functional_call(model, (unflatten(w), buffers), (x,))
        values = loss(out, target)
        return values + 0.5 * weight_decay * (w * w).sum() if weight_decay else values

    with torch.no_grad():
        probe = objective(w0, X_test, y_test)
    expect(isinstance(probe, torch.Tensor) and probe.shape == (X_test.shape[0],),
           expected=f"loss(model_output, y) returning per-sample losses of shape ({X_test.shape[0]},)",
           received=f"shape {tuple(getattr(probe, 'shape', ()))}",
           fix="use reduction='none' (e.g. F.binary_cross_entropy_with_logits(out, y, reduction='none'))")
    with torch.no_grad():  # measured, not read off module types: a random forward (dropout) cannot be coupled
        again = objective(w0, X_test, y_test)
    expect(bool(torch.equal(probe.nan_to_num(), again.nan_to_num())),
           expected="a deterministic model (the two runs may differ only in the replaced example)",
           received="losses that differ between two identical evaluations (dropout or other training-mode "
                    "randomness in the forward)", fix="call model.eval() first")

    sample_grad = vmap(grad_and_value(lambda w, x, t: objective(w, x.unsqueeze(0), t.unsqueeze(0)).sum()))
    probe_losses = vmap(lambda w: objective(w, X_test, y_test))
    seq = sequence.to(device)
    W = w0.unsqueeze(0).repeat(2 * R, 1)
    keep = torch.ones(2 * R, 1, device=device, dtype=torch_dtype)
    m = int(X_test.shape[0])
    dist = torch.empty(R, T + 1, device=device, dtype=torch_dtype)
    gap = torch.empty(R, T + 1, m, device=device, dtype=torch_dtype)
    pnorm = torch.empty(R, T + 1, 2, device=device, dtype=torch_dtype)
    gnorm = torch.empty(R, T, 2, device=device, dtype=torch_dtype)
    gdiff = torch.empty(R, T, device=device, dtype=torch_dtype)
    ginner = torch.empty(R, T, device=device, dtype=torch_dtype)
    lo = torch.full((), float("inf"), device=device, dtype=torch_dtype)
    hi = -lo

    visited = set(np.linspace(0, T, min(T + 1, CURVATURE_STEPS)).astype(int).tolist())
    pick = torch.cat([torch.arange(min(R, CURVATURE_RUNS)), R + torch.arange(min(R, CURVATURE_RUNS))]).to(device)
    points = []

    def record(t):
        nonlocal lo, hi
        if t in visited:
            points.append(W[pick].detach().clone())
        values = probe_losses(W)
        gap[:, t] = values[:R] - values[R:]
        dist[:, t] = (W[:R] - W[R:]).norm(dim=1)
        pnorm[:, t] = W.norm(dim=1).reshape(2, R).T
        lo, hi = torch.minimum(lo, values.min()), torch.maximum(hi, values.max())

    work = 2 * R * int(w0.numel())  # parameters x samples of a step: 2R runs, one sample each
    with threads_for(work, device):
        with torch.no_grad():
            record(0)
        for t in range(T):
            idx = seq[:, t]
            hit = idx == index
            g, values = sample_grad(W, torch.cat([X[idx], X2[idx]]), torch.cat([y[idx], y2[idx]]))
            with torch.no_grad():
                lo, hi = torch.minimum(lo, values.min()), torch.maximum(hi, values.max())
                gnorm[:, t] = g.norm(dim=1).reshape(2, R).T
                dg, dw = g[:R] - g[R:], W[:R] - W[R:]
                gdiff[:, t] = torch.where(hit, torch.nan, dg.norm(dim=1))
                ginner[:, t] = torch.where(hit, torch.nan, (dg * dw).sum(1))
                if removal:
                    keep[R:, 0] = (~hit).to(torch_dtype)
                W = W - float(alphas[t]) * g * keep
                if radius is not None:
                    W = W * torch.clamp(float(radius) / W.norm(dim=1, keepdim=True), max=1.0)
                record(t + 1)

    cpu = lambda a: a.detach().cpu().numpy()  # noqa: E731
    extra = [] if removal else [X2[index:index + 1]]
    extra_y = [] if removal else [y2[index:index + 1]]
    try:
        with threads_for(work, device):
            curvature = path_curvature(objective, torch.cat(points), torch.cat([X] + extra),
                                       torch.cat([y] + extra_y), seed=seed)
        why = ""
    except (NotImplementedError, RuntimeError) as error:  # e.g. a loss without second derivatives
        curvature, why = torch.full((1,), float("nan")), f"{type(error).__name__}: {str(error)[:160]}"
        visited_points, points = points, []
    else:
        visited_points = points
    probe_norm = _probe_gradient_norm(objective, visited_points, X_test, y_test, device)
    return CoupledRun(
        n=n, index=index, removal=removal, step_sizes=alphas, indices=sequence.numpy(),
        sampled_uniformly=indices is None, distance=cpu(dist), loss_gap=cpu(gap), hits=sequence.numpy() == index,
        grad_norm=cpu(gnorm), grad_diff=cpu(gdiff), grad_inner=cpu(ginner), param_norm=cpu(pnorm),
        loss_seen=(float(lo), float(hi)),
        inputs=torch.cat([X] + extra + [X_test]).detach().cpu(),
        targets=torch.cat([y] + extra_y + [y_test]).detach().cpu(),
        input_dim=int(np.prod(X.shape[1:])), param_count=int(w0.numel()), weight_decay=float(weight_decay),
        radius=None if radius is None else float(radius), seed=int(seed) if indices is None else None,
        device=str(device), dtype=dtype_name(torch_dtype), curvature=float(curvature.max()),
        curvature_points=len(points) * int(pick.numel()), curvature_error=why, probe_grad_norm=probe_norm)


def _probe_gradient_norm(objective, points: list, X_test: torch.Tensor, y_test: torch.Tensor, device) -> float:
    """max ||grad_w f(w; z)|| over the probe points z and the visited w (a lower bound on the Lipschitz constant
    the verdict's sup over z needs); NaN when the gradients cannot be formed."""
    if not points:
        return float("nan")
    per_probe = vmap(grad(lambda w, x, t: objective(w, x.unsqueeze(0), t.unsqueeze(0)).sum()), in_dims=(None, 0, 0))
    largest = float("-inf")
    try:
        with threads_for(points[0].numel() * len(X_test), device):
            for w in torch.cat(points):
                largest = max(largest, float(per_probe(w, X_test, y_test).norm(dim=1).max()))
    except (NotImplementedError, RuntimeError):
        return float("nan")
    return largest
