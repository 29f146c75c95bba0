"""Exact sympy proofs of Euler's identity and balancedness (flow and one GD step), and their controls."""

import functools
import subprocess
import sys

import pytest

from theorycheck.core.errors import InvalidArgument
from theorycheck.theory.symbolic import (balance_rate, discrete_balance_residual, euler_residual, prove,
                                  symbolic_network, witness)

TWO_SAMPLES_1 = [("101",), ("011",)]
TWO_SAMPLES_2 = [("101", "11"), ("011", "10")]
HOMOGENEOUS = {  # two samples with different activation patterns wherever there is a pattern
    "relu-2-3-1": dict(widths=(2, 3, 1), pattern=TWO_SAMPLES_1),
    "relu-2-3-2-1": dict(widths=(2, 3, 2, 1), pattern=TWO_SAMPLES_2),
    "relu-1-1-2-1": dict(widths=(1, 1, 2, 1), pattern=[("1", "11"), ("1", "01")]),
    "leaky-2-3-2-1": dict(widths=(2, 3, 2, 1), activation="leaky_relu", pattern=TWO_SAMPLES_2),
    "linear-3-2-2-1": dict(widths=(3, 2, 2, 1), activation="linear", samples=2),
    "relu^2-2-2-1": dict(widths=(2, 2, 1), activation="relu_p", power=2, pattern=[("10",), ("11",)]),
    "relu^3-2-2-1": dict(widths=(2, 2, 1), activation="relu_p", power=3, pattern=[("10",), ("11",)]),
    "relu^2-1-2-1-1": dict(widths=(1, 2, 1, 1), activation="relu_p", power=2, pattern=[("11", "1"), ("01", "1")]),
}
BROKEN = {  # each breaks homogeneity in layer 0
    "bias": dict(widths=(2, 3, 1), bias=True, pattern=TWO_SAMPLES_1),
    "tanh": dict(widths=(2, 2, 1), activation="tanh", samples=2),
    "residual": dict(widths=(2, 2, 1), residual=True, pattern=[("10",), ("11",)]),
}


@functools.cache
def _net(name):
    return symbolic_network(**{**HOMOGENEOUS, **BROKEN}[name])


def _pairs(names):
    return [(n, k) for n in names for k in range(len(_net(n).weights) - 1)]


def _disproved(expr):
    return not prove(expr) and any(v != 0 for v in witness(expr))


@pytest.mark.parametrize("name", HOMOGENEOUS)
def test_euler_identity_every_layer(name):
    net = _net(name)
    assert net.homogeneous
    for k in range(len(net.weights)):
        assert prove(euler_residual(net, k)), (name, k)


@pytest.mark.parametrize(("name", "layer"), _pairs(HOMOGENEOUS))
def test_gradient_flow_conserves_layer_and_neuron_gaps(name, layer):
    net = _net(name)
    assert prove(balance_rate(net, layer))
    for i in range(net.weights[layer].rows):
        assert prove(balance_rate(net, layer, neuron=i)), i


@pytest.mark.parametrize(("name", "layer"), _pairs(HOMOGENEOUS))
def test_gradient_step_moves_gap_by_eta_squared_gradient_gap(name, layer):
    net = _net(name)
    residual, _ = discrete_balance_residual(net, layer)
    assert prove(residual)
    assert prove(discrete_balance_residual(net, layer, neuron=0)[0])


def test_degrees_are_powers_of_p_after_the_layer():
    assert _net("relu^2-1-2-1-1").degrees == (4, 2, 1)
    assert _net("relu^3-2-2-1").degrees == (3, 1)
    assert _net("relu-2-3-2-1").degrees == (1, 1, 1)


@pytest.mark.parametrize("name", BROKEN)
def test_broken_homogeneity_fails_every_identity(name):
    net = _net(name)
    assert not net.homogeneous
    assert _disproved(euler_residual(net, 0))
    assert _disproved(balance_rate(net, 0))
    assert _disproved(balance_rate(net, 0, neuron=0))
    assert _disproved(discrete_balance_residual(net, 0)[0])


def test_wrong_degree_fails():
    relu, relu2 = _net("relu-2-3-1"), _net("relu^2-2-2-1")
    assert _disproved(euler_residual(relu, 0, degree=2))
    assert _disproved(euler_residual(relu2, 0, degree=1))
    assert _disproved(balance_rate(relu2, 0, power=1))  # the plain gap is not conserved for ReLU^2
    assert _disproved(discrete_balance_residual(relu2, 0, power=1)[0])


def test_witness_is_exact_for_polynomial_residuals():
    values = witness(euler_residual(_net("relu-2-3-1"), 0, degree=2), seed=3)
    assert all(v.is_Rational for v in values) and any(v != 0 for v in values)


@pytest.mark.parametrize(("kwargs", "needle"), [
    (dict(widths=(2, 3, 2)), "ending in 1"),
    (dict(widths=(2, 3, 1), activation="gelu"), "activation in"),
    (dict(widths=(2, 3, 1), activation="tanh", pattern=TWO_SAMPLES_1), "pattern only"),
    (dict(widths=(2, 3, 1), pattern=[("10",)]), "mask of length 3"),
    (dict(widths=(2, 3, 2, 1), pattern=TWO_SAMPLES_1), "2 hidden-layer masks"),
    (dict(widths=(2, 3, 1), residual=True), "square hidden layer"),
])
def test_bad_input_names_expected_and_fix(kwargs, needle):
    with pytest.raises(InvalidArgument, match=needle) as info:
        symbolic_network(**kwargs)
    assert "Fix:" in str(info.value)


def test_bad_layer_or_neuron_raises():
    net = _net("relu-2-3-1")
    with pytest.raises(InvalidArgument, match="0-based"):
        balance_rate(net, 1)
    with pytest.raises(InvalidArgument, match="neuron"):
        balance_rate(net, 0, neuron=3)


def test_importing_theorycheck_does_not_load_sympy():
    code = "import sys, theorycheck; assert 'sympy' not in sys.modules, 'sympy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
