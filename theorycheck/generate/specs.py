"""Random network specs from two choosers, shared by the Hypothesis strategies
(:mod:`theorycheck.generate.strategies`) and the seeded audit sampler (:mod:`theorycheck.generate.sampling`), which
does not depend on Hypothesis."""

from __future__ import annotations

from ..core.errors import InvalidArgument
from .models import FAMILIES, HOMOGENEOUS_ACTIVATIONS, POOLINGS, NetworkSpec

MAX_DEPTH = 4  # hidden layers
MAX_WIDTH = 12
MAX_CHANNELS = 4
BREAKS = ("bias", "residual", "batchnorm", "tanh", "gelu")  # ways to break homogeneity


def compose_spec(choose_int, choose_one, *, family=None, depth=None, width=None, activation=None,
                 pooling=None, in_dim=None, breaks=None) -> NetworkSpec:
    """Build a NetworkSpec from two choosers, shared by Hypothesis strategies and seeded audits.

    ``choose_int(lo, hi, given)`` and ``choose_one(options, given)`` return ``given`` when the caller
    fixed that option (a value, or for Hypothesis a strategy), else a choice from the default range.
    """
    family = choose_one(FAMILIES, family)
    n_hidden = choose_int(0, MAX_DEPTH, depth)
    activation = choose_one(HOMOGENEOUS_ACTIVATIONS, activation)
    broken = None if breaks is None else choose_one(BREAKS, breaks)
    if broken is not None and broken not in BREAKS:
        raise InvalidArgument(f"expected breaks in {BREAKS}, but got breaks={broken!r}. Fix: choose one of them.")
    if broken in ("tanh", "gelu"):
        activation, family = broken, choose_one(("mlp", "cnn"), None)
    if broken is not None:
        n_hidden = max(n_hidden, 1)
    power = choose_one((2.0, 3.0), None) if activation == "relu_p" else 2.0
    if family == "cnn":
        widths = tuple(choose_int(1, MAX_CHANNELS, None) for _ in range(min(max(n_hidden, 1), 2)))
        size = choose_int(3, 6, None)
        in_shape = (choose_int(1, 3, None), size, size)
        pooling = choose_one(POOLINGS, pooling)
    else:
        widths = tuple(choose_int(1, MAX_WIDTH, width) for _ in range(n_hidden))
        in_shape, pooling = (choose_int(1, 6, in_dim),), "none"
    if broken == "residual":  # a skip needs equal input and output shapes
        widths = (in_shape[0],) * len(widths)
    return NetworkSpec(family=family, in_shape=in_shape, widths=widths, activation=activation, power=power,
                       pooling=pooling, bias=broken == "bias", residual=broken == "residual",
                       batchnorm=broken == "batchnorm")
