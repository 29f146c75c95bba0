"""Property: every generated bias-free ReLU-type network is positively homogeneous in each layer;
every generated network with a homogeneity-breaking change is reported as not holding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.claims.homogeneity import kit as homogeneity_kit
from theorycheck.generate.models import build_network
from theorycheck.generate.specs import BREAKS
from theorycheck.generate.strategies import inputs, network_specs

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@given(data=st.data())
def test_homogeneous_networks_hold(data, tc_device, tc_dtype):
    """Drawn from the claim's own generator, the one the audit draws its instances from."""
    params = data.draw(homogeneity_kit.strategy(tc_device, tc_dtype))
    verdict = homogeneity_kit.instance_of(params, device=tc_device, dtype=tc_dtype)
    if verdict.status == "inconclusive":  # a dead ReLU network outputs 0 everywhere: nothing to test
        assert "outputs 0" in verdict.reason
        return
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {params!r}"


@given(data=st.data(), spec=network_specs(breaks=st.sampled_from(BREAKS)), seed=st.integers(0, 2**16))
def test_broken_networks_do_not_hold(data, spec, seed, tc_device, tc_dtype):
    from theorycheck.core.devices import dtype_of

    model = build_network(spec, seed=seed, device=tc_device, dtype=dtype_of(tc_dtype))
    x = data.draw(inputs(spec, batch=st.integers(2, 16), device=tc_device, dtype=tc_dtype))
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status != "holds", verdict.summary()
    if not spec.residual:  # the structural assumption that broke is named
        assert verdict.status in ("vacuous", "inconclusive")


@given(data=st.data(), spec=network_specs(), seed=st.integers(0, 2**16))
def test_euler_sums_agree_with_the_jacrev_reference(data, spec, seed, tc_device, tc_dtype):
    """The hook path gives the old per-layer Jacobian's Euler sums to roundoff on every generated net."""
    import importlib.util
    import pathlib

    from theorycheck.core.devices import dtype_of, gamma
    from theorycheck.engines.euler import euler_sums

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_homogeneity.py"
    module_spec = importlib.util.spec_from_file_location("bench_homogeneity", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    model = build_network(spec, seed=seed, device=tc_device, dtype=dtype_of(tc_dtype))
    x = data.draw(inputs(spec, device=tc_device, dtype=tc_dtype))
    params = {n: p.detach() for n, p in model.named_parameters()}
    names = list(params)
    sums = euler_sums(model, params, {}, names, x)
    euler, absolute = bench.jacrev_sums(model, x, names)
    k = 2 * sum(p.numel() for p in params.values()) + 2 * max(sums.reduction.values())
    for n in names:
        assert bool(((sums.euler[n] - euler[n]).abs() <= gamma(k, x.dtype) * absolute[n]).all()), n
        assert bool((sums.absolute[n] >= absolute[n] * (1 - gamma(k, x.dtype))).all()), n
    assert sums.method == "hooks"
