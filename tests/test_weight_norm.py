"""Unit tests and negative controls for weight_norm (WN == Lagrange-constrained flow; Lagrange V' =
rho_k^2 x unconstrained V'), with the identities derived once in sympy."""

import pytest
import torch

import theorycheck as tc
from theorycheck.claims.weight_norm import WeightNormCase, flows


def test_identities_in_sympy():
    """Exact algebra on f(x) = a W x (hidden 2; a ReLU net on a fixed active pattern) with exp loss, the layers on
    the unit circle through a rational parameterization: V'(Lagrange, lambda = rho e y f / 2) = rho_1^2
    V'(unconstrained), and WN's u' = V'(Lagrange) / ||v||^2 (||v|| = 1 and 3)."""
    sp = pytest.importorskip("sympy")
    s, t = sp.symbols("s t", real=True)
    x, y, r1, r2, g, N = sp.symbols("x y rho1 rho2 g N", positive=True)
    unit = lambda z: [2 * z / (1 + z ** 2), (1 - z ** 2) / (1 + z ** 2)]  # noqa: E731
    V, A = sp.Matrix(2, 1, unit(s)), sp.Matrix(1, 2, unit(t))
    w, a = sp.Matrix(2, 1, sp.symbols("w0:2")), sp.Matrix(1, 2, sp.symbols("a0:2"))
    f = lambda W, B: (B * W)[0] * x  # noqa: E731
    grad = lambda expr, M: M.applyfunc(lambda z: sp.diff(expr, z))  # noqa: E731
    point = {**dict(zip(w, V)), **dict(zip(a, A))}
    e = sp.exp(-r1 * r2 * y * f(w, a))
    lagrange = (-grad(e, w) - r1 * r2 * e * y * f(w, a) * w).subs(point)
    E = e.subs(point)
    vanishes = lambda M: all(sp.cancel(sp.expand(z / E)) == 0 for z in M)  # noqa: E731
    W_dot = (-grad(sp.exp(-y * f(w, a)), w)).subs({**dict(zip(w, r1 * V)), **dict(zip(a, r2 * A))})
    assert vanishes(lagrange - r1 ** 2 * (W_dot - V * (V.T * W_dot)[0]) / r1)
    v_dot = -grad(sp.exp(-y * f(g * w / sp.sqrt(w[0] ** 2 + w[1] ** 2), r2 * a)), w)
    for k in (1, 3):
        at = v_dot.subs(w[0] ** 2 + w[1] ** 2, N ** 2).subs({**dict(zip(w, k * V)), **dict(zip(a, A)), g: r1}).subs(N, k)
        assert vanishes((at - V * (V.T * at)[0]) / k - lagrange / k ** 2)


@pytest.mark.parametrize("loss", ["exp", "logistic"])
def test_weight_norm_is_the_lagrange_flow(loss, tc_device, tc_dtype):
    case = WeightNormCase(widths=(4, 6, 5, 1), rhos=(1.7, 0.6, 1.3), n=10, loss=loss, seed=3)
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic < 0.1
    for row in verdict.details["layers"].values():  # the rho_k^2 factor, seen on the norms
        assert row["norm_ratio_lagrange_unconstrained"] == pytest.approx(row["rho_k"] ** 2, rel=1e-4)


