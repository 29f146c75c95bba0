"""Unit tests and negative controls for the homogeneity checker."""

import math

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.core.devices import dtype_of
from theorycheck.generate.models import NetworkSpec, build_network

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
    model = Functional(torch.tanh, 5, inputs=3).double()
    verdict = tc.check_homogeneity(model, torch.randn(8, 3, dtype=torch.float64))
    assert verdict.status == "violated"
    assert verdict.details["offending_layers"] == ["hidden.weight"]


class _StandardizedLinear(nn.Linear):
    """A Linear subclass standardizing its weight in forward: degree 0 in that weight, though typed a Linear."""

    def forward(self, x):
        w = self.weight
        return nn.functional.linear(x, (w - w.mean()) / w.std(), self.bias)


def test_linear_subclass_transforming_its_weight_is_violated():
    """The module scan reads the subclass as a Linear; the scaling identity still finds degree 0 there."""
    torch.manual_seed(0)
    model = nn.Sequential(_StandardizedLinear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False)).double()
    verdict = tc.check_homogeneity(model, torch.randn(8, 3, dtype=torch.float64))
    assert verdict.status == "violated"
    assert verdict.details["offending_layers"] == ["0.weight"]


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


# --- (a) Euler sums in O(batch x parameters), against the old per-layer jacrev Jacobian -----------

def _reference():
    """The old jacrev computation, kept in the benchmark as the reference."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "bench_homogeneity.py"
    spec = importlib.util.spec_from_file_location("bench_homogeneity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.jacrev_sums


class Functional(nn.Module):
    """Bias-free MLP with an activation applied functionally in forward (the module scan cannot see it)."""

    def __init__(self, activation, width, inputs=10, outputs=1):
        super().__init__()
        self.activation = activation
        self.hidden = nn.Linear(inputs, width, bias=False)
        self.out = nn.Linear(width, outputs, bias=False)

    def forward(self, x):
        return self.out(self.activation(self.hidden(x)))


class Shared(Functional):
    """The hidden Linear applied twice (weight sharing) on a (batch, positions, features) input."""

    def __init__(self):
        super().__init__(torch.relu, 4, inputs=4, outputs=2)

    def forward(self, x):
        return super().forward(self.activation(self.hidden(x))).sum(1)


SUM_CASES = {
    "mlp": lambda: build_network(NetworkSpec(widths=(8, 6), out_dim=3)),
    "relu3": lambda: build_network(NetworkSpec(widths=(5, 4), activation="relu_p", power=3.0)),
    "cnn-max": lambda: build_network(NetworkSpec(family="cnn", in_shape=(2, 6, 6), widths=(3, 4), pooling="max")),
    "shared-sequence": lambda: Shared().double(),
    "batchnorm-train": lambda: build_network(NetworkSpec(batchnorm=True)),
}
SUM_INPUTS = {"shared-sequence": (3, 4), "cnn-max": (2, 6, 6), "mlp": (4,), "relu3": (4,), "batchnorm-train": (4,)}


@pytest.mark.parametrize("name", SUM_CASES)
def test_euler_sums_match_the_jacrev_reference(name, tc_device, tc_dtype):
    from theorycheck.core.devices import gamma
    from theorycheck.engines.euler import euler_sums

    dtype = dtype_of(tc_dtype)
    torch.manual_seed(1)
    model = SUM_CASES[name]().to(tc_device, dtype)
    x = torch.randn(7, *SUM_INPUTS[name], dtype=dtype).to(tc_device)
    names = [n for n, _ in model.named_parameters() if n.endswith("weight") and _.ndim >= 2]
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    sums = euler_sums(model, params, buffers, names, x)
    euler, absolute = _reference()(model, x, names)
    assert (sums.method == "hooks") == (name != "batchnorm-train"), sums.method
    for n in names:
        # both are sums of the same terms: they differ by roundoff, gamma_K of the absolute terms
        k = 2 * (sum(params[m][0].numel() + params[m][:, 0].numel() for m in names) + sums.reduction[n])
        bound = gamma(k, dtype) * absolute[n]
        assert ((sums.euler[n] - euler[n]).abs() <= bound).all()
        # |delta|^T |W| |a| sums the absolute terms before positions are added: never below sum|W g|
        assert (sums.absolute[n] >= absolute[n] * (1 - gamma(k, dtype))).all()
        if name in ("mlp", "relu3", "batchnorm-train"):  # one position: the same terms
            assert ((sums.absolute[n] - absolute[n]).abs() <= bound).all()


def test_weight_used_outside_its_module_falls_back_and_says_why():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Linear(4, 6, bias=False)

        def forward(self, x):
            return torch.relu(self.enc(x)) @ self.enc.weight @ torch.ones(4, 1, dtype=x.dtype)

    model, x = Tied().double(), torch.randn(5, 4, dtype=torch.float64)
    verdict = tc.check_homogeneity(model, x, degrees=[2])
    assert verdict.status == "holds", verdict.summary()
    assert "used outside its module" in verdict.details["euler_method"]
    assert "Euler sums by per-output backward passes" in verdict.reason


def test_wide_layer_keeps_the_whole_batch():
    """Width 1024: the old path held a batch x 1M Jacobian and cut the batch to 47 silently."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024, bias=False), nn.ReLU(), nn.Linear(1024, 1, bias=False)).double()
    verdict = tc.check_homogeneity(model, torch.randn(64, 1024, dtype=torch.float64))
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["batch"] == 64 and verdict.details["euler_method"] == "hooks"


