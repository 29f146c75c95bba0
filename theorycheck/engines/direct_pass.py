"""A direct forward pass for plain stacks of layers: outputs, each weight layer's input and output, and the
activation pattern of the kinks, from one pass with the weights read from a flat parameter vector.

For an ``nn.Sequential`` (nested ones flattened) of ``nn.Linear``, ``nn.Conv1d`` and ``nn.Conv2d`` layers
(exactly those classes) and parameter-free modules (activations, pooling, flatten), the pass calls the layers'
own functionals (``F.linear``, ``F.conv*d``) on views of theta and the parameter-free modules themselves:
the same operations ``torch.func.functional_call`` runs, without re-binding the module's parameters on every
call, and it keeps what the flow engine otherwise reads with hooks and a second pass (layer inputs and
outputs, the kink pattern). Anything else (buffers, hooks, parametrizations, frozen parameters, a container
with its own forward) is not a plain stack, and :class:`theorycheck.engines.flat_network.FlatNetwork` uses
``functional_call`` for it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
KINK_MODULES = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.Hardtanh, nn.modules.pooling._MaxPoolNd)


def kink_code(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The piece of a kink module's input ``x`` (flattened): the max-pooling argmax, the clamp level of ReLU6 /
    Hardtanh (0, 1, 2), else the sign (x > 0)."""
    if isinstance(module, nn.modules.pooling._MaxPoolNd):
        pool = getattr(F, f"max_pool{x.dim() - 2}d")
        return pool(x, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode,
                    return_indices=True)[1].reshape(-1)
    if isinstance(module, (nn.ReLU6, nn.Hardtanh)):
        low, high = (0.0, 6.0) if isinstance(module, nn.ReLU6) else (module.min_val, module.max_val)
        return ((x > low).to(torch.int8) + (x > high).to(torch.int8)).reshape(-1)
    return (x > 0).reshape(-1)


def _leaves(module: nn.Module) -> list[nn.Module] | None:
    """The modules a plain stack applies in order (nested exact nn.Sequential flattened), or None."""
    if type(module) is nn.Sequential:
        out = []
        for child in module:
            inner = _leaves(child)
            if inner is None:
                return None
            out += inner
        return out
    return [module]


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or getattr(module, "_backward_hooks", None)
                or getattr(module, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    from torch.nn.modules import module as module_state

    return bool(module_state._global_forward_hooks or module_state._global_forward_pre_hooks
                or module_state._global_backward_hooks or getattr(module_state, "_global_backward_pre_hooks", None))


@dataclasses.dataclass
class PassRecord:
    """What one direct pass kept: the output (N,), each weight layer's input and output by module name, and the
    kink pattern (None when the stack has no kink module)."""

    output: torch.Tensor
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]
    pattern: torch.Tensor | None


class DirectPass:
    """The plain-stack forward of a model, with its weights taken from theta (see the module docstring)."""

    def __init__(self, steps: list[tuple[str, nn.Module]], slices: dict[str, tuple[int, int, torch.Size]]):
        self.steps, self.slices = steps, slices
        self.has_kinks = any(isinstance(m, KINK_MODULES) for _, m in steps)

    @classmethod
    def of(cls, model: nn.Module, names: list[str], shapes: list[torch.Size]) -> "DirectPass | None":
        """The direct pass of ``model`` whose trained parameters are ``names`` (flat order, with ``shapes``), or
        None when the model is not a plain stack (then functional_call is the road)."""
        leaves = _leaves(model)
        if leaves is None or _global_hooks() or list(model.buffers()):
            return None
        module_names = {id(m): n for n, m in model.named_modules()}
        steps, owned, seen = [], set(), set()
        for leaf in leaves:
            if _hooked(leaf) or id(leaf) in seen:  # hooked, or one module called twice
                return None
            seen.add(id(leaf))
            name = module_names[id(leaf)]
            own = [f"{name}.{k}" for k, _ in leaf.named_parameters(recurse=False)]
            if type(leaf) in _LAYERS:
                if isinstance(leaf, nn.modules.conv._ConvNd) and leaf.padding_mode != "zeros":
                    return None
                owned.update(own)
            elif own or list(leaf.children()):
                return None
            steps.append((name, leaf))
        offsets, start = {}, 0
        for name, shape in zip(names, shapes):
            offsets[name] = (start, start + shape.numel(), shape)
            start += shape.numel()
        if owned != set(names):  # a frozen parameter, or one outside the layers
            return None
        return cls(steps, offsets)

    def _weight(self, theta: torch.Tensor, name: str) -> torch.Tensor | None:
        if name not in self.slices:
            return None
        begin, end, shape = self.slices[name]
        return theta[begin:end].view(shape)

    def run(self, theta: torch.Tensor, X: torch.Tensor, *, keep: bool = False, kinks: bool = False) -> PassRecord:
        """The model's output on X (flattened to (N,) for one output per sample) with the weights in ``theta``;
        ``keep``: each weight layer's input (detached) and output; ``kinks``: the kink pattern."""
        h, inputs, outputs, pattern = X, {}, {}, []
        for name, module in self.steps:
            if type(module) in _LAYERS:
                weight, bias = self._weight(theta, f"{name}.weight"), self._weight(theta, f"{name}.bias")
                if keep:
                    inputs[name] = h.detach()
                if isinstance(module, nn.Linear):
                    h = F.linear(h, weight, bias)
                else:
                    h = module._conv_forward(h, weight, bias)
                if keep:
                    outputs[name] = h
            else:
                if kinks and isinstance(module, KINK_MODULES):
                    pattern.append(kink_code(module, h.detach()).to(torch.int64))
                h = module(h)
        return PassRecord(output=h.reshape(-1), inputs=inputs, outputs=outputs,
                          pattern=torch.cat(pattern) if kinks and pattern else None)