def test_torch_weight_norm_parametrization_agrees():
    """torch.nn.utils.parametrizations.weight_norm (dim=None: the Frobenius norm) gives the same u' and g'."""
    case = WeightNormCase(widths=(3, 4, 1), rhos=(1.4, 0.8), n=6, seed=1)
    model = case.model("cpu", "float64")
    gen = torch.Generator().manual_seed(9)
    X = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (6,), generator=gen).double() * 2 - 1
    layers = flows(model, X, y)["layers"]
    wn = torch.nn.utils.parametrizations.weight_norm(model[0], dim=None)
    g, v = wn.parametrizations.weight.original0, wn.parametrizations.weight.original1
    with torch.no_grad():
        v.div_(v.norm())
    torch.exp(-y * model(X).squeeze(1)).sum().backward()
    u_dot = (-v.grad - v * (v * -v.grad).sum()) / v.norm()
    torch.testing.assert_close(u_dot, layers["0.weight"]["lagrange"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(-g.grad.reshape(()), layers["0.weight"]["lagrange_rho_dot"], rtol=1e-12, atol=1e-14)


# --- negative controls ---------------------------------------------------------------------------

@pytest.mark.parametrize("control, expected, words", [
    ("v-norm-3", "violated", "||v||^2"), ("scale-without-constraint", "violated", "radial"),
    ("bias", "vacuous", "bias"), ("tanh", "vacuous", "not homogeneous")])
def test_controls(control, expected, words, tc_device, tc_dtype):
    case = WeightNormCase(widths=(4, 6, 1), rhos=(1.8, 0.5), n=8, seed=5, control=control)
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == expected and not verdict.conclusion_held, verdict.summary()
    assert words in verdict.reason
    if control == "v-norm-3":  # u' is the Lagrange V' / 9
        row = next(iter(verdict.details["layers"].values()))
        assert row["wn_vs_lagrange"] == pytest.approx(8 / 9 * row["lagrange_norm"], rel=1e-4)


def test_scale_control_is_resolved_in_float32_where_random_labels_cancel_R():
    """An unseen audit draw: with random labels R = sum_n e_n y_n f(V; x_n) nearly cancelled, and the control's
    radial part (3.8e-4) fell below float32's tolerance (4.1e-4): 'holds'. Its labels follow the network's signs."""
    case = WeightNormCase(widths=(8, 2, 1), rhos=(0.7994901048687801, 1.0322480386729118), n=4,
                          activation="leaky_relu", seed=789569138, control="scale-without-constraint")
    for dtype in ("float32", "float64"):
        verdict = case.verdict(dtype=dtype)
        assert verdict.status == "violated" and verdict.statistic > 10, verdict.summary()


def test_assert_raises_with_the_numbers():
    model = WeightNormCase(control="v-norm-3").model("cpu", "float64")
    X, y = torch.randn(5, 3, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] weight_norm: violated"):
        tc.assert_weight_norm(model, X, y, v_norm=3.0)


def test_underflow_and_dead_networks_are_inconclusive():
    model = WeightNormCase(rhos=(1.0, 1.0)).model("cpu", "float64")
    X = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():  # y_n f(x_n) >= 1e8 |f(x_n)|: every e_n = exp(-y_n f(x_n)) underflows to 0
        y = 1e8 * torch.sign(model(X).squeeze(1))
    verdict = tc.check_weight_norm(model, X, y)
    assert verdict.status == "inconclusive" and "underflow" in verdict.reason
    with torch.no_grad():
        model[2].weight.zero_()
        model[2].weight[0, 0] = 1.0
        model[0].weight[0] = -1e3 * X[0].abs().sum() * torch.ones(3)  # unit 0 dead on these inputs
    X = X.abs()
    assert tc.check_weight_norm(model, X, torch.ones(5, dtype=torch.float64)).status == "inconclusive"


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss="hinge"), "loss in"), (dict(parametrization="batchnorm"), "parametrization in"),
    (dict(v_norm=0.0), "v_norm > 0")])
def test_bad_input_raises(kwargs, message):
    model = WeightNormCase().model("cpu", "float64")
    X, y = torch.randn(5, 3, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    with pytest.raises(tc.InvalidArgument, match=message):
        tc.check_weight_norm(model, X, y, **kwargs)
    with pytest.raises(tc.InvalidArgument, match=r"one sample count across \['X', 'y'\].*X: 5, y: 2"):
        tc.check_weight_norm(model, X, y[:2])
    only_bias = torch.nn.Sequential(torch.nn.Flatten(0))
    only_bias.register_parameter("offset", torch.nn.Parameter(torch.zeros((), dtype=torch.float64)))
    with pytest.raises(tc.InvalidArgument, match="weight layers"):
        tc.check_weight_norm(only_bias, torch.randn(4, 1, dtype=torch.float64), torch.ones(4, dtype=torch.float64))


def test_audit_cases_meet_their_expectations():
    for case in tc.CLAIMS["weight_norm"].audit_cases(n=4, seed=1, device="cpu", dtype="float64"):
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
        assert "WeightNormCase(" in case.reproduce


class _SquaredReLU(torch.nn.Module):  # a user's activation: relu(z)^2, degree 2, not in any module list
    def forward(self, z):
        return torch.relu(z) ** 2


class _FunctionalTanh(torch.nn.Module):  # tanh inside forward, invisible to a module scan
    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(4, 6, bias=False), torch.nn.Linear(6, 1, bias=False)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


class _Skip(torch.nn.Module):  # x + g(x): the skip term has degree 0 in g's weights
    def __init__(self):
        super().__init__()
        self.inner, self.out = torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 1, bias=False)

    def forward(self, x):
        return self.out(x + torch.relu(self.inner(x)))


@pytest.mark.parametrize("make", [
    lambda: torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False), _SquaredReLU(), torch.nn.Linear(6, 1, bias=False)),
    _FunctionalTanh, _Skip], ids=["relu-squared", "functional-tanh", "residual-skip"])
def test_homogeneity_is_measured_not_read_from_module_types(make, tc_dtype):
    """Each of these breaks the 1-homogeneity the identities need in a way no module-type list sees:
    measured on X, the assumption is not met (vacuous), never a verdict on the flows (dropout in training
    mode: tests/test_batch_behaviour.py)."""
    torch.manual_seed(0)
    dtype = getattr(torch, tc_dtype)
    model = make().to(dtype)
    X, y = torch.randn(8, 4, dtype=dtype), torch.tensor([1.0, -1.0] * 4, dtype=dtype)
    verdict = tc.check_weight_norm(model, X, y)
    assert verdict.status == "vacuous" and "homogeneous" in " ".join(verdict.failed_assumptions), verdict.summary()


