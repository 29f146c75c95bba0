"""Per-output Euler sums <W_k, df_n/dW_k> and their absolute scales, in O(batch x parameters).

For a layer y = W a (Linear, or a convolution, applied at any number of positions) and one output
entry f_n, df_n/dW = sum_t delta_t a_t^T with delta = df_n/dy, so <W, df_n/dW> = <delta, W a> and the
sum of the absolute terms is <|delta|, |W| |a|> (>= sum_ij |W_ij df_n/dW_ij|, equal with one position).
Forward hooks keep each weight layer's input; a hook on its output receives delta. One backward pass
per output column gives delta for every sample at once when samples do not interact (Euler's theorem
for homogeneous functions: Lyu & Li, ICLR 2020, Thm B.2). The batch axis of each layer call and of the
output is measured (a run with one more sample), never read off shapes, so a sequence-first layout or a
(classes, batch) output is summed per sample.

Where the structure forbids this (a weight outside Linear/Conv, samples that interact as in batch
norm in training mode, a weight used outside its module, no axis that follows the batch), the sums come from
one backward pass per output entry (O(outputs x batch x parameters) time, O(parameters) memory), and
the reason is returned.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.stateless import _reparametrize_module

from ..core.devices import gamma
from ..core.evaluation import output_tensor

HOOKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
UNTRACKED = "none: autograd sees no path from any weight to f"


@dataclasses.dataclass
class EulerSums:
    """Per layer, one value per output entry (samples x output columns, flattened row-major)."""

    output: torch.Tensor  # f, flattened
    euler: dict[str, torch.Tensor]  # <W_k, df/dW_k>
    absolute: dict[str, torch.Tensor]  # sum of |terms| of that sum
    reduction: dict[str, int]  # terms summed per output entry (for the roundoff count)
    method: str  # "hooks" or "per-output backward passes (fallback: ...)"
    output_axis: int | None = 0  # the output's batch axis (measured); samples lead the flattened values


def _linear_part(module: nn.Module, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """W a without the bias: the module's map with weight ``w`` applied to ``a``."""
    if isinstance(module, nn.Linear):
        return torch.nn.functional.linear(a, w)
    return module._conv_forward(a, w, None)


def _owner(model: nn.Module, name: str) -> nn.Module | None:
    """The module holding parameter ``name`` as its ``weight`` if it is one of :data:`HOOKED`."""
    path, _, attr = name.rpartition(".")
    module = model.get_submodule(path) if path else model
    return module if (attr == "weight" and type(module) in HOOKED) else None


