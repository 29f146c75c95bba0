"""The NTK claims on the user's own networks (a factory width -> nn.Module): the kernel is the model's own J J^T,
and the model is measured to be the declared network (outputs at its own weights, weights' moments)."""

import math

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.ntk import init_weights, kernel_at
from theorycheck.claims.ntk_models import module_kernel


class TwoLayer(torch.nn.Module):
    """A user's network written by hand: x -> a^T phi(W x / sqrt(d)) / s (s = sqrt(width) in NTK scaling)."""

    def __init__(self, width, d=4, phi=torch.relu, bias=False, init=torch.nn.init.normal_, scale="ntk"):
        super().__init__()
        self.hidden = torch.nn.Linear(d, width, bias=bias)
        self.readout = torch.nn.Linear(width, 1, bias=bias)
        for layer in (self.hidden, self.readout):
            init(layer.weight)
        self.phi, self.d, self.scale = phi, d, math.sqrt(width) if scale == "ntk" else float(width)

    def forward(self, x):
        return self.readout(self.phi(self.hidden(x) / math.sqrt(self.d))) / self.scale


def test_module_kernel_is_the_ntk_of_the_same_weights():
    X = torch.randn(5, 3, dtype=torch.float64)
    weights = init_weights(3, 32, 1, seed=4)
    model = TwoLayer(32, d=3).double()
    with torch.no_grad():
        model.hidden.weight.copy_(weights[0])
        model.readout.weight.copy_(weights[1])
    assert torch.allclose(module_kernel(model, X), kernel_at(X, weights), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_users_network_holds_and_other_networks_are_vacuous(dtype):
    X = torch.as_tensor(np.random.default_rng(0).standard_normal((4, 4)), dtype=dtype)
    run = dict(depth=1, widths=(64, 128, 256, 512), seeds=(0, 1, 2, 3))
    held = tc.check_ntk(X, model=lambda w: TwoLayer(w).to(dtype), **run)
    assert held.status == "holds", held.summary()
    outside = {"tanh declared relu": lambda w: TwoLayer(w, phi=torch.tanh),
               "biases": lambda w: TwoLayer(w, bias=True),
               "standard init": lambda w: TwoLayer(w, init=lambda W: W),  # nn.Linear's uniform(+-1/sqrt(fan-in))
               "mean-field output": lambda w: TwoLayer(w, scale="mean-field")}
    for name, factory in outside.items():
        verdict = tc.check_ntk(X, model=lambda w: factory(w).to(dtype), **run)
        assert verdict.status == "vacuous", (name, verdict.summary())
        assert not verdict.assumptions[tc.CLAIMS["ntk"].assumptions[1]]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_users_network_moves_its_kernel_as_the_theorem_says(dtype):
    X = torch.as_tensor(np.random.default_rng(1).standard_normal((3, 4)), dtype=dtype)
    y = torch.as_tensor([0.5, -1.0, 1.0], dtype=dtype)
    run = dict(widths=(16, 64, 256, 1024), seeds=tuple(range(10)), steps=16, activation="erf")
    held = tc.check_ntk_movement(X, y, model=lambda w: TwoLayer(w, phi=torch.erf).to(dtype), **run)
    assert held.status == "holds", held.summary()
    other = tc.check_ntk_movement(X, y, model=lambda w: TwoLayer(w, phi=torch.tanh).to(dtype),
                                  **{**run, "widths": (16, 32, 64), "seeds": (0, 1), "steps": 2})
    assert other.status == "vacuous" and "declared" in other.reason, other.summary()


def test_a_factory_must_return_a_scalar_output_module():
    X = torch.randn(3, 4)
    with pytest.raises(tc.InvalidArgument, match="torch.nn.Module"):
        tc.check_ntk(X, depth=1, model=lambda w: "not a module", widths=(16, 32, 64), seeds=(0, 1))
    with pytest.raises(tc.InvalidArgument, match="one output per row"):
        tc.check_ntk(X, depth=1, model=lambda w: torch.nn.Linear(4, 2), widths=(16, 32, 64), seeds=(0, 1))


def test_the_weights_law_needs_mean_0_and_variance_1_only():
    """unit_variance: N(0, 1) and uniform(+-sqrt 3) weights (variance 1, another law: the same limit) pass; variance
    0.8 and mean 0.2 fail, at 4 x 2048 entries per layer."""
    from theorycheck.claims.ntk_models import unit_variance

    generator = torch.Generator().manual_seed(0)
    layers = lambda draw: [[draw((64, 32)), draw((1, 64))] for _ in range(4)]  # noqa: E731
    gaussian = lambda shape: torch.randn(shape, generator=generator, dtype=torch.float64)  # noqa: E731
    uniform = lambda shape: (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1) * math.sqrt(3)  # noqa: E731
    assert unit_variance(layers(gaussian), tests=2)["unit"] and unit_variance(layers(uniform), tests=2)["unit"]
    assert not unit_variance(layers(lambda shape: math.sqrt(0.8) * gaussian(shape)), tests=2)["unit"]
    assert not unit_variance(layers(lambda shape: 0.2 + gaussian(shape)), tests=2)["unit"]