# --- layers other than Linear: convolutions and custom modules --------------------------------------

class _Kernel(torch.nn.Module):
    """A user's layer with its own weight (not a Linear): x -> x K^T / 2, read as a weight by measurement."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.kernel = torch.nn.Parameter(torch.randn(d_out, d_in))

    def forward(self, x):
        return x @ self.kernel.T / 2


def _conv_net(bias=False, activation=torch.nn.ReLU):
    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, bias=bias), activation(), torch.nn.Flatten(),
                               _Kernel(27, 4), activation(), torch.nn.Linear(4, 1, bias=False))


class _Reused(torch.nn.Module):  # one Linear applied twice: degree 2 in its weight
    def __init__(self):
        super().__init__()
        self.layer, self.out = torch.nn.Linear(4, 4, bias=False), torch.nn.Linear(4, 1, bias=False)

    def forward(self, x):
        return self.out(torch.relu(self.layer(torch.relu(self.layer(x)))))


def _images(dtype, n=6):
    X = torch.randn(n, 2, 5, 5, dtype=dtype)
    return X, torch.tensor([1.0, -1.0] * (n // 2), dtype=dtype)


def test_convolutions_and_custom_weights_follow_the_lagrange_flow(tc_dtype):
    torch.manual_seed(0)
    dtype = getattr(torch, tc_dtype)
    model = _conv_net().to(dtype)
    verdict = tc.check_weight_norm(model, *_images(dtype), loss="logistic")
    assert verdict.status == "holds", verdict.summary()
    assert set(verdict.details["layers"]) == {"0.weight", "3.kernel", "5.weight"}
    for row in verdict.details["layers"].values():
        assert row["norm_ratio_lagrange_unconstrained"] == pytest.approx(row["rho_k"] ** 2, rel=1e-3)
    scale = tc.check_weight_norm(model, *_images(dtype), v_norm=3.0)
    assert scale.status == "violated", scale.summary()


@pytest.mark.parametrize("make, words", [
    (lambda: _conv_net(bias=True), "bias"),
    (lambda: _conv_net(activation=lambda: torch.nn.Softplus()), "homogeneous"),
    (lambda: torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, bias=False), _SquaredReLU(), torch.nn.Flatten(),
                                 torch.nn.Linear(27, 1, bias=False)), "homogeneous"),
], ids=["conv-bias", "conv-softplus", "conv-relu-squared"])
def test_convolutional_nets_outside_the_theorem_are_vacuous(make, words, tc_dtype):
    torch.manual_seed(1)
    dtype = getattr(torch, tc_dtype)
    verdict = tc.check_weight_norm(make().to(dtype), *_images(dtype))
    assert verdict.status == "vacuous" and words in " ".join(verdict.failed_assumptions), verdict.summary()


def test_a_layer_used_twice_is_measured_not_homogeneous_of_degree_one(tc_dtype):
    torch.manual_seed(2)
    dtype = getattr(torch, tc_dtype)
    X, y = torch.randn(8, 4, dtype=dtype), torch.tensor([1.0, -1.0] * 4, dtype=dtype)
    verdict = tc.check_weight_norm(_Reused().to(dtype), X, y)
    assert verdict.status == "vacuous" and "homogeneous" in " ".join(verdict.failed_assumptions), verdict.summary()


def _relu_mlp(dtype, widths=(4, 6, 5, 1), middle=None):
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(torch.nn.Linear(a, b, bias=False))
        if i < len(widths) - 2:
            layers += ([middle] if middle is not None and i == 0 else []) + [torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_frozen_layer_counts_as_a_layer_and_the_measurement_decides(dtype):
    """A frozen (random-feature) first layer: f is still 1-homogeneous in every layer, WN of the trained
    ones is the Lagrange flow. An eval BatchNorm1d(affine=False) with fresh statistics is exactly linear:
    the measured identities decide, not its module type."""
    X, y = torch.randn(8, 4, dtype=dtype), torch.tensor([1.0, -1.0] * 4, dtype=dtype)
    frozen = _relu_mlp(dtype)
    frozen[0].weight.requires_grad_(False)
    assert tc.check_weight_norm(frozen, X, y).status == "holds"
    normalized = _relu_mlp(dtype, middle=torch.nn.BatchNorm1d(6, affine=False)).eval()
    assert tc.check_weight_norm(normalized, X, y).status == "holds"
    with torch.no_grad():
        normalized[1].running_mean.fill_(0.3)  # now affine with an offset: f(a W_1) != a f(W_1)
    assert tc.check_weight_norm(normalized, X, y).status == "vacuous"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_labels_zero_hold_as_zero_equals_zero(dtype):
    X = torch.randn(8, 4, dtype=dtype)
    verdict = tc.check_weight_norm(_relu_mlp(dtype), X, torch.zeros(8, dtype=dtype))
    assert verdict.status == "holds" and verdict.statistic == 0 and "every label is 0" in verdict.reason