def _run_hooked(model: nn.Module, hooks: list, state, x) -> torch.Tensor:
    """The model's output on ``x`` with forward hooks ``(module, hook)`` registered for this pass only."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        return output_tensor(functional_call(model, state(), (x,)))
    finally:
        for handle in handles:
            handle.remove()


def _axis(small: tuple, large: tuple, batch: int) -> int | None:
    """The one axis whose length is ``batch`` in ``small`` and ``batch + 1`` in ``large`` (None if not one)."""
    if len(small) != len(large):
        return None
    changed = [i for i, (p, q) in enumerate(zip(small, large)) if p != q]
    return changed[0] if len(changed) == 1 and small[changed[0]] == batch and large[changed[0]] == batch + 1 else None


def batch_axes(model: nn.Module, modules: dict[str, nn.Module], state, x) -> tuple[dict | None, int | None, str]:
    """The batch axis of each call of each module in ``modules`` and of the output, measured: the model runs
    on ``x`` and on ``x`` with one more sample, and the batch axis is the one axis whose length follows
    (a sequence-first layout whose length equals the batch is told apart). ``(None, axis, reason)`` for the
    calls, or ``axis`` None, where no single axis follows the batch."""
    batch = x.shape[0]
    runs = []
    for inputs in (x, torch.cat([x, x[:1]])):
        shapes = {n: [] for n in modules}
        hooks = [(m, lambda mod, a, out, n=n: shapes[n].append((tuple(a[0].shape), tuple(out.shape))))
                 for n, m in modules.items()]
        try:
            with torch.no_grad():
                out = _run_hooked(model, hooks, state, inputs)
        except Exception as error:  # noqa: BLE001 - any refusal of a larger batch (a fixed reshape, an assert)
            return None, None, f"the model does not run on one more sample ({str(error).splitlines()[0][:120]})"
        runs.append((shapes, tuple(out.shape)))
    (small, out_small), (large, out_large) = runs
    out_axis = _axis(out_small, out_large, batch)
    if out_axis is None:
        return None, None, (f"no single output axis follows the batch (output {out_small} for batch {batch}, "
                            f"{out_large} for {batch + 1})")
    axes = {}
    for name in modules:
        if len(small[name]) != len(large[name]):
            return None, out_axis, f"{name} is called a different number of times for another batch size"
        axes[name] = []
        for (a, y), (a2, y2) in zip(small[name], large[name]):
            axis = _axis(a, a2, batch)
            if axis is None or axis != _axis(y, y2, batch):
                return None, out_axis, f"no single axis of {name}'s input and output follows the batch ({a} -> {y})"
            axes[name].append(axis)
    return axes, out_axis, ""


def per_sample(t: torch.Tensor, axis: int, batch: int) -> torch.Tensor:
    """``t`` as (batch, rest): the batch axis first."""
    return t.movedim(axis, 0).reshape(batch, -1)


def samples_interact(model: nn.Module, owners: dict, axes: dict, out_axis: int, state, x) -> bool:
    """Whether some output of sample 0 depends on another sample's rows of a weight layer's output (batch
    statistics), measured: a zero added to each layer output, the backward pass of sample 0's outputs
    leaves exact zeros on the other samples' rows unless they interact. (Mixing upstream of every weight
    layer leaves each sample's identity intact.)"""
    batch = x.shape[0]
    if batch < 2:
        return False
    zeros, calls = [], {n: 0 for n in owners}

    def hook_for(name):
        def hook(module, inputs, output):
            zero = torch.zeros_like(output, requires_grad=True)
            zeros.append((zero, axes[name][calls[name]]))
            calls[name] += 1
            return output + zero
        return hook

    out = _run_hooked(model, [(owners[n], hook_for(n)) for n in owners], state, x)
    grads = torch.autograd.grad(per_sample(out, out_axis, batch)[0].sum(), [z for z, _ in zeros], allow_unused=True)
    return any(g is not None and bool((per_sample(g, axis, batch)[1:] != 0).any())
               for g, (_, axis) in zip(grads, zeros))


