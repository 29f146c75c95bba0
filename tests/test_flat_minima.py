"""Unit tests and negative controls for flat_minima (Dinh et al.'s alpha-scale: f unchanged, Hessian
H_a = T_a^-1 H T_a^-1) and gauss_newton (H = J^T J at an interpolating squared-loss minimum), on the
toolkit's cases and on modules written here (convolutions, biases, depth 3, custom forwards)."""

import math

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.flat_minima import HessianCase, two_layer_network


def _net(n=5, d=3, m=8, k=1, seed=0, dtype="float64", device="cpu", activation="relu", hidden=1, bias=False):
    case = HessianCase(claim="flat_minima", n=n, d=d, m=m, k=k, seed=seed, activation=activation, hidden=hidden,
                       bias=bias)
    model = case.network(device, dtype)
    return (model, *case.data(model, device, dtype))


@pytest.mark.parametrize("activation, hidden, bias", [("relu", 1, False), ("leaky_relu", 1, False), ("relu", 2, True)])
def test_alpha_scale_keeps_f_and_transforms_the_hessian(activation, hidden, bias, tc_device, tc_dtype):
    model, X, y = _net(activation=activation, dtype=tc_dtype, device=tc_device, hidden=hidden, bias=bias)
    verdict = tc.check_flat_minima(model, X, y)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic < 0.5 and verdict.dtype == tc_dtype  # ratio of the largest change to its roundoff bound


def test_sharpness_grows_like_alpha_squared():
    """lambda_max(H_a) / a^2 -> lambda_max(H_22) = lambda_max(sum h h^T): the same f at any sharpness."""
    model, X, y = _net(n=6, m=10, seed=2)
    verdict = tc.check_flat_minima(model, X, y, alphas=(1.0, 10.0, 100.0, 1000.0))
    rows = verdict.details["alphas"]
    h = torch.relu(X @ model[0].weight.detach().T)
    assert verdict.details["lambda_max_H22"] == pytest.approx(float(torch.linalg.eigvalsh(h.T @ h)[-1]), rel=1e-12)
    assert rows[0]["lambda_max"] == pytest.approx(verdict.details["lambda_max"], rel=1e-12)
    assert [r["lambda_max"] for r in rows] == sorted(r["lambda_max"] for r in rows)
    assert rows[-1]["lambda_max"] > 1e5 * rows[0]["lambda_max"]
    ratios = [r["lambda_max_over_lower_bound"] for r in rows[1:]]
    assert all(1 <= q for q in ratios) and ratios[-1] - 1 < 1e-4 and ratios == sorted(ratios, reverse=True)


def test_interpolating_minimum_has_gauss_newton_hessian(tc_device, tc_dtype):
    model, X, y = _net(n=4, m=6, k=2, dtype=tc_dtype, device=tc_device)  # y = f(X): a global minimum
    verdict = tc.check_gauss_newton(model, X, y)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["rank"] <= 8 < verdict.details["parameters"] == 30


# --- modules of the user's own -------------------------------------------------------------------

class ConvNet(nn.Module):
    """Conv (bias) -> ReLU -> Conv (bias) -> ReLU -> flatten -> Linear: depth 3, not one of our generators."""

    def __init__(self, skip=False, smooth=False):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(1, 2, 3, padding=1), nn.Conv1d(2, 2, 3)
        self.head = nn.Linear(4, 1)
        self.skip, self.smooth = skip, smooth

    def forward(self, x):
        z = self.conv1(x)
        h = torch.tanh(z) if self.smooth else torch.relu(z)  # a functional tanh the module list cannot see
        out = self.head(torch.relu(self.conv2(h)).flatten(1))
        return out + z.sum((1, 2))[:, None] if self.skip else out  # a skip from layer 1 past layer 2


def _conv(dtype, **kw):
    torch.manual_seed(0)
    model = ConvNet(**kw).to(dtype)
    X = torch.randn(3, 1, 4, dtype=dtype)
    with torch.no_grad():
        y = model(X)
    return model, X, y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_convolutional_net_with_biases_holds(dtype):
    model, X, y = _conv(dtype)
    for layers in (("conv1", "conv2"), ("conv2", "head")):
        verdict = tc.check_flat_minima(model, X, y + 0.3, layers=layers)
        assert verdict.status == "holds", verdict.summary()
    assert tc.check_gauss_newton(model, X, y).status == "holds"
    assert tc.check_gauss_newton(model, X, y + 0.3).status == "vacuous"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kw", [{"skip": True}, {"smooth": True}])
def test_a_break_the_module_list_cannot_see_is_an_assumption_not_met(kw, dtype):
    """A skip connection past the second layer, or a functional tanh in forward: f changes under the
    alpha-scale, measured on the data, so the theorem says nothing (vacuous), whatever the module types say."""
    model, X, y = _conv(dtype, **kw)
    verdict = tc.check_flat_minima(model, X, y, layers=("conv1", "conv2"))
    assert verdict.status == "vacuous" and "not invariant" in verdict.reason, verdict.summary()