# --- (b) float32 decided on the float64 copy: smooth activations cannot hide in float32 roundoff --

SMOOTH = {"tanh": torch.tanh, "silu": nn.functional.silu, "gelu": nn.functional.gelu,
          "softplus": nn.functional.softplus, "relu+0.01": lambda z: torch.relu(z) + 0.01,
          "F.tanh": nn.functional.tanh}
HOMOGENEOUS_FUNCTIONS = {"relu": torch.relu, "leaky": lambda z: nn.functional.leaky_relu(z, 0.1),
                         "linear": lambda z: z}


def _functional(activation, width, dtype, scale=1.0, device="cpu"):
    torch.manual_seed(width)
    model = Functional(activation, width).to(device, dtype_of(dtype))
    return model, scale * torch.randn(8, 10, dtype=dtype_of(dtype)).to(device)


@pytest.mark.parametrize("width", [16, 256, 1024])
@pytest.mark.parametrize("name", [*SMOOTH, *HOMOGENEOUS_FUNCTIONS])
def test_smooth_activations_are_violated_homogeneous_ones_hold(name, width, tc_device, tc_dtype):
    model, x = _functional({**SMOOTH, **HOMOGENEOUS_FUNCTIONS}[name], width, tc_dtype, device=tc_device)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.details["tolerances"]["euler"] < 1e-12  # float64 roundoff, whatever the model's dtype
    if name in SMOOTH:
        assert verdict.status == "violated", verdict.summary()
        assert "hidden.weight" in verdict.details["offending_layers"]
        return
    assert verdict.status == "holds", verdict.summary()
    if tc_dtype == "float32":
        assert verdict.details["model_forward"]["error"] <= verdict.details["model_forward"]["bound"]


@pytest.mark.parametrize("width", [16, 256])
def test_max_pool_network_holds_at_width(width, tc_device, tc_dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, width, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(width * 9, 1, bias=False)).to(tc_device, dtype_of(tc_dtype))
    verdict = tc.check_homogeneity(model, torch.randn(4, 2, 6, 6, dtype=dtype_of(tc_dtype)).to(tc_device))
    assert verdict.status == "holds", verdict.summary()


def test_tanh_deviation_far_below_float32_epsilon_is_caught():
    """tanh(z) = z (1 - z^2/3 + ...): inputs of size 1e-4 make f 1e-9 relatively off homogeneous, a
    sixtieth of float32's epsilon; the float64 copy still sees it."""
    model, x = _functional(torch.tanh, 256, "float32", scale=1e-4)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "violated", verdict.summary()
    assert verdict.details["layers"]["hidden.weight"]["euler_relative_to_f"] < torch.finfo(torch.float32).eps


def test_float32_pass_that_departs_from_its_float64_copy_is_inconclusive():
    class Float32Only(Functional):
        def forward(self, x):
            h = torch.relu(self.hidden(x))
            return self.out(h * (1 + 1e-3) if x.dtype == torch.float32 else h)

    model = Float32Only(torch.relu, 8, inputs=4)
    verdict = tc.check_homogeneity(model, torch.randn(6, 4))
    assert verdict.status == "inconclusive" and "differs from its float64 copy" in verdict.reason
    assert tc.check_homogeneity(model.double(), torch.randn(6, 4, dtype=torch.float64)).status == "holds"


# --- (c) several scales ----------------------------------------------------------------------------

THRESHOLDED = {"relu6": nn.functional.relu6, "clamp": lambda z: torch.clamp(z, -3.0, 3.0),
               "hardtanh": lambda z: nn.functional.hardtanh(z, -3.0, 3.0)}


