"""What ran: the device and dtype of a checker's inputs, the seed it was given, the versions in use.

The kit fills every verdict's provenance from here, never from defaults: a float32 model gives
``dtype: float32`` whatever precision the checker computed its identities in, and an audit case that
passes no seed of its own records the seed its stream was drawn from.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import sys
from collections.abc import Iterator, Mapping
from typing import Any

_DEPTH = 3  # how far into containers and dataclasses the inputs are searched for tensors
_AUDIT_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar("theorycheck_audit_seed", default=None)


@dataclasses.dataclass(frozen=True)
class Provenance:
    """The device, dtype and seed of one checker call."""

    device: str = "cpu"
    dtype: str = "float64"  # plain Python floats are float64 on the CPU
    seed: int | None = None


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _found(value: Any, depth: int = 0) -> tuple[str, str] | None:
    """(device, dtype) of the first floating tensor, module or array in ``value``."""
    torch = sys.modules.get("torch")
    numpy = sys.modules.get("numpy")
    if _is_module(value):
        for tensor in (*value.parameters(), *value.buffers()):
            if tensor.is_floating_point():
                return str(tensor.device), _dtype_name(tensor.dtype)
        return None
    if torch is not None and isinstance(value, torch.Tensor):
        return (str(value.device), _dtype_name(value.dtype)) if value.is_floating_point() else None
    if numpy is not None and isinstance(value, numpy.ndarray):
        return ("cpu", value.dtype.name) if value.dtype.kind == "f" else None
    if depth >= _DEPTH:
        return None
    if isinstance(value, Mapping):
        children = value.values()
    elif isinstance(value, (list, tuple)):
        children = value[:4]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = (getattr(value, f.name) for f in dataclasses.fields(value))
    else:
        return None
    for child in children:
        found = _found(child, depth + 1)
        if found:
            return found
    return None


def of_call(arguments: Mapping[str, Any]) -> Provenance:
    """The provenance of a checker call from its bound arguments: ``device``/``dtype`` arguments it was
    given name what it ran; else the first floating tensor, module or array among the arguments (a model
    before the data); ``seed`` the call's own, else the audit case's (:func:`audit_seed`)."""
    values = sorted(arguments.values(), key=lambda v: not _is_module(v))
    found = next((f for f in map(_found, values) if f), None)
    device, dtype = found or ("cpu", "float64")
    if arguments.get("device") is not None:
        device = str(arguments["device"])
    if arguments.get("dtype") is not None:
        dtype = _dtype_name(arguments["dtype"])
    seed = arguments.get("seed")
    seed = int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else _AUDIT_SEED.get()
    return Provenance(device=device, dtype=dtype, seed=seed)


def _is_module(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def outside_call() -> Provenance:
    """The provenance of a verdict decided outside a checker call (the CPU, float64, the audit case's seed)."""
    return Provenance(seed=_AUDIT_SEED.get())


@contextlib.contextmanager
def audit_seed(seed: int) -> Iterator[None]:
    """Inside the block a verdict whose checker was given no seed records ``seed`` (an audit case's stream)."""
    token = _AUDIT_SEED.set(int(seed))
    try:
        yield
    finally:
        _AUDIT_SEED.reset(token)


def versions() -> dict[str, str]:
    """The versions of theorycheck and torch (when imported) that decided the verdicts."""
    found = {"theorycheck": str(sys.modules["theorycheck"].__version__)}
    if "torch" in sys.modules:
        found["torch"] = str(sys.modules["torch"].__version__)  # a plain str (TorchVersion does not serialize)
    return found
