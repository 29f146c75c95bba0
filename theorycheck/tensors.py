"""Validating the tensors a user hands to a checker."""

from __future__ import annotations

import torch
from torch import nn

from .errors import expect


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of a module's parameters (all must agree)."""
    params = list(model.parameters())
    expect(bool(params), expected="a module with parameters", received=f"{type(model).__name__} with none",
           fix="pass the network whose weights the claim is about")
    kinds = {(p.device, p.dtype) for p in params}
    expect(len(kinds) == 1, expected="all parameters on one device with one dtype",
           received=", ".join(f"{d}/{t}" for d, t in sorted(kinds, key=str)),
           fix="call model.to(device, dtype) first")
    return kinds.pop()


def as_batch(x, model: nn.Module, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a floating tensor with a batch dimension on the model's device and dtype."""
    device, dtype = model_device_dtype(model)
    expect(isinstance(x, torch.Tensor), expected=f"{name} as a torch.Tensor",
           received=type(x).__name__, fix=f"torch.as_tensor({name}, dtype={dtype}, device='{device}')")
    expect(x.ndim >= 2 and x.shape[0] >= 1, expected=f"{name} with a batch dimension (shape (batch, ...))",
           received=f"shape {tuple(x.shape)}", fix=f"{name}.unsqueeze(0) for a single sample")
    expect(x.dtype == dtype and x.device == device, expected=f"{name} on the model's {device} / {dtype}",
           received=f"{x.device} / {x.dtype}", fix=f"{name}.to(device='{device}', dtype={dtype})")
    return x