@pytest.mark.parametrize("name", THRESHOLDED)
def test_thresholds_above_the_inputs_are_caught_at_large_scales(name, tc_device, tc_dtype):
    model, x = _functional(THRESHOLDED[name], 16, tc_dtype, scale=0.1, device=tc_device)  # every |z| well under the threshold
    assert float(nn.functional.linear(x, model.hidden.weight.detach()).abs().max()) < 3.0
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "violated", verdict.summary()
    scalings = verdict.details["layers"]["hidden.weight"]["scalings"]
    assert scalings["2.0"]["residual"] <= scalings["2.0"]["tolerance"]  # a = 2 alone would pass it
    assert scalings["1000.0"]["residual"] > scalings["1000.0"]["tolerance"]
    assert verdict.details["scales"] == [1e-3, 0.5, 2.0, 1e3] and "scales_reason" in verdict.details


def test_dead_zone_below_the_inputs_is_caught_at_small_scales(tc_device, tc_dtype):
    model, x = _functional(torch.relu, 16, tc_dtype, device=tc_device)
    dead_zone = 0.5 * float(nn.functional.linear(x, model.hidden.weight.detach()).abs().min())  # under every |z|
    model.activation = lambda z: nn.functional.hardshrink(z, dead_zone)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "violated", verdict.summary()
    scalings = verdict.details["layers"]["hidden.weight"]["scalings"]
    assert scalings["0.001"]["residual"] > scalings["0.001"]["tolerance"]
    assert scalings["1000.0"]["residual"] <= scalings["1000.0"]["tolerance"]


# --- (d) parameters read by role -------------------------------------------------------------------

def test_frozen_bias_is_reported_not_hidden(tc_device, tc_dtype):
    model, x = _instance(NetworkSpec(bias=True), tc_device, tc_dtype)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.bias.requires_grad_(False)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "vacuous" and verdict.assumptions["no bias parameters"] is False
    assert "frozen, requires_grad=False" in verdict.reason and "0.0.bias" in verdict.details["frozen_parameters"]


def test_frozen_weight_is_still_checked_and_reported(tc_device, tc_dtype):
    model, x = _instance(NetworkSpec(widths=(6,)), tc_device, tc_dtype)
    model[0][0].weight.requires_grad_(False)
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "holds", verdict.summary()
    assert "0.0.weight" in verdict.details["layers"] and "frozen weight layers" in verdict.reason


class Custom(nn.Module):
    """Parameters under names no rule can rely on: a kernel, a scalar gain, and optionally a shift."""

    def __init__(self, shift=False, activation=torch.relu):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 6) / 2)
        self.gain = nn.Parameter(torch.tensor(1.7))
        self.readout = nn.Linear(6, 1, bias=False)
        self.shift = nn.Parameter(torch.full((6,), 0.3)) if shift else None
        self.activation = activation

    def forward(self, x):
        h = self.gain * (x @ self.kernel)
        return self.readout(self.activation(h + self.shift if self.shift is not None else h))


def test_parameters_are_read_by_role_not_by_name(tc_device, tc_dtype):
    torch.manual_seed(0)
    dtype = dtype_of(tc_dtype)
    x = torch.randn(8, 4, dtype=dtype).to(tc_device)
    verdict = tc.check_homogeneity(Custom().to(tc_device, dtype), x)
    assert verdict.status == "holds", verdict.summary()
    assert set(verdict.details["layers"]) == {"kernel", "gain", "readout.weight"}  # the gain is no bias
    shifted = tc.check_homogeneity(Custom(shift=True).to(tc_device, dtype), x)
    # with the shift, f is no longer 0 at kernel = 0 or gain = 0: none of the three is a weight
    assert shifted.status == "vacuous" and shifted.details["non_weight_parameters"] == ["gain", "kernel", "shift"]
    assert shifted.details["parameter_roles"]["shift"].startswith("additive offset")
    assert shifted.details["parameter_roles"]["kernel"].startswith("not homogeneous")
    broken = tc.check_homogeneity(Custom(activation=torch.tanh).to(tc_device, dtype), x)
    assert broken.status == "violated" and "kernel" in broken.details["offending_layers"]


@pytest.mark.parametrize("module", [nn.Dropout(0.5), nn.RReLU()])
def test_training_mode_randomness_asks_for_eval(module, tc_device, tc_dtype):
    model, x = _instance(NetworkSpec(widths=(8,)), tc_device, tc_dtype)
    model = nn.Sequential(model[0], module, model[1])
    state = torch.random.get_rng_state()
    verdict = tc.check_homogeneity(model.train(), x)
    assert verdict.status == "vacuous" and "model.eval()" in verdict.reason
    assert torch.equal(state, torch.random.get_rng_state())
    assert tc.check_homogeneity(model.eval(), x).status == "holds"


