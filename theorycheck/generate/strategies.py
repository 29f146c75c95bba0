"""Hypothesis strategies for networks, datasets, devices and dtypes.

Plain functions returning strategies; every option takes a value or a strategy. Networks are
drawn as :class:`~theorycheck.generate.models.NetworkSpec` plus a weight seed, so a failing example shrinks to
the smallest architecture (fewest layers, narrowest widths, plain ReLU) and prints a line that
rebuilds it.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from . import data as datasets
from ..core.devices import DTYPES, available_devices
from ..core.errors import InvalidArgument
from .models import NetworkSpec, build_network
from .specs import compose_spec

def _strategy(value, name: str, kind) -> st.SearchStrategy:
    """Accept a strategy or a plain value (checked against ``kind``) for an option."""
    if isinstance(value, st.SearchStrategy):
        return value
    if not isinstance(value, kind):
        raise InvalidArgument(f"expected {name} as {kind} or a strategy, but got {name}={value!r}. "
                              f"Fix: pass a value or a hypothesis strategy.")
    return st.just(value)


@st.composite
def network_specs(draw, *, family=None, depth=None, width=None, activation=None, pooling=None, in_dim=None,
                  breaks=None) -> NetworkSpec:
    """A homogeneous network spec, or with ``breaks`` (one of :data:`theorycheck.generate.specs.BREAKS`) a non-homogeneous one.

    Each option is None (the default range), a value, or a strategy.
    """
    def given_or(default, given):
        return draw(given) if isinstance(given, st.SearchStrategy) else (draw(default) if given is None else given)

    return compose_spec(lambda lo, hi, given: given_or(st.integers(lo, hi), given),
                        lambda options, given: given_or(st.sampled_from(options), given),
                        family=family, depth=depth, width=width, activation=activation, pooling=pooling,
                        in_dim=in_dim, breaks=breaks)


def devices() -> st.SearchStrategy[str]:
    """The devices available here (cpu, and cuda when a GPU is visible)."""
    return st.sampled_from(available_devices())


def dtypes() -> st.SearchStrategy[str]:
    return st.sampled_from(tuple(DTYPES))


@st.composite
def networks(draw, *, spec=None, device="cpu", dtype="float64", **spec_options):
    """(spec, seed, module): a built network; ``spec`` overrides the drawn architecture."""
    spec = draw(_strategy(spec, "spec", NetworkSpec)) if spec is not None else draw(network_specs(**spec_options))
    seed = draw(st.integers(0, 2**16))
    module = build_network(spec, seed=seed, device=device, dtype=DTYPES[draw(_strategy(dtype, "dtype", str))])
    return spec, seed, module


@st.composite
def inputs(draw, spec: NetworkSpec, *, batch=st.integers(1, 16), device="cpu", dtype="float64"):
    """A batch of Gaussian inputs shaped for ``spec`` (batch >= 2 when the spec has batch norm)."""
    n = max(draw(_strategy(batch, "batch", int)), 2 if spec.batchnorm else 1)
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *spec.in_shape, generator=generator, dtype=DTYPES[dtype])
    return x.to(device)


@st.composite
def classification_data(draw, *, kind=st.sampled_from(("separable", "teacher", "random", "digits")),
                        n=st.integers(2, 24), d=st.integers(1, 6), dtype="float64") -> datasets.Dataset:
    """A binary dataset (labels +-1) of one of the generators in :mod:`theorycheck.generate.data`."""
    kind = draw(_strategy(kind, "kind", str))
    n, d, seed = draw(_strategy(n, "n", int)), draw(_strategy(d, "d", int)), draw(st.integers(0, 2**16))
    torch_dtype = DTYPES[dtype]
    if kind == "separable":
        margin = draw(st.floats(0.05, 0.5))
        return datasets.separable(n, d, margin=margin, seed=seed, dtype=torch_dtype)
    if kind == "teacher":
        return datasets.teacher_labelled(n, d, seed=seed, dtype=torch_dtype)
    if kind == "random":
        return datasets.random_labels(n, d, seed=seed, dtype=torch_dtype)
    if kind == "digits":
        return datasets.digits(n, seed=seed, dtype=torch_dtype)
    raise InvalidArgument(f"expected kind in ('separable', 'teacher', 'random', 'digits'), but got kind={kind!r}. "
                          "Fix: choose one of them.")
