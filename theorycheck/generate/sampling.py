"""Seeded plain-random instance generation for audits (reproducible from (seed, index) alone).

Property tests draw instances with Hypothesis (:mod:`theorycheck.generate.strategies`); audits need the
same kind of instance from a seed without a test runner, which is what these functions give.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.devices import dtype_of

from .models import NetworkSpec, build_network
from ..core.registry import case_seed
from .specs import compose_spec


def case_rng(seed: int, claim: str, index: int) -> np.random.Generator:
    """An independent stream per (audit seed, claim, instance index)."""
    return np.random.default_rng(case_seed(seed, claim, index))


def random_spec(rng: np.random.Generator, *, breaks: str | None = None, **options) -> NetworkSpec:
    """A random network spec in the ranges of :func:`theorycheck.generate.strategies.network_specs`."""
    return compose_spec(lambda lo, hi, given: int(rng.integers(lo, hi + 1)) if given is None else given,
                        lambda choices, given: choices[int(rng.integers(len(choices)))] if given is None else given,
                        breaks=breaks, **options)


def network_and_batch(spec: NetworkSpec, seed: int, batch: int, device="cpu", dtype="float64"):
    """The network ``spec`` with weights from ``seed`` and a Gaussian batch from the same seed."""
    torch_dtype = dtype_of(dtype)
    model = build_network(spec, seed=seed, device=device, dtype=torch_dtype)
    x = torch.randn(batch, *spec.in_shape, generator=torch.Generator().manual_seed(seed), dtype=torch_dtype)
    return model, x.to(device)


def reproduce_line(spec: NetworkSpec, seed: int, batch: int, device: str, dtype: str, call: str) -> str:
    """A Python line rebuilding the instance and running ``call`` (e.g. ``tc.check_homogeneity(m, x)``)."""
    return (f"import theorycheck as tc; from theorycheck.generate.models import NetworkSpec; "
            f"from theorycheck.generate.sampling import network_and_batch; "
            f"m, x = network_and_batch({spec.repr_line()}, seed={seed}, batch={batch}, device={device!r}, "
            f"dtype={dtype!r}); print({call}.summary())")
