"""Devices and dtypes: resolving names, per-dtype roundoff, lazy CUDA.

Importing theorycheck never initializes CUDA: only the functions here touch ``torch.cuda``, and
only when asked for a CUDA device.
"""

from __future__ import annotations

import os

import torch

from .errors import InvalidArgument

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_DTYPE = "float64"


def dtype_of(name: str | torch.dtype) -> torch.dtype:
    """``"float64"`` or ``torch.float64`` -> ``torch.float64``; anything else is bad input."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        name = str(name)
    if name not in DTYPES:
        raise InvalidArgument(f"expected a dtype in {sorted(DTYPES)}, but got {name!r}. "
                              "Fix: theory checks run in float64 (default) or float32.")
    return DTYPES[name]


HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}  # recorded runs only: judged with their own u


def recorded_dtype(name: str | torch.dtype) -> torch.dtype:
    """The dtype a recorded run computed in: float64 or float32 (:func:`dtype_of`), or float16/bfloat16, whose
    roundoff (u = 2^-11, 2^-8) its tolerances then use."""
    text = dtype_name(name) if isinstance(name, torch.dtype) else name
    return HALF_DTYPES[text] if text in HALF_DTYPES else dtype_of(name)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def unit_roundoff(dtype: torch.dtype) -> float:
    """u = eps/2: the relative error of one correctly rounded operation."""
    return torch.finfo(dtype).eps / 2


def gamma(n: int, dtype: torch.dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term dot product."""
    nu = n * unit_roundoff(dtype)
    if nu >= 1:
        return float("inf")
    return nu / (1 - nu)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def synchronize(device: torch.device) -> None:
    """Wait for the kernels queued on ``device`` (CUDA runs them asynchronously); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def available_devices() -> list[str]:
    return ["cpu"] + (["cuda"] if cuda_available() else [])


def resolve_device(name: str | torch.device) -> torch.device:
    """Check that the device exists here; the error says what to do when CUDA is missing."""
    device = torch.device(name)
    if device.type == "cuda" and not cuda_available():
        raise InvalidArgument(f"expected a device available on this machine ({available_devices()}), but got "
                              f"{str(name)!r}: torch sees no CUDA GPU. Fix: run with devices=cpu, or on a "
                              "machine with a GPU and a CUDA build of torch.")
    if device.type not in ("cpu", "cuda"):
        raise InvalidArgument(f"expected a device 'cpu' or 'cuda[:N]', but got {str(name)!r}. "
                              "Fix: pass one of those names.")
    return device


def device_marks(device: str) -> list:
    """pytest marks for a test on ``device``: ``cuda`` and a skip with its reason on a machine without a GPU."""
    if not device.startswith("cuda"):
        return []
    import pytest

    return [pytest.mark.cuda, pytest.mark.skipif(not cuda_available(),
                                                 reason="CUDA requested but torch sees no GPU on this machine")]


def parse_list(text: str, allowed: set[str], what: str) -> list[str]:
    """Parse ``"cpu,cuda"`` into a list, rejecting unknown names."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item.split(":")[0] not in allowed]
    if not items or unknown:
        raise InvalidArgument(f"expected a comma-separated list of {what} from {sorted(allowed)}, but got "
                              f"{text!r}. Fix: e.g. {','.join(sorted(allowed))}.")
    return items


def pin_xdist_worker_to_gpu() -> None:
    """Under pytest-xdist, give each worker one GPU from the visible list (before CUDA starts).

    Worker ``gwN`` takes entry ``N mod len(visible)`` of ``CUDA_VISIBLE_DEVICES`` (or of the GPUs
    found by ``nvidia-smi``-free counting through torch, which does not initialize CUDA).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        count = torch.cuda.device_count()  # NVML-based count; does not create a CUDA context
        gpus = [str(i) for i in range(count)]
    else:
        gpus = [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[int(worker[2:]) % len(gpus)]
