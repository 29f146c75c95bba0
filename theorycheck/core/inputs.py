"""Validating the models and tensors a user hands to a checker."""

from __future__ import annotations

import math

import torch
from torch import nn

from .errors import InvalidArgument, expect


def require_module(model, name: str = "model") -> nn.Module:
    """``model`` must be a ``torch.nn.Module`` (the checkers read its parameters)."""
    expect(isinstance(model, nn.Module), expected=f"{name} as a torch.nn.Module (the checkers read its parameters)",
           received=f"{type(model).__name__} {getattr(model, '__name__', '')}".rstrip(),
           fix="wrap the computation in an nn.Module subclass, or pass the network itself (e.g. nn.Sequential)")
    return model


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of a module's parameters (all must agree)."""
    require_module(model)
    params = list(model.parameters())
    expect(bool(params), expected="a module with parameters", received=f"{type(model).__name__} with none",
           fix="pass the network whose weights the claim is about")
    kinds = {(p.device, p.dtype) for p in params}
    expect(len(kinds) == 1, expected="all parameters on one device with one dtype",
           received=", ".join(f"{d}/{t}" for d, t in sorted(kinds, key=str)),
           fix="call model.to(device, dtype) first")
    return kinds.pop()


def first_layer(model: nn.Module) -> nn.Module:
    """The layer a ``Sequential`` applies first (following nested ``Sequential`` s); else ``model``."""
    while isinstance(model, nn.Sequential) and len(model):
        model = model[0]
    return model


def expected_input(model: nn.Module) -> tuple[str, bool] | None:
    """The input shape the first layer of a ``Sequential`` takes, as text, and a test of ``x``'s shape
    (None when it cannot be read off: another first module, or not a Sequential)."""
    layer = first_layer(model)
    if layer is model or isinstance(layer, nn.modules.lazy.LazyModuleMixin):
        return None
    if isinstance(layer, nn.Linear):
        return f"(batch, ..., {layer.in_features}) for its first layer {layer}", layer.in_features
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        spatial = {1: "L", 2: "H, W", 3: "D, H, W"}[len(layer.kernel_size)]
        return f"(batch, {layer.in_channels}, {spatial}) for its first layer {layer}", layer.in_channels
    return None


def _shape_fits(x: torch.Tensor, layer: nn.Module, width: int) -> bool:
    if isinstance(layer, nn.Linear):
        return x.shape[-1] == width
    return x.ndim == len(layer.kernel_size) + 2 and x.shape[1] == width


def _runs_on(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's forward takes ``x`` as it is (one pass without gradients on copies of its buffers,
    the random state restored; it converts x itself)."""
    from torch.func import functional_call

    state = {n: b.clone() for n, b in model.named_buffers()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            functional_call(model, (dict(model.named_parameters()), state), (x,))
    except Exception:  # noqa: BLE001 - any refusal means: not an input this model converts
        return False
    return True


def as_batch(x, model: nn.Module, name: str = "x", *, indices: bool = False) -> torch.Tensor:
    """Check that ``x`` is a floating tensor with a batch dimension on the model's device and dtype,
    shaped for the model's first layer when that can be read off (a ``Sequential`` starting with a
    Linear or Conv layer). ``indices``: inputs the model's forward converts itself are taken as they
    are, on the model's device: integers (token ids, uint8 pixels), and floats of another dtype where the
    forward runs on them (``x.float()`` inside)."""
    device, dtype = model_device_dtype(model)
    expect(isinstance(x, torch.Tensor), expected=f"{name} as a torch.Tensor",
           received=type(x).__name__, fix=f"torch.as_tensor({name}, dtype={dtype}, device='{device}')")
    expect(x.ndim >= 2 or (indices and x.ndim == 1 and not x.is_floating_point()),
           expected=f"{name} with a batch dimension (shape (batch, ...))",
           received=f"shape {tuple(x.shape)}", fix=f"{name}.unsqueeze(0) for a single sample")
    expect(x.shape[0] >= 1, expected=f"{name} with a batch dimension (shape (batch, ...))",
           received=f"shape {tuple(x.shape)}", fix=f"{name}.unsqueeze(0) for a single sample")
    integer = not (x.is_floating_point() or x.is_complex())
    if integer:
        expect(indices, expected=f"{name} as floating-point inputs on the model's {device} / {dtype}",
               received=f"integers ({x.dtype}: token ids or pixels?)",
               fix="token ids: embed them in the model (check_homogeneity takes ids as they are); pixels or "
                   "counts: convert them to the model's dtype as the model's training did")
        expect(x.device == device, expected=f"{name} on the model's {device}", received=f"{x.device}",
               fix=f"{name}.to('{device}')")
        return x
    expect((x.dtype == dtype or (indices and _runs_on(model, x))) and x.device == device,
           expected=f"{name} on the model's {device} / {dtype}",
           received=f"{x.device} / {x.dtype}", fix=f"{name}.to(device='{device}', dtype={dtype})")
    shape = expected_input(model)
    if shape is not None:
        expect(_shape_fits(x, first_layer(model), shape[1]), expected=f"{name} of shape {shape[0]}",
               received=f"shape {tuple(x.shape)}",
               fix=f"pass inputs the model takes, or build the model for {name}'s shape")
    return x


def as_labels(y, X: torch.Tensor) -> torch.Tensor:
    """Check that y holds one label in {-1, +1} per row of X; return it on X's device and dtype."""
    expect(isinstance(y, torch.Tensor), expected="y as a torch.Tensor of labels in {-1, +1}",
           received=type(y).__name__, fix=f"torch.as_tensor(y, dtype={X.dtype})")
    expect(y.shape == (X.shape[0],), expected=f"y of shape ({X.shape[0]},) (one label per row of X)",
           received=f"shape {tuple(y.shape)}", fix="y.reshape(-1)")
    expect(bool(((y == 1) | (y == -1)).all()), expected="labels in {-1, +1}",
           received=f"values {sorted(set(y.detach().cpu().tolist()))[:6]}", fix="y = 2 * y - 1 for 0/1 labels")
    return y.to(dtype=X.dtype, device=X.device)


