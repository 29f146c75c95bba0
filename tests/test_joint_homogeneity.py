"""Margin and KKT claims need f homogeneous in the TRAINED parameters jointly (Lyu & Li 2020), not in every layer:
frozen backbones and branches of one joint degree are judged, a trainable part f is not homogeneous in is vacuous."""

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.margin import kit as margin_kit
from theorycheck.core.modules import PowerReLU
from theorycheck.engines.joint_homogeneity import measure_joint_homogeneity

DTYPES = [torch.float64, torch.float32]
HOMOGENEOUS = margin_kit.assumptions["homogeneous"]


class TwoBranch(nn.Module):
    """b(a(x)) + scale * v(x)^power: jointly 2-homogeneous for power 2 (no layer is 1-homogeneous on its own:
    a and b are of degree 1 in the first branch and 0 in the second); of mixed degree for power 1."""

    def __init__(self, power=2):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4, bias=False), nn.Linear(4, 1, bias=False)
        self.v = nn.Linear(3, 1, bias=False)
        self.power = power

    def forward(self, x):
        return self.b(self.a(x)) + self.v(x) ** self.power


def _frozen_backbone(head_bias=False, trainable_backbone_bias=False):
    """A biased tanh backbone (frozen) under a linear head (with ``head_bias`` still jointly 1-homogeneous: linear in
    the head's weight and bias together); optionally a trainable backbone bias."""
    backbone = nn.Sequential(nn.Linear(3, 8), nn.Tanh())
    backbone[0].weight.requires_grad_(False)
    backbone[0].bias.requires_grad_(trainable_backbone_bias)
    return nn.Sequential(backbone, nn.Linear(8, 1, bias=head_bias))


def _labelled(teacher, dtype, n=8, seed=1):
    """n inputs labelled by the sign of ``teacher``, the half of 4n draws farthest from its zero set."""
    X = torch.randn(4 * n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    with torch.no_grad():
        f = teacher(X).reshape(-1)
    keep = torch.argsort(f.abs(), descending=True)[:n]
    return X[keep], f[keep].sign()


def _instance(make, dtype, seed=0):
    torch.manual_seed(seed)
    model = make().to(dtype)
    X, y = _labelled(model, dtype)
    with torch.no_grad():  # a student away from its teacher, same architecture and frozen parts
        for p in model.parameters():
            if p.requires_grad:
                p.mul_(-0.5)
    return model, X, y


JUDGED = {"frozen-biased-backbone": (_frozen_backbone, 1.0), "two-branches": (TwoBranch, 2.0),
          "frozen-backbone-biased-head": (lambda: _frozen_backbone(head_bias=True), 1.0)}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", JUDGED)
def test_jointly_homogeneous_trained_parameters_are_judged(name, dtype):
    make, degree = JUDGED[name]
    model, X, y = _instance(make, dtype)
    trajectory = tc.train(model, X, y, log_loss_target=-20.0)
    assert trajectory.homogeneous and trajectory.degree == degree and trajectory.smooth, trajectory.homogeneity_reason
    margin = tc.check_margin_monotone(trajectory)
    assert margin.status == "holds", margin.summary()
    kkt = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert kkt.status == "holds" and kkt.details["eps_decreasing"], kkt.summary()
    single = tc.check_kkt(model, X, y)
    assert single.status == "inconclusive" and not single.failed_assumptions, single.summary()


NOT_HOMOGENEOUS = {
    "trainable-biased-two-layer-head": lambda: nn.Sequential(
        _frozen_backbone().requires_grad_(False), nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 1)),
    "trainable-bias-under-a-frozen-weight": lambda: _frozen_backbone(trainable_backbone_bias=True),
    "branches-of-degrees-2-and-1": lambda: TwoBranch(power=1),
    "trainable-layer-under-a-frozen-biased-head": lambda: nn.Sequential(
        nn.Linear(3, 5, bias=False), nn.ReLU(), nn.Linear(5, 1).requires_grad_(False)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", NOT_HOMOGENEOUS)
def test_a_trained_part_f_is_not_homogeneous_in_is_vacuous(name, dtype):
    model, X, y = _instance(NOT_HOMOGENEOUS[name], dtype)
    measured = measure_joint_homogeneity(model, X)
    assert measured.homogeneous is False and measured.reason, measured.summary()
    trajectory = tc.train(model, X, y, log_loss_target=-5.0, steps=60)
    assert not trajectory.homogeneous and trajectory.homogeneity_decided
    margin = tc.check_margin_monotone(trajectory)
    assert margin.status == "vacuous" and margin.assumptions[HOMOGENEOUS] is False, margin.summary()
    run = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert run.status == "vacuous" and run.assumptions[HOMOGENEOUS] is False, run.summary()
    single = tc.check_kkt(model, X, y)
    assert single.status == "vacuous" and single.assumptions[HOMOGENEOUS] is False, single.summary()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_degrees_are_measured_exactly_in_the_trained_parameters(dtype):
    """A first-layer bias with no later bias keeps f jointly homogeneous (x augmented by a constant 1): degree 2;
    ReLU^3 under a linear head: degree 3 + 1; an output bias breaks it at small scales; f = 0: undecided."""
    torch.manual_seed(0)
    X = torch.randn(10, 3, dtype=dtype)
    first_bias = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1, bias=False)).to(dtype)
    cubed = nn.Sequential(nn.Linear(3, 6, bias=False), PowerReLU(3.0), nn.Linear(6, 1, bias=False)).to(dtype)
    for model, degree in ((first_bias, 2.0), (cubed, 4.0)):
        measured = measure_joint_homogeneity(model, X)
        assert measured.homogeneous is True and measured.degree == measured.measured == degree, measured.summary()
        assert measure_joint_homogeneity(model, X, degree=degree + 1).homogeneous is False
    output_bias = nn.Sequential(nn.Linear(3, 6, bias=False), nn.ReLU(), nn.Linear(6, 1)).to(dtype)
    with torch.no_grad():
        output_bias[2].bias.fill_(1e-3)
    assert measure_joint_homogeneity(output_bias, X).homogeneous is False
    dead = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False)).to(dtype)
    with torch.no_grad():
        dead[0].weight.fill_(-1.0)
    assert measure_joint_homogeneity(dead, X.abs()).homogeneous is None


