"""Unit tests and negative controls for the homogeneity checker."""

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.devices import dtype_of
from theorycheck.models import NetworkSpec, build_network

HOMOGENEOUS = {
    "mlp-relu": NetworkSpec(widths=(8, 6)),
    "mlp-leaky": NetworkSpec(widths=(5,), activation="leaky_relu"),
    "mlp-relu3": NetworkSpec(widths=(5, 4), activation="relu_p", power=3.0),
    "linear": NetworkSpec(family="linear", widths=(3, 3)),
    "cnn-max": NetworkSpec(family="cnn", in_shape=(2, 6, 6), widths=(3, 4), pooling="max"),
    "cnn-avg": NetworkSpec(family="cnn", in_shape=(1, 5, 5), widths=(2,), pooling="avg"),
}
CONTROLS = {  # spec, expected status, the assumption or layer the verdict must name
    "bias": (NetworkSpec(bias=True), "vacuous", "no bias parameters"),
    "tanh": (NetworkSpec(activation="tanh"), "vacuous", "Tanh"),
    "gelu": (NetworkSpec(activation="gelu"), "vacuous", "GELU"),
    "batchnorm": (NetworkSpec(batchnorm=True), "vacuous", "BatchNorm1d"),
    "residual": (NetworkSpec(widths=(4, 4), in_shape=(4,), residual=True), "violated", "0.inner.0.weight"),
}


def _instance(spec, device, dtype, seed=0, batch=16):
    dtype = dtype_of(dtype)
    model = build_network(spec, seed=seed, device=device, dtype=dtype)
    x = torch.randn(batch, *spec.in_shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)
    return model, x


@pytest.mark.parametrize("name", HOMOGENEOUS)
def test_homogeneous_families_hold(name, tc_device, tc_dtype):
    model, x = _instance(HOMOGENEOUS[name], tc_device, tc_dtype)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic <= verdict.tolerance
    assert verdict.device.startswith(tc_device) and verdict.dtype == tc_dtype
    for layer, degree in zip(verdict.details["layers"].values(), HOMOGENEOUS[name].degrees()):
        assert layer["degree_inferred"] == pytest.approx(degree, rel=1e-3)


@pytest.mark.parametrize("name", CONTROLS)
def test_negative_controls_do_not_hold(name, tc_device, tc_dtype):
    spec, expected, named = CONTROLS[name]
    model, x = _instance(spec, tc_device, tc_dtype)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == expected, verdict.summary()
    assert not verdict.conclusion_held
    assert named in verdict.summary()
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] homogeneity: " + expected):
        tc.assert_homogeneity(model, x)


def test_user_module_with_functional_tanh_is_violated():
    """A custom forward the module scan cannot see through is still caught by the identity."""

    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 5, bias=False)
            self.b = nn.Linear(5, 1, bias=False)

        def forward(self, x):
            return self.b(torch.tanh(self.a(x)))

    model = Custom().double()
    verdict = tc.check_homogeneity(model, torch.randn(8, 3, dtype=torch.float64))
    assert verdict.status == "violated"
    assert verdict.details["offending_layers"] == ["a.weight"]


def test_declared_degrees_are_checked():
    model, x = _instance(NetworkSpec(widths=(4,), activation="relu_p", power=2.0), "cpu", "float64")
    assert tc.check_homogeneity(model, x).status == "holds"
    verdict = tc.check_homogeneity(model, x, degrees=[1, 1])
    assert verdict.status == "violated"
    assert verdict.details["offending_layers"] == ["0.0.weight"]


def test_batchnorm_buffers_are_not_changed():
    model, x = _instance(NetworkSpec(batchnorm=True), "cpu", "float64")
    before = {n: b.clone() for n, b in model.named_buffers()}
    tc.check_homogeneity(model, x)
    assert all(torch.equal(before[n], b) for n, b in model.named_buffers())


def test_dead_network_is_inconclusive():
    model, x = _instance(NetworkSpec(), "cpu", "float64")
    with torch.no_grad():
        model[-1].weight.zero_()
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "inconclusive" and "outputs 0" in verdict.reason


def test_overflow_is_inconclusive():
    model, x = _instance(NetworkSpec(), "cpu", "float32")
    verdict = tc.check_homogeneity(model, x * 1e38)
    assert verdict.status == "inconclusive" and "non-finite" in verdict.reason


def test_no_weights_is_vacuous():
    verdict = tc.check_homogeneity(nn.Sequential(nn.PReLU()).double(), torch.randn(2, 3, dtype=torch.float64))
    assert verdict.status == "vacuous" and verdict.assumptions["weight layers found"] is False


@pytest.mark.parametrize("bad, message", [
    (lambda x: x.numpy(), "expected x as a torch.Tensor, but got ndarray"),
    (lambda x: x.float(), "expected x on the model's cpu / torch.float64"),
    (lambda x: x[0], "expected x with a batch dimension"),
])
def test_bad_input_names_expected_received_fix(bad, message):
    model, x = _instance(NetworkSpec(), "cpu", "float64")
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        tc.check_homogeneity(model, bad(x))
    assert message in str(info.value)


def test_verdict_round_trips_through_json():
    import json

    model, x = _instance(NetworkSpec(), "cpu", "float64")
    verdict = tc.check_homogeneity(model, x)
    data = json.loads(json.dumps(verdict.to_dict()))
    assert tc.Verdict.from_dict(data).to_dict() == data


def test_underflowing_samples_are_set_aside_not_judged():
    """ReLU^3 five layers deep in float32: f has degree 81 in the first layer and underflows."""
    spec = NetworkSpec(in_shape=(6,), widths=(11, 10, 5, 9), activation="relu_p", power=3.0)
    model, x = _instance(spec, "cpu", "float32", seed=822757814, batch=8)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status in ("holds", "inconclusive"), verdict.summary()
    assert verdict.details["samples_set_aside_for_underflow"] + verdict.details["batch"] > 0
    model, x = _instance(NetworkSpec(), "cpu", "float32")
    subnormal = tc.check_homogeneity(model, x * 1e-39)  # below float32's smallest normal number
    assert subnormal.status == "inconclusive" and "underflow" in subnormal.reason
