"""The roundoff scale of a computed weight gradient, from the backward passes a training loop ran.

For L = sum_n l(f(x_n)) the computed gradient g_k of layer W_k errs in <W_k, g_k> by at most gamma_K S with
S = sum_n sum_o |dL/df_o(x_n)| A_o(x_n) (K: the operations along a path, the batch sum included). A is the
network run on |x| with every parameter replaced by its absolute value and every activation module replaced by
its absolute derivative at the real pre-activation (ReLU: the real on/off pattern; LeakyReLU: 1 or the slope;
max(z, 0)^p: p max(z, 0)^(p-1)): A bounds, layer by layer, |W_k| |h_{k-1}| propagated by the absolute
Jacobian above layer k, which is what every product of the forward and backward passes is rounded against.
Without the real pattern (all units on) the bound is valid but loose: ReLU^3 networks of depth 3 gave S 10^5
times <W, g>, hiding a 1% L2 penalty in float32. Activations applied functionally (torch.relu in a forward)
are not seen and pass |h| unchanged, which still bounds ReLU and LeakyReLU.
The arithmetic a pass ran in is measured too: the lowest precision among the floating outputs of the model's
modules and the gradient at its output, and autocast's dtype where autocast was on for float32 parameters in
that forward (a bfloat16 forward on float32 weights rounds its products at u = 2^-8, not 2^-24), and TF32's
(u = 2^-11) where CUDA may use it for float32 products.
Sources: Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., Sec. 3.1 and 3.5 (gamma_n bounds of
sums and products).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.devices import unit_roundoff
from ..core.modules import PowerReLU
from .homogeneity import _forward_unit_roundoff

ACTIVATION_MODULES = (nn.ReLU, nn.LeakyReLU, PowerReLU)


def activation_gain(module: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """|sigma'(z)| of an activation module of :data:`ACTIVATION_MODULES` at its real input z."""
    if isinstance(module, nn.ReLU):
        return (z > 0).to(z.dtype)
    if isinstance(module, nn.LeakyReLU):
        return torch.where(z > 0, 1.0, abs(module.negative_slope)).to(z.dtype)
    return module.p * torch.relu(z) ** (module.p - 1)


class GradientScale:
    """Hooks on ``model`` that keep, for every backward pass through its output, dL/d output, the inputs and the
    activation modules' real inputs; :meth:`take` returns (S, samples) for the passes since the last call."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._activations = [m for m in model.modules() if isinstance(m, ACTIVATION_MODULES)]
        self._seen: dict[nn.Module, list[torch.Tensor]] = {}  # real activation inputs of the forward in progress
        self._passes: list[tuple[torch.Tensor, tuple, dict, float]] = []
        self._roundoff = 0.0  # the largest unit roundoff of the arithmetic seen in the forward in progress
        params = list(model.parameters())
        self._device = params[0].device.type if params else "cpu"
        self._float32 = any(p.dtype == torch.float32 for p in params)
        self._hooks = [m.register_forward_hook(self._note_arithmetic) for m in model.modules() if m is not model]
        self._hooks += [model.register_forward_pre_hook(self._note_autocast), model.register_forward_hook(self._note_output)]
        self._hooks += [m.register_forward_pre_hook(self._note_activation) for m in self._activations]

    def _note_activation(self, module, args):
        if torch.is_grad_enabled() and args and isinstance(args[0], torch.Tensor):
            self._seen.setdefault(module, []).append(args[0].detach().clone())  # before an in-place activation

    def _note_autocast(self, module, args):
        """At the start of a forward: autocast's dtype where it is on and lowers these float32 parameters, and TF32
        where CUDA may use it for their products."""
        self._roundoff = 0.0
        if self._float32 and torch.is_autocast_enabled(self._device):
            self._roundoff = unit_roundoff(torch.get_autocast_dtype(self._device))
        if self._float32:
            self._roundoff = max(self._roundoff, _forward_unit_roundoff(torch.float32, torch.device(self._device))[0])

    def _note_arithmetic(self, module, args, output):
        if torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.is_floating_point():
            self._roundoff = max(self._roundoff, unit_roundoff(output.dtype))

    def _note_output(self, module, args, output):
        seen, self._seen = self._seen, {}
        if not (torch.is_grad_enabled() and isinstance(output, torch.Tensor) and output.requires_grad):
            return
        inputs = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
        roundoff = max(self._roundoff, unit_roundoff(output.dtype))
        output.register_hook(lambda grad: self._passes.append(
            (grad.detach(), inputs, seen, max(roundoff, unit_roundoff(grad.dtype)))))

    def take(self) -> tuple[float, int, float]:
        """(S, samples summed, u) over the backward passes since the last call; u is the largest unit roundoff of
        the arithmetic they ran in (NaN without a pass); S is NaN when it cannot be formed (no backward pass through
        the model's output, a forward that does not run on float64 absolute values, or activation calls that
        differ from the real forward's). The user's random state and buffers are kept."""
        passes, self._passes = self._passes, []
        samples = sum(int(grad.shape[0]) if grad.ndim else 1 for grad, _, _, _ in passes)
        if not passes:
            return math.nan, 0, math.nan
        roundoff = max(one[3] for one in passes)
        try:
            total = sum(self._one_pass(*one[:3]) for one in passes)
        except (RuntimeError, TypeError, ValueError, IndexError, KeyError):
            return math.nan, samples, roundoff
        return (total if math.isfinite(total) else math.nan), samples, roundoff

    def _one_pass(self, grad: torch.Tensor, inputs: tuple, seen: dict) -> float:
        parameters = {name: p.detach().abs().double() for name, p in self.model.named_parameters()}
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        absolute = tuple(x.abs().double() if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                         for x in inputs)
        queues = {m: list(zs) for m, zs in seen.items()}

        def gained(module, args, output):  # the absolute derivative at the real input, times |input|
            return activation_gain(module, queues[module].pop(0).double()) * args[0]

        device = next(iter(parameters.values())).device if parameters else torch.device("cpu")
        hooks = [m.register_forward_hook(gained) for m in self._activations]
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                A = torch.func.functional_call(self.model, {**parameters, **buffers}, absolute)
        finally:
            for hook in hooks:
                hook.remove()
        if any(queues.values()):
            raise ValueError("activation calls differ from the real forward's")
        return float((grad.abs().double() * A).sum())

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
