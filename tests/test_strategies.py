"""Strategies: options take values or strategies; failures shrink to small networks."""

import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.generate.models import NetworkSpec
from theorycheck.generate.sampling import case_rng, random_spec
from theorycheck.generate.specs import BREAKS
from theorycheck.generate.strategies import classification_data, network_specs, networks


@given(network_specs(family="mlp", depth=st.integers(2, 3), width=4))
def test_values_and_strategies_are_both_accepted(spec):
    assert spec.family == "mlp" and len(spec.widths) in (2, 3) and set(spec.widths) == {4}
    assert spec.homogeneous


@given(network_specs(breaks=st.sampled_from(BREAKS)))
def test_breaks_give_non_homogeneous_specs(spec):
    assert not spec.homogeneous


def test_failing_examples_shrink_to_small_networks():
    smallest = find(network_specs(), lambda spec: spec.depth >= 3)
    assert smallest.widths == (1, 1) and smallest.activation == "relu" and smallest.family == "mlp"


@given(networks(family="cnn", dtype="float32"))
def test_networks_build_the_drawn_spec(drawn):
    spec, seed, module = drawn
    assert spec.family == "cnn" and next(module.parameters()).dtype.is_floating_point


@given(classification_data())
def test_datasets_have_pm1_labels(data):
    assert set(data.y.unique().tolist()) <= {-1.0, 1.0} and len(data.X) == len(data.y)


def test_bad_options_are_explained():
    with pytest.raises(tc.InvalidArgument, match="expected breaks in .*got breaks='dropout'"):
        find(network_specs(breaks="dropout"), lambda s: True)
    with pytest.raises(tc.InvalidArgument, match="expected activation in"):
        NetworkSpec(activation="swish")


def test_audit_sampling_is_reproducible():
    assert random_spec(case_rng(1, "c", 2)) == random_spec(case_rng(1, "c", 2))
    assert random_spec(case_rng(1, "c", 2), breaks="bias").bias