class DeadZone(nn.Module):
    """z where |z| > 1e-9, else 0: homogeneous only for pre-activations away from the zone."""

    def forward(self, z):
        return z * (z.abs() > 1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activation, shrink", [(lambda: nn.Hardtanh(0.0, 6.0), 1e-3), (DeadZone, 1.0)],
                         ids=["clamp-at-6-on-small-pre-activations", "dead-zone-below-1e-9"])
def test_thresholds_far_outside_the_data_scale_are_found(activation, shrink, dtype):
    """Homogeneous on X itself (every pre-activation inside the homogeneous region), not under the scalings the
    flow applies as ||theta|| grows: 2^{+-k} up to half the dtype's exponent range reach the threshold."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6, bias=False), activation(), nn.Linear(6, 1, bias=False)).to(dtype)
    with torch.no_grad():
        model[0].weight.mul_(shrink)
    X = torch.randn(10, 3, dtype=dtype)
    measured = measure_joint_homogeneity(model, X, degree=2.0)
    assert measured.homogeneous is False and "f(c theta) != c^2" in measured.reason, measured.summary()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_one_tuple_of_degrees_serves_train_and_the_homogeneity_engine(dtype):
    """homogeneity_degrees holds one degree per weight layer, frozen ones included, for both; train sums the trained
    layers' degrees. A tuple of the trained layers only is refused by both, naming what was expected."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5, bias=False).requires_grad_(False), nn.ReLU(),
                          nn.Linear(5, 1, bias=False)).to(dtype)
    X, y = _labelled(model, dtype)
    model.homogeneity_degrees = (1.0, 1.0)
    assert tc.check_homogeneity(model, X).status == "holds"
    trajectory = tc.train(model, X, y, log_loss_target=-5.0, steps=50)
    assert trajectory.degree == 1.0 and trajectory.homogeneous, trajectory.homogeneity_reason
    model.homogeneity_degrees = (1.0,)
    for call in (lambda: tc.check_homogeneity(model, X), lambda: tc.train(model, X, y, steps=5)):
        with pytest.raises(tc.InvalidArgument, match="2 degrees"):
            call()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_frozen_relu_backbone_under_a_linear_head_is_smooth_in_the_trained_parameters(dtype):
    """Thm 4.2 (GD) needs f C^2 in the trained parameters: ReLU kinks in a frozen feature map upstream of every
    trained parameter do not move with theta (measured by autograd), so GD on the head is covered; the same ReLU
    under a trained layer is a kink in theta, and GD there stays vacuous."""
    from theorycheck.engines.flat_network import twice_differentiable

    def make(frozen=True):
        backbone = nn.Sequential(nn.Linear(3, 8), nn.ReLU()).requires_grad_(not frozen)
        return nn.Sequential(backbone, nn.Linear(8, 1, bias=False))

    model, X, y = _instance(make, dtype)
    assert twice_differentiable(model, X)[0] and not twice_differentiable(model)[0]
    gd = tc.train(model, X, y, method="gd", lr=0.05, steps=60)
    assert tc.check_margin_monotone(gd).status == "holds", tc.check_margin_monotone(gd).summary()
    kinked, X, y = _instance(lambda: make(frozen=False), dtype)
    assert not twice_differentiable(kinked, X)[0]
    assert tc.check_margin_monotone(tc.train(kinked, X, y, method="gd", lr=0.05, steps=20)).status == "vacuous"