def test_probe_vectors_agree_with_the_full_hessian():
    model, X, y = _net(hidden=2, bias=True)
    assert tc.check_flat_minima(model, X, y, probes=3).status == "holds"
    assert tc.check_flat_minima(model, X, y, probes=3, alphas=((2.0, 0.6),)).status == "violated"
    assert tc.check_gauss_newton(model, X, y, probes=3).status == "holds"
    assert tc.check_gauss_newton(model, X, y + 0.1, probes=3).status == "vacuous"


def test_a_net_too_large_for_the_full_hessian_uses_hessian_vector_products():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 60), nn.ReLU(), nn.Linear(60, 20), nn.ReLU(), nn.Linear(20, 1)).double()
    X = torch.randn(4, 20, dtype=torch.float64)
    with torch.no_grad():
        y = model(X)
    verdict = tc.check_flat_minima(model, X, y, alphas=(10.0,))
    assert verdict.status == "holds" and verdict.details["probes"] == 8 and verdict.details["parameters"] > 1500
    assert tc.check_gauss_newton(model, X, y).status == "holds"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_hessian_of_your_own_is_judged(dtype):
    """Your Hessian at an interpolating point: autograd's of 1/2 sum r^2 holds; that of sum r^2 (twice it, a
    loss without the 1/2), or one taken at another point, is violated."""
    model, X, y = _net(n=4, m=5, dtype=str(dtype).removeprefix("torch."))
    names = [n for n, _ in model.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    sizes = [p.numel() for p in model.parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss(t, scale=0.5):
        params = {n: v.reshape(s) for n, v, s in zip(names, t.split(sizes), shapes)}
        return scale * ((torch.func.functional_call(model, params, (X,)) - y) ** 2).sum()

    H = torch.func.hessian(loss)(theta)
    error = 64 * torch.finfo(dtype).eps * float(H.abs().max())  # the float32 Hessian's own rounding
    assert tc.check_gauss_newton(model, X, y, hessian=H, hessian_error=error).status == "holds"
    assert tc.check_gauss_newton(model, X, y, hessian=lambda v: H @ v, hessian_error=error).status == "holds"
    twice = tc.check_gauss_newton(model, X, y, hessian=torch.func.hessian(lambda t: loss(t, 1.0))(theta),
                                  hessian_error=error)
    assert twice.status == "violated" and "H != J^T D J" in twice.reason, twice.summary()
    elsewhere = torch.func.hessian(loss)(theta * 1.5)
    assert tc.check_gauss_newton(model, X, y, hessian=elsewhere, hessian_error=error).status == "violated"


# --- negative controls ---------------------------------------------------------------------------

def test_tanh_net_changes_under_rescaling():
    model, X, y = _net(activation="tanh")
    verdict = tc.check_flat_minima(model, X, y)
    assert verdict.status == "vacuous" and not verdict.conclusion_held
    assert "not positively homogeneous" in verdict.reason
    assert max(r["f_change"] for r in verdict.details["alphas"]) > 1e6  # x the roundoff bound


def test_unbalanced_rescaling_is_violated():
    model, X, y = _net()
    verdict = tc.check_flat_minima(model, X, y, alphas=((2.0, 0.6),))  # a1 a2 = 1.2: f scales by 1.2
    assert verdict.status == "violated", verdict.summary()
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] flat_minima: violated"):
        tc.assert_flat_minima(model, X, y, alphas=((2.0, 0.6),))


def test_non_interpolating_point_is_vacuous_with_the_residual_term():
    model, X, y = _net(n=4, m=6)
    noisy = y + 0.1
    verdict = tc.check_gauss_newton(model, X, noisy)
    assert verdict.status == "vacuous" and not verdict.conclusion_held
    assert verdict.statistic > 1e6 * verdict.tolerance
    assert verdict.statistic == pytest.approx(verdict.details["residual_term_norm"], rel=1e-10)
    with pytest.raises(tc.ClaimViolation, match="not an interpolating point"):
        tc.assert_gauss_newton(model, X, noisy)


@pytest.mark.parametrize("call, message", [
    (lambda m, X, y: tc.check_flat_minima(m[0].weight, X, y), "torch.nn.Module"),
    (lambda m, X, y: tc.check_flat_minima(m, X, y, layers=("0", "1")), "two distinct submodule names"),
    (lambda m, X, y: tc.check_flat_minima(m, X, y[:2]), "one sample count"),
    (lambda m, X, y: tc.check_gauss_newton(m, X, y[:, :1]), "one target per output"),
    (lambda m, X, y: tc.check_flat_minima(m, X, y, alphas=(-1.0,)), "alphas"),
    (lambda m, X, y: tc.check_flat_minima(m, X, y, probes=0), "probes"),
    (lambda m, X, y: tc.check_gauss_newton(m, X, y, hessian=torch.eye(3)), "hessian of shape"),
    (lambda m, X, y: tc.check_gauss_newton(m, X, y, hessian=lambda v: v[:2]), "hessian(v)"),
    (lambda m, X, y: two_layer_network(m[0].weight, m[2].weight, activation="gelu"), "activation in"),
    (lambda m, X, y: two_layer_network(m[0].weight, m[2].weight.T), "W1 (m, d), W2 (k, m)"),
])
def test_bad_input_raises(call, message):
    with pytest.raises(tc.InvalidArgument, match="expected") as info:
        call(*_net(k=2))
    assert message in str(info.value)


def test_overflow_is_inconclusive():
    model, X, y = _net()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e160)
    verdict = tc.check_gauss_newton(model, X, y)
    assert verdict.status == "inconclusive" and "non-finite" in verdict.reason
    assert math.isnan(tc.check_flat_minima(model, X, y).details["lambda_max"])