def _hooked_sums(model, names, weights, state, x, arithmetic) -> tuple[EulerSums | None, str, int | None]:
    """The one-backward-per-column path; ``(None, reason, output axis)`` when the structure forbids it.
    ``arithmetic``: the dtype the forward computes in (bfloat16 under autocast), whose roundoff bounds the
    two orders of summation."""
    owners = {n: _owner(model, n) for n in names}
    axes, out_axis, why = batch_axes(model, {n: m for n, m in owners.items() if m is not None}, state, x)
    if None in owners.values():
        bad = [n for n, m in owners.items() if m is None]
        return None, f"{bad} not the weight of a Linear/Conv{{1,2,3}}d module", out_axis
    if axes is None:
        return None, why, out_axis
    if samples_interact(model, owners, axes, out_axis, state, x):
        return None, "samples interact (an output of one sample depends on another's activations)", out_axis
    batch = x.shape[0]
    calls: dict[str, list[dict]] = {n: [] for n in names}

    def hook_for(name):
        def hook(module, inputs, output):
            a, w = inputs[0].detach(), module.weight.detach()
            call = {"lin": _linear_part(module, a, w), "abs": _linear_part(module, a.abs(), w.abs()),
                    "grad": None, "axis": axes[name][len(calls[name])]}
            if output.requires_grad:
                output.register_hook(lambda g: call.__setitem__("grad", g.detach()))
            calls[name].append(call)
        return hook

    f = per_sample(_run_hooked(model, [(owners[n], hook_for(n)) for n in names], state, x), out_axis, batch)
    columns = f.shape[1]
    euler = {n: torch.zeros(batch, columns, dtype=f.dtype, device=f.device) for n in names}
    absolute = {n: torch.zeros_like(euler[n]) for n in names}
    for j in range(columns):
        seed = torch.zeros_like(f)
        seed[:, j] = 1
        grads = torch.autograd.grad(f, [weights[n] for n in names], grad_outputs=seed, retain_graph=True,
                                    allow_unused=True)
        for name, g in zip(names, grads):
            for call in calls[name]:
                if call["grad"] is not None:
                    euler[name][:, j] += per_sample(call["grad"] * call["lin"], call["axis"], batch).sum(1)
                    absolute[name][:, j] += per_sample(call["grad"].abs() * call["abs"], call["axis"], batch).sum(1)
                    call["grad"] = None
            # the hooks' per-sample sums and <W, dF/dW> use the same computed delta and a, summed in two
            # orders: each within gamma_K sum|terms| (K = entries + batch x terms per sample, in the arithmetic
            # the forward uses), unless the weight also enters f outside its module's forward
            total = 0.0 if g is None else float((weights[name].detach() * g).sum())
            k = weights[name].numel() + sum(c["lin"].numel() for c in calls[name])
            bound = 2 * gamma(k, arithmetic) * float(absolute[name][:, j].sum())
            if abs(total - float(euler[name][:, j].sum())) > bound:
                return None, (f"{name} is used outside its module's forward (its <W, dF/dW> differs from the "
                              f"hooks' sum beyond the {arithmetic} roundoff bound {bound:.2e} of the two "
                              "summation orders)"), out_axis
    reduction = {n: max(c["lin"].numel() // batch for c in calls[n]) * max(1, len(calls[n])) if calls[n] else 0
                 for n in names}
    return EulerSums(f.detach().reshape(-1), {n: e.reshape(-1) for n, e in euler.items()},
                     {n: a.reshape(-1) for n, a in absolute.items()}, reduction, "hooks", out_axis), "", out_axis


def _gradients(output: torch.Tensor, leaves: list[torch.Tensor], accumulate: bool) -> list:
    """d output / d leaves: by ``torch.autograd.grad``, or (``accumulate``) by ``.backward()`` into the leaves'
    ``.grad``, which reentrant checkpointing requires (it refuses ``autograd.grad``)."""
    if not accumulate:
        return list(torch.autograd.grad(output, leaves, retain_graph=True, allow_unused=True))
    for leaf in leaves:
        leaf.grad = None
    output.backward(retain_graph=True)
    return [leaf.grad for leaf in leaves]


def _per_output_sums(model, names, weights, state, x, reason, out_axis, accumulate=False) -> EulerSums:
    """One backward pass per output entry: exact for any module, samples may interact."""
    out = output_tensor(functional_call(model, state(), (x,)))
    f = (out if out_axis is None else per_sample(out, out_axis, x.shape[0])).reshape(-1)
    euler = {n: torch.zeros_like(f) for n in names}
    absolute = {n: torch.zeros_like(f) for n in names}
    for i in range(f.numel()):
        grads = _gradients(f[i], [weights[n] for n in names], accumulate)
        for name, g in zip(names, grads):
            if g is not None:
                products = (weights[name] * g).detach()
                euler[name][i], absolute[name][i] = products.sum(), products.abs().sum()
    return EulerSums(f.detach(), euler, absolute, {n: weights[n].numel() for n in names},
                     f"per-output backward passes (fallback: {reason})", out_axis)


def euler_sums(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
               names: list[str], x: torch.Tensor, arithmetic: torch.dtype | None = None) -> EulerSums:
    """Euler sums of ``model`` (run with ``params``; ``buffers`` copied per pass) in each layer of ``names``.
    The substituted tensors stay in the module through the backward passes too, so a checkpointed block
    recomputed there runs on them; where ``autograd.grad`` is refused (reentrant checkpointing), the
    per-output passes accumulate by ``.backward()``. ``arithmetic``: the dtype the forward computes in (default
    the parameters')."""
    weights = {n: params[n].detach().clone().requires_grad_(True) for n in names}

    def state():
        return ({**params, **weights}, {n: b.clone() for n, b in buffers.items()})

    with torch.enable_grad(), _reparametrize_module(model, {**params, **weights, **buffers}, tie_weights=True):
        out = output_tensor(functional_call(model, state(), (x,)))
        if not out.requires_grad:  # the whole forward is hidden from autograd (torch.no_grad around it)
            zeros = {n: torch.zeros(out.numel(), dtype=out.dtype, device=out.device) for n in names}
            return EulerSums(out.detach().reshape(-1), zeros, dict(zeros), {n: 0 for n in names}, UNTRACKED, None)
        try:
            sums, reason, out_axis = _hooked_sums(model, names, weights, state, x,
                                                  arithmetic or weights[names[0]].dtype)
        except RuntimeError as error:  # autograd.grad refused: the accumulating passes are exact
            return _per_output_sums(model, names, weights, state, x, f"autograd.grad refused "
                                    f"({str(error).splitlines()[0][:100]})", None, accumulate=True)
        return sums if sums is not None else _per_output_sums(model, names, weights, state, x, reason, out_axis)
