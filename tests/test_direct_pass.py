"""The direct pass of plain stacks (theorycheck.engines.direct_pass): the same numbers as functional_call,
bit for bit, through tc.train's records; every model that is not a plain stack takes functional_call."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.margin import FlowInstance
from theorycheck.engines import flat_network
from theorycheck.engines.flat_network import FlatNetwork, KinkPattern
from theorycheck.generate.models import NetworkSpec

SPECS = [NetworkSpec(family="mlp", widths=(5, 4), activation="relu", in_shape=(3,)),
         NetworkSpec(family="mlp", widths=(4,), activation="leaky_relu", in_shape=(3,)),
         NetworkSpec(family="mlp", widths=(4,), activation="relu_p", in_shape=(3,)),
         NetworkSpec(family="cnn", widths=(2, 2), activation="relu", in_shape=(2, 6, 6), pooling="max"),
         NetworkSpec(family="cnn", widths=(2,), activation="relu", in_shape=(1, 5, 5), pooling="avg")]


def _instance(spec):
    return FlowInstance(spec=spec, seed=5, n=6, data_margin=0.2, loss="exp", log_loss_target=math.log(1e-20))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.family}-{s.activation}-{s.pooling}")
def test_the_direct_pass_gives_functional_calls_numbers_bit_for_bit(spec, dtype, monkeypatch):
    model, X, y = _instance(spec).build("cpu", dtype)
    direct, general = FlatNetwork(model, X, y), FlatNetwork(model, X, y)
    general.direct = None
    assert direct.direct is not None
    theta = direct.flatten() * 1.5  # not the module's own weights: theta is what is read
    for net in (direct, general):
        net.result = (*net.margin_jacobian(theta), net.outputs(theta, X[:2]), KinkPattern(net, False)(theta))
    for a, b in zip(direct.result, general.result):
        assert (a is None and b is None) or torch.equal(a, b)
    # the whole flow: identical records whichever road the passes take
    runs = []
    for road in ("direct", "functional_call"):
        if road == "functional_call":
            monkeypatch.setattr(flat_network.DirectPass, "of", classmethod(lambda cls, *args: None))
        model, X, y = _instance(spec).build("cpu", dtype)
        runs.append(tc.train(model, X, y, **{**_instance(spec).train_kwargs(), "steps": 60}))
    assert runs[0].steps == runs[1].steps
    for column in runs[0].records:
        assert np.array_equal(runs[0].records[column], runs[1].records[column], equal_nan=True), column


def _plain():
    return nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)).double()


class OwnSequential(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


def _hooked_linear():
    model = _plain()
    model[0].register_forward_hook(lambda module, args, out: out.clamp(max=0.1))
    return model


def _hooked_relu():
    model = _plain()
    model[1].register_forward_pre_hook(lambda module, args: (args[0] * 3,))
    return model


def _frozen():
    model = _plain()
    model[0].weight.requires_grad_(False)
    return model


def _reused():
    layer = nn.Linear(3, 3, bias=False)
    return nn.Sequential(layer, nn.ReLU(), layer, nn.Linear(3, 1, bias=False)).double()


def _parametrized():
    model = _plain()
    torch.nn.utils.parametrize.register_parametrization(model[0], "weight", nn.Tanh())
    return model


@pytest.mark.parametrize("build", [
    _hooked_linear, _hooked_relu, _frozen, _reused, _parametrized,
    lambda: OwnSequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)).double(),
    lambda: nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1)).double().eval(),
    lambda: nn.Sequential(nn.Linear(3, 4), nn.PReLU(), nn.Linear(4, 1)).double(),
], ids=["hooked-linear", "hooked-relu", "frozen", "reused", "parametrized", "own-forward", "buffers", "prelu"])
def test_what_is_not_a_plain_stack_takes_functional_call(build):
    model = build()
    X = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1.0, -1, 1, -1, 1], dtype=torch.float64)
    net = FlatNetwork(model, X, y)
    assert net.direct is None
    with torch.no_grad():
        assert torch.equal(net.outputs(net.flatten()), model(X).reshape(-1))  # what the model computes