def test_randomness_no_module_scan_knows_is_measured(tc_device, tc_dtype):
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 8, bias=False)

        def forward(self, x):
            return self.a(x) * (1 + 0.1 * torch.rand_like(x[:, :1]))

    verdict = tc.check_homogeneity(Noisy().to(tc_device, dtype_of(tc_dtype)),
                                   torch.randn(5, 4, dtype=dtype_of(tc_dtype)).to(tc_device))
    assert verdict.status == "vacuous" and "two identical forward passes differ" in verdict.reason


def test_read_parameters_without_inputs_keeps_its_shape_rule():
    from theorycheck.core.modules import read_parameters

    found = read_parameters(Custom(shift=True))
    assert list(found.weights) == ["kernel", "readout.weight"] and sorted(found.others) == ["gain", "shift"]



def test_the_measurement_the_engines_use_agrees_with_the_claims_verdict():
    """The Recorder reads ``measure_homogeneity(...).homogeneous``: on instances of every
    status it says what the claim's verdict says (holds: True, inconclusive: None, else False), same numbers."""
    from theorycheck.engines.homogeneity import measure_homogeneity

    cases = {name: _instance(spec, "cpu", "float64") for name, (spec, _, _) in CONTROLS.items()}
    cases |= {name: _instance(spec, "cpu", "float64") for name, spec in HOMOGENEOUS.items()}
    dead, x = _instance(NetworkSpec(), "cpu", "float64")
    with torch.no_grad():
        dead[-1].weight.zero_()
    cases["dead"] = (dead, x)
    cases["no-weights"] = (nn.Sequential(nn.PReLU()).double(), torch.randn(2, 3, dtype=torch.float64))
    statuses = set()
    for name, (model, x) in cases.items():
        verdict, measured = tc.check_homogeneity(model, x), measure_homogeneity(model, x)
        statuses.add(verdict.status)
        said = {"holds": True, "inconclusive": None}.get(verdict.status, False)
        assert measured.homogeneous is said, (name, verdict.summary(), measured.summary())
        assert measured.statistic == verdict.statistic or math.isnan(verdict.statistic), name
    assert statuses == {"holds", "violated", "vacuous", "inconclusive"}


# --- (c') thresholds outside the fixed scales: the sweep follows the pre-activations' own magnitudes --------

class _DeadZone(nn.Module):
    """A user's activation: ReLU with a dead zone at |z| < 1e-9 (a "numerically safe" ReLU)."""

    def forward(self, z):
        return torch.where(z.abs() < 1e-9, torch.zeros_like(z), torch.relu(z))


class _OwnNet(nn.Module):
    def __init__(self, activation, depth=2, width=12, inputs=6):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(inputs if k == 0 else width, width, bias=False) for k in range(depth)])
        self.act = activation
        self.head = nn.Linear(width, 1, bias=False)

    def forward(self, x):
        for layer in self.layers:
            x = self.act(layer(x))
        return self.head(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("as_module", [False, True])
def test_relu6_on_tiny_inputs_is_violated(dtype, as_module):
    """relu6 on inputs x 1e-4: every pre-activation is ~1e-4, the fixed scales (a <= 1e3) never reach 6;
    the per-layer sweep does. Applied functionally the module scan cannot see it: the identities alone make it
    violated; as an nn.ReLU6 module it is also named (vacuous), with the same failing identities."""
    torch.manual_seed(2)
    model = _OwnNet(nn.ReLU6() if as_module else nn.functional.relu6).to(dtype_of(dtype))
    x = 1e-4 * torch.randn(16, 6, dtype=dtype_of(dtype))
    with torch.no_grad():
        assert float(model.layers[0](x).abs().max()) * 1e3 < 6.0
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == ("vacuous" if as_module else "violated"), verdict.summary()
    assert verdict.details["offending_layers"] and verdict.statistic > 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dead_zone_at_1e_minus_9_is_violated(dtype):
    """Pre-activations of order 1 leave a dead zone at 1e-9 untouched down to a = 1e-3; the sweep to
    a |z| ~ 1e-15 enters it."""
    torch.manual_seed(3)
    model = _OwnNet(_DeadZone()).to(dtype_of(dtype))
    x = torch.randn(16, 6, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "violated", verdict.summary()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_plain_relu_still_holds_across_the_sweep(dtype, scale):
    torch.manual_seed(4)
    model = _OwnNet(nn.ReLU(), depth=3).to(dtype_of(dtype))
    x = scale * torch.randn(16, 6, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "holds", verdict.summary()
    for name, scales in verdict.details["layer_scales"].items():
        assert min(scales) < 1e-9 and max(scales) > 1e9, name  # the sweep spans many orders of magnitude
