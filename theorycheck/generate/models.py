"""Homogeneous network families and their deliberately broken variants.

A :class:`NetworkSpec` is a small frozen description (so Hypothesis can draw and shrink it, and a
verdict can print a line that rebuilds the instance); :func:`build_network` turns it into a module.
Reading any ``torch.nn.Module`` lives below, in :mod:`theorycheck.core.modules`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core.errors import expect
from ..core.modules import PowerReLU

FAMILIES = ("mlp", "cnn", "linear")
HOMOGENEOUS_ACTIVATIONS = ("relu", "leaky_relu", "relu_p")
SMOOTH_ACTIVATIONS = ("tanh", "gelu")
ACTIVATIONS = HOMOGENEOUS_ACTIVATIONS + SMOOTH_ACTIVATIONS + ("identity",)
POOLINGS = ("none", "max", "avg")


class Residual(nn.Module):
    """x + g(x): breaks homogeneity (the skip term has degree 0 in g's weights)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return x + self.inner(x)


@dataclasses.dataclass(frozen=True)
class NetworkSpec:
    """A network of one of :data:`FAMILIES`; ``bias``/``residual``/``batchnorm`` break homogeneity."""

    family: str = "mlp"
    in_shape: tuple[int, ...] = (4,)
    widths: tuple[int, ...] = (8,)
    activation: str = "relu"
    power: float = 2.0  # for activation "relu_p"
    pooling: str = "none"  # cnn only
    bias: bool = False
    residual: bool = False
    batchnorm: bool = False
    out_dim: int = 1

    def __post_init__(self):
        expect(self.family in FAMILIES, expected=f"family in {FAMILIES}", received=repr(self.family),
               fix="choose one of those families")
        expect(self.activation in ACTIVATIONS, expected=f"activation in {ACTIVATIONS}",
               received=repr(self.activation), fix="choose one of those activations")
        expect(self.pooling in POOLINGS, expected=f"pooling in {POOLINGS}", received=repr(self.pooling),
               fix="choose one of those poolings")
        expect(all(int(w) >= 1 for w in self.widths), expected="positive widths",
               received=repr(self.widths), fix="give every hidden layer at least one unit")
        expected_rank = 3 if self.family == "cnn" else 1
        expect(len(self.in_shape) == expected_rank, expected=f"in_shape of rank {expected_rank} for a {self.family}",
               received=repr(self.in_shape), fix="(d,) for mlp/linear, (channels, height, width) for cnn")

    @property
    def homogeneous(self) -> bool:
        return (not (self.bias or self.residual or self.batchnorm)
                and (self.family == "linear" or self.activation in HOMOGENEOUS_ACTIVATIONS + ("identity",)))

    @property
    def depth(self) -> int:
        """Number of weight layers."""
        return len(self.widths) + 1

    def degrees(self) -> tuple[float, ...]:
        """Degree of f in each weight layer: p^(number of activations after the layer)."""
        p = self.power if (self.activation == "relu_p" and self.family != "linear") else 1.0
        return tuple(p ** (self.depth - 1 - k) for k in range(self.depth))

    def repr_line(self) -> str:
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                           if getattr(self, f.name) != f.default)
        return f"NetworkSpec({fields})"


def _activation(spec: NetworkSpec) -> nn.Module:
    if spec.family == "linear" or spec.activation == "identity":
        return nn.Identity()
    return {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.1),
            "relu_p": lambda: PowerReLU(spec.power), "tanh": lambda: nn.Tanh(),
            "gelu": lambda: nn.GELU()}[spec.activation]()


def _hidden_block(spec: NetworkSpec, layer: nn.Module, width: int, same_shape: bool) -> nn.Module:
    parts = [layer]
    if spec.batchnorm:
        parts.append(nn.BatchNorm1d(width) if spec.family != "cnn" else nn.BatchNorm2d(width))
    parts.append(_activation(spec))
    block = nn.Sequential(*parts)
    return Residual(block) if (spec.residual and same_shape) else block


def build_network(spec: NetworkSpec, *, seed: int = 0, device="cpu", dtype=torch.float64) -> nn.Module:
    """Build the module described by ``spec`` with weights drawn from ``seed`` (Kaiming-uniform)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        layers: list[nn.Module] = []
        if spec.family == "cnn":
            channels, height, width = spec.in_shape
            for out_channels in spec.widths:
                conv = nn.Conv2d(channels, out_channels, 3, padding=1, bias=spec.bias)
                layers.append(_hidden_block(spec, conv, out_channels, channels == out_channels))
                if spec.pooling != "none" and min(height, width) >= 2:
                    layers.append(nn.MaxPool2d(2) if spec.pooling == "max" else nn.AvgPool2d(2))
                    height, width = height // 2, width // 2
                channels = out_channels
            layers += [nn.Flatten(), nn.Linear(channels * height * width, spec.out_dim, bias=spec.bias)]
        else:
            fan_in = spec.in_shape[0]
            for width in spec.widths:
                linear = nn.Linear(fan_in, width, bias=spec.bias)
                layers.append(_hidden_block(spec, linear, width, fan_in == width))
                fan_in = width
            layers.append(nn.Linear(fan_in, spec.out_dim, bias=spec.bias))
        model = nn.Sequential(*layers)
    finally:
        torch.random.set_rng_state(generator_state)
    model.homogeneity_degrees = spec.degrees() if spec.homogeneous else None
    return model.to(device=device, dtype=dtype)
