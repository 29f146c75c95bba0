"""Per-output Euler sums <W_k, df_n/dW_k> and their absolute scales, in O(batch x parameters).

For a layer y = W a (Linear, or a convolution, applied at any number of positions) and one output
entry f_n, df_n/dW = sum_t delta_t a_t^T with delta = df_n/dy, so <W, df_n/dW> = <delta, W a> and the
sum of the absolute terms is <|delta|, |W| |a|> (>= sum_ij |W_ij df_n/dW_ij|, equal with one position).
Forward hooks keep each weight layer's input; a hook on its output receives delta. One backward pass
per output column gives delta for every sample at once when samples do not interact (Euler's theorem
for homogeneous functions: Lyu & Li, ICLR 2020, Thm B.2).

Where the structure forbids this (a weight outside Linear/Conv, samples that interact as in batch
norm in training mode, a weight used outside its module, batch not in dimension 0), the sums come from
one backward pass per output entry (O(outputs x batch x parameters) time, O(parameters) memory), and
the reason is returned.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.func import functional_call

from ..core.devices import gamma

HOOKED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclasses.dataclass
class EulerSums:
    """Per layer, one value per output entry (samples x output columns, flattened row-major)."""

    output: torch.Tensor  # f, flattened
    euler: dict[str, torch.Tensor]  # <W_k, df/dW_k>
    absolute: dict[str, torch.Tensor]  # sum of |terms| of that sum
    reduction: dict[str, int]  # terms summed per output entry (for the roundoff count)
    method: str  # "hooks" or "per-output backward passes (fallback: ...)"


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


def samples_interact(model: nn.Module, state: dict, x: torch.Tensor) -> bool:
    """Whether some output of sample 0 depends on another sample's input: the backward pass of sample 0's
    outputs leaves exact zeros on the other samples unless they interact (batch statistics)."""
    if x.shape[0] < 2:
        return False
    x = x.detach().clone().requires_grad_(True)
    out = functional_call(model, state(), (x,))
    (grad,) = torch.autograd.grad(out.reshape(x.shape[0], -1)[0].sum(), x, allow_unused=True)
    return grad is not None and bool((grad[1:] != 0).any())


def _hooked_sums(model, names, weights, state, x) -> tuple[EulerSums | None, str]:
    """The one-backward-per-column path; ``(None, reason)`` when the structure forbids it."""
    owners = {n: _owner(model, n) for n in names}
    if None in owners.values():
        bad = [n for n, m in owners.items() if m is None]
        return None, f"{bad} not the weight of a Linear/Conv{{1,2,3}}d module"
    batch = x.shape[0]
    calls: dict[str, list[dict]] = {n: [] for n in names}

    def hook_for(name):
        def hook(module, inputs, output):
            a, w = inputs[0].detach(), module.weight.detach()
            call = {"lin": _linear_part(module, a, w), "abs": _linear_part(module, a.abs(), w.abs()),
                    "grad": None, "batch_first": a.shape[0] == batch and output.shape[0] == batch}
            if output.requires_grad:
                output.register_hook(lambda g: call.__setitem__("grad", g.detach()))
            calls[name].append(call)
        return hook

    handles = [owners[n].register_forward_hook(hook_for(n)) for n in names]
    try:
        out = functional_call(model, state(), (x,))
    finally:
        for handle in handles:
            handle.remove()
    if not all(c["batch_first"] for cs in calls.values() for c in cs):
        return None, "a weight layer's input or output does not keep the batch in dimension 0"
    f = out.reshape(batch, -1)
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
                    euler[name][:, j] += (call["grad"] * call["lin"]).reshape(batch, -1).sum(1)
                    absolute[name][:, j] += (call["grad"].abs() * call["abs"]).reshape(batch, -1).sum(1)
                    call["grad"] = None
            # the hooks' per-sample sums and <W, dF/dW> use the same computed delta and a, summed in two
            # orders: each within gamma_K sum|terms| (K = entries + batch x terms per sample), unless the
            # weight also enters f outside its module's forward
            total = 0.0 if g is None else float((weights[name].detach() * g).sum())
            k = weights[name].numel() + batch * sum(c["lin"][0].numel() for c in calls[name])
            if abs(total - float(euler[name][:, j].sum())) > 2 * gamma(k, f.dtype) * float(absolute[name][:, j].sum()):
                return None, f"{name} is used outside its module's forward (its gradient is not the hooks' sum)"
    reduction = {n: max(c["lin"][0].numel() for c in calls[n]) * max(1, len(calls[n])) if calls[n] else 0
                 for n in names}
    return EulerSums(f.detach().reshape(-1), {n: e.reshape(-1) for n, e in euler.items()},
                     {n: a.reshape(-1) for n, a in absolute.items()}, reduction, "hooks"), ""


def _per_output_sums(model, names, weights, state, x, reason) -> EulerSums:
    """One backward pass per output entry: exact for any module, samples may interact."""
    f = functional_call(model, state(), (x,)).reshape(-1)
    euler = {n: torch.zeros_like(f) for n in names}
    absolute = {n: torch.zeros_like(f) for n in names}
    for i in range(f.numel()):
        grads = torch.autograd.grad(f[i], [weights[n] for n in names], retain_graph=True, allow_unused=True)
        for name, g in zip(names, grads):
            if g is not None:
                products = (weights[name] * g).detach()
                euler[name][i], absolute[name][i] = products.sum(), products.abs().sum()
    return EulerSums(f.detach(), euler, absolute, {n: weights[n].numel() for n in names},
                     f"per-output backward passes (fallback: {reason})")


def euler_sums(model: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
               names: list[str], x: torch.Tensor) -> EulerSums:
    """Euler sums of ``model`` (run with ``params``; ``buffers`` copied per pass) in each layer of ``names``."""
    weights = {n: params[n].detach().clone().requires_grad_(True) for n in names}

    def state():
        return ({**params, **weights}, {n: b.clone() for n, b in buffers.items()})

    with torch.enable_grad():
        if samples_interact(model, state, x):
            return _per_output_sums(model, names, weights, state, x, "samples interact (batch statistics)")
        sums, reason = _hooked_sums(model, names, weights, state, x)
        return sums if sums is not None else _per_output_sums(model, names, weights, state, x, reason)