@pytest.mark.parametrize("claim", ["flat_minima", "gauss_newton"])
def test_audit_cases_meet_their_expectations(claim):
    for case in tc.CLAIMS[claim].audit_cases(n=3, seed=1, device="cpu", dtype="float64"):
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
        assert "HessianCase(" in case.reproduce


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_clamp_beyond_the_probe_of_two_is_an_assumption_not_met(dtype):
    """relu6 on pre-activations of size ~1: a(2z) = 2a(z) nearly everywhere, but the rescaling by 10 and 100
    crosses the clamp. Invariance is measured at the factors the rescaling applies, so the theorem is silent
    (vacuous), not violated."""
    torch.manual_seed(0)
    W1, W2 = torch.randn(4, 3, dtype=dtype) / 3, torch.randn(1, 4, dtype=dtype)
    X, y = torch.randn(6, 3, dtype=dtype), torch.randn(6, 1, dtype=dtype)
    assert float((X @ W1.T).abs().max()) < 3  # every 2z below the clamp
    verdict = tc.check_flat_minima(two_layer_network(W1, W2, nn.ReLU6()), X, y)
    assert verdict.status == "vacuous" and "rescaling factors" in verdict.reason, verdict.summary()
    assert tc.check_flat_minima(two_layer_network(W1, W2, lambda z: torch.clamp(z, 0.0)), X, y).status == "holds"


# --- losses of your own -------------------------------------------------------------------------

def _cross_entropy(out, y):
    return torch.nn.functional.cross_entropy(out, y, reduction="none")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_your_loss_cross_entropy_with_integer_labels(dtype):
    """Three classes, integer labels, a ReLU net with biases: the alpha-scale keeps f, so any loss of f keeps
    its value and its Hessian transforms by T^-1 H T^-1; the cross-entropy is never stationary (vacuous)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(dtype)
    X, y = torch.randn(7, 3, dtype=dtype), torch.randint(0, 3, (7,))
    verdict = tc.check_flat_minima(model, X, y, loss=_cross_entropy, layers=("2", "4"))
    assert verdict.status == "holds", verdict.summary()
    model[1] = nn.Tanh()
    assert tc.check_flat_minima(model, X, y, loss=_cross_entropy).status == "vacuous"
    assert tc.check_gauss_newton(model, X, y, loss=_cross_entropy).status == "vacuous"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_your_weighted_loss_has_the_generalized_gauss_newton_hessian(dtype):
    """L = sum_n w_n (f_n - y_n)^2 at an interpolating point: H = J^T D J with D = diag(2 w), not J^T J
    (a Hessian of yours that drops D is violated)."""
    model, X, y = _net(n=4, m=5, dtype=str(dtype).removeprefix("torch."))
    w = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=dtype)
    weighted = lambda out, t: (w[:, None] * (out - t) ** 2).sum(1)  # noqa: E731
    verdict = tc.check_gauss_newton(model, X, y, loss=weighted)
    assert verdict.status == "holds", verdict.summary()
    J = torch.cat([torch.autograd.functional.jacobian(lambda p: torch.func.functional_call(
        model, {n: p if n == name else q for n, q in model.named_parameters()}, (X,)).reshape(-1),
        param.detach()).reshape(4, -1) for name, param in model.named_parameters()], dim=1)
    error = 64 * torch.finfo(dtype).eps * float((J.T @ J).abs().max())
    plain = tc.check_gauss_newton(model, X, y, loss=weighted, hessian=J.T @ J, hessian_error=error)
    assert plain.status == "violated", plain.summary()
    assert tc.check_gauss_newton(model, X, y + 0.1, loss=weighted).status == "vacuous"
