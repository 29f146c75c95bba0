"""The state a measurement evaluates a user's model in: a float64 copy where the forward then computes in
float64, else the model's own parameters, with the precision its forward actually used.

A forward may fix dtypes itself (``x.float()``, ``x.to(torch.float32) / 255``): on a float64 copy it then
fails, or computes in float32. The precision is measured, never assumed: every floating-point operation of
one forward pass is recorded (:class:`_Precision`), and the lowest-precision result among the operations
that compute on a parameter or on a result derived from one is the arithmetic the identities' tolerances
must use (a cast of the input alone, ``x.half().float()`` before any layer, changes f's input, not the
roundoff of the computations in the weights). Parameters are always copied: a forward that writes into
them (``nn.Embedding(max_norm=...)`` renormalizes its table in place) changes the copy, never the model.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.func import functional_call
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakTensorKeyDictionary

from .errors import InvalidArgument, expect

REFERENCE = torch.float64


class _Precision(TorchDispatchMode):
    """Records the dtypes of the floating-point results of operations with an input derived from one of
    ``sources`` (the parameters: results of operations on them, transitively)."""

    def __init__(self, sources):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()
        self.derived = WeakTensorKeyDictionary({t: True for t in sources})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t in self.derived for t in pytree.tree_leaves((args, kwargs))):
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.derived[t] = True
                    if t.is_floating_point():
                        self.dtypes.add(t.dtype)
        return out


def lowest_precision(dtypes) -> torch.dtype | None:
    """The dtype with the largest machine epsilon (None for none)."""
    return max(dtypes, key=lambda d: torch.finfo(d).eps, default=None)


def unwrap(model: nn.Module) -> nn.Module:
    """The module a wrapper runs: ``nn.DataParallel`` (and DistributedDataParallel) forward to ``.module``;
    a TorchScript module cannot be run with substituted parameters (InvalidArgument)."""
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    expect(not isinstance(model, torch.jit.ScriptModule),
           expected="an eager nn.Module (the checks run it with copied and scaled parameters)",
           received=f"a TorchScript module ({type(model).__name__}, from torch.jit.trace or torch.jit.script)",
           fix="pass the nn.Module before torch.jit.trace / torch.jit.script")
    return model


def output_tensor(out, where: str = "the model") -> torch.Tensor:
    """The model's output must be one tensor: a tuple, list or dict leaves open which entry f is."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list, dict)):
        parts = out.items() if isinstance(out, dict) else enumerate(out)
        shapes = ", ".join(f"[{k!r}] {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}"
                           for k, v in parts)
        received = f"a {type(out).__name__} ({shapes})"
    else:
        received = type(out).__name__
    raise InvalidArgument(f"expected {where} to return one tensor f(x) (one row per sample), but got {received}. "
                          "Fix: wrap it in a module whose forward returns the one output the claim is about "
                          "(e.g. model(x)[0])")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Parameters, buffers and input to evaluate f with, and the precision the forward computed in."""

    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    x: torch.Tensor
    arithmetic: torch.dtype  # measured: the lowest precision among the forward's floating-point results
    copied: bool  # True: a float64 copy of the model's parameters, buffers and floating input
    note: str  # how the precision was found, for the verdict


def _run(model, params, buffers, x) -> tuple[torch.Tensor, torch.dtype | None]:
    recorder = _Precision([p for p in params.values() if p.is_floating_point()])
    state = {n: b.clone() for n, b in buffers.items()}
    with torch.no_grad(), recorder:
        out = output_tensor(functional_call(model, (params, state), (x,)))
    return out, lowest_precision(recorder.dtypes | ({out.dtype} if out.is_floating_point() else set()))


def _cast(tensors: dict, dtype: torch.dtype) -> dict:
    """Copies (never views: ``.to`` returns the tensor itself when the dtype already matches)."""
    return {n: t.detach().to(dtype, copy=True) if t.is_floating_point() else t.detach().clone()
            for n, t in tensors.items()}


def evaluation_state(model: nn.Module, x: torch.Tensor) -> Evaluation:
    """A float64 copy (the weights exactly, up-cast) when a forward on it computes in float64 throughout;
    otherwise the model's own parameters, buffers and ``x``, with the precision measured on that pass.
    A model that does not run on ``x`` at all raises InvalidArgument."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    copy = (_cast(params, REFERENCE), _cast(buffers, REFERENCE),
            x.detach().to(REFERENCE) if x.is_floating_point() else x.detach())
    try:
        _, used = _run(model, *copy)
    except (RuntimeError, TypeError) as error:
        used, failure = None, f"the float64 copy does not run ({str(error).splitlines()[0][:160]})"
    else:
        failure = f"the forward computes in {used} on a float64 copy (it casts)"
    if used == REFERENCE:
        return Evaluation(*copy, arithmetic=REFERENCE, copied=True, note="float64 copy (measured: every floating-"
                          "point operation of the forward computes in float64)")
    own = ({n: p.detach().clone() for n, p in params.items()}, {n: b.detach().clone() for n, b in buffers.items()},
           x.detach())
    try:
        _, arithmetic = _run(model, *own)
    except (RuntimeError, TypeError, IndexError, ValueError) as error:
        fix = ("pass inputs the model takes (shape, dtype, device)" if x.is_floating_point() else
               "integer x is passed to the model as it is: give a model that embeds or converts it (an nn.Embedding "
               "or a table indexed by the ids first), or convert x to the model's dtype yourself if the integers "
               "are themselves the features")
        raise InvalidArgument(f"expected a model that runs on x (shape {tuple(x.shape)}, {x.dtype}), but its "
                              f"forward raised {type(error).__name__}: {str(error).splitlines()[0][:200]}. "
                              f"Fix: {fix}") from None
    arithmetic = arithmetic or next(iter(params.values())).dtype
    return Evaluation(*own, arithmetic=arithmetic, copied=False,
                      note=f"the model's own parameters in {str(arithmetic).removeprefix('torch.')} (measured: "
                           f"{failure})")