class _InlineReLU(nn.Module):
    """b(relu(a(x))) written inline: a kink in the trained parameters that no module list names."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4, bias=False), nn.Linear(4, 1, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_a_custom_forward_is_judged_c2_from_the_ops_it_applies_to_the_trained_parameters(dtype):
    """Two C^2 branches in a forward of the user's own: GD is covered by Thm 4.2 (the autograd graph from the
    trained parameters holds only C^2 ops); the same forward with an inline relu, or v(x)^1.5, is not."""
    from theorycheck.engines.flat_network import twice_differentiable

    model, X, y = _instance(TwoBranch, dtype)
    assert twice_differentiable(model, X)[0] and not twice_differentiable(model)[0]
    gd = tc.train(model, X, y, method="gd", lr=0.01, steps=40)
    assert gd.smooth and tc.check_margin_monotone(gd).status == "holds", tc.check_margin_monotone(gd).summary()
    for kinked in (_InlineReLU().to(dtype), TwoBranch(power=1.5).to(dtype)):
        smooth, reason = twice_differentiable(kinked, X)
        assert not smooth and ("ReluBackward" in reason or "exponent 1.5" in reason), reason
    relu_model, X, y = _instance(_InlineReLU, dtype)
    gd = tc.train(relu_model, X, y, method="gd", lr=0.01, steps=5)
    assert tc.check_margin_monotone(gd).assumptions[margin_kit.assumptions["dynamics"]] is False


class _FixesItsDtype(nn.Module):
    """A float32 model whose forward casts its input itself (x.float()): a float64 copy of it cannot run."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5, bias=False), nn.Linear(5, 1, bias=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x.float())))


def test_the_degree_is_decided_on_a_float64_copy_or_in_a_forward_that_fixes_its_dtype():
    """A deep float32 net on small inputs is measured on a float64 copy (its weights exactly); a forward that casts
    its input cannot run the copy and is measured in its own float32, which the details name."""
    from theorycheck.generate.models import NetworkSpec, build_network

    spec = NetworkSpec(in_shape=(5,), widths=(30, 30, 30), activation="relu")
    model = build_network(spec, seed=3, dtype=torch.float32)
    X = 0.02 * torch.randn(12, 5, generator=torch.Generator().manual_seed(0))
    measured = measure_joint_homogeneity(model, X)
    assert measured.homogeneous is True and measured.degree == 4.0 and measured.details["arithmetic"] == "float64"
    own = measure_joint_homogeneity(_FixesItsDtype(), X[:, :3])
    assert own.homogeneous is True and own.degree == 2.0 and own.details["arithmetic"] == "float32", own.summary()