def _as_array(value):
    """A tensor or array view of ``value`` for the guard (lists of numbers too); None for anything else."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
        return torch.as_tensor(value)
    import numpy as np

    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value)) if value.dtype.kind in "fiub" else value
    return None


def guard_inputs(claim: str, arguments: dict, *, samples=(), finite=(), indices=(), unbounded=()) -> str | None:
    """The input guard at a checker's boundary, before any numerics: every argument named in ``samples``
    or ``finite`` is a non-empty numeric array (integers only where ``indices`` names it: ids, labels) and
    the ``samples`` arguments share their first (sample) axis; every float argument is a number, and finite
    unless ``unbounded`` names it. Bad input raises InvalidArgument naming the claim, what was expected,
    what came and the fix. Non-finite entries in the arrays are not bad input but data nothing can be
    decided on: their description is returned (the kit makes the verdict inconclusive), else None."""
    lengths, non_finite = {}, []
    for name in (*samples, *finite):
        value = arguments.get(name)
        if value is None:
            continue
        array = _as_array(value)
        expect(isinstance(array, torch.Tensor), expected=f"{name} of {claim!r} as a tensor or numeric array",
               received=type(value).__name__, fix=f"torch.as_tensor({name}, dtype=torch.float64)")
        integer = not (array.is_floating_point() or array.is_complex())
        expect(not integer or name in indices,
               expected=f"{name} of {claim!r} as floating point numbers", received=f"dtype {array.dtype}",
               fix=f"token ids: {claim!r} needs the model's real-valued inputs, so embed them first; numeric "
                   f"features stored as integers: {name}.to(torch.float64) (or float32)")
        expect(array.numel() > 0 and (array.ndim == 0 or array.shape[0] > 0),
               expected=f"a non-empty {name} for {claim!r}", received=f"shape {tuple(array.shape)}",
               fix=f"pass at least one sample in {name}, and at least one feature")
        if not integer:
            bad = int((~torch.isfinite(array)).sum())
            if bad:
                non_finite.append(f"{bad} non-finite entr{'y' if bad == 1 else 'ies'} of {array.numel()} in {name}")
        if name in samples and array.ndim >= 1:
            lengths[name] = array.shape[0]
    expect(len(set(lengths.values())) <= 1, expected=f"one sample count across {sorted(lengths)} for {claim!r}",
           received=", ".join(f"{k}: {v}" for k, v in lengths.items()),
           fix="pass one row per sample in each of them")
    for name, value in arguments.items():
        if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and name not in unbounded)):
            raise InvalidArgument(f"expected a finite number for {name} of {claim!r}, but got {value}. Fix: pass a "
                                  f"finite value for {name}.")
    return "; ".join(non_finite) or None


def check_record_shapes(owner: str, fields: dict, **sizes: int) -> None:
    """A recorded run's arrays must agree with each other: ``fields`` maps a field name to (array, shape),
    a shape's entries an int, a name in ``sizes`` or None (any length >= 1). Raises InvalidArgument naming
    the field (a run built by hand, or edited after recording)."""
    for name, (value, shape) in fields.items():
        if value is None:
            continue
        got = tuple(getattr(value, "shape", ()))
        want = tuple(sizes.get(s, s) if isinstance(s, str) else s for s in shape)
        fits = len(got) == len(want) and all(w is None and g >= 1 or g == w for g, w in zip(got, want))
        expect(fits, expected=f"{owner}.{name} of shape {tuple('any' if w is None else w for w in want)}",
               received=f"shape {got}", fix=f"pass the {owner} as it was recorded; its arrays must agree in shape")
