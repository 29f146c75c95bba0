"""The Recorder measures which parameters are weight layers, their degrees and the per-unit symmetries (the
per-neuron pairs) on the instance, the same way the homogeneity check reads them: gains, embedding tables,
(in, out) layouts, tied weights and ConvTranspose are judged; pieces that break the theorem quietly are not."""

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.claims.layer_balance import kit as balance_kit
from theorycheck.core.devices import dtype_of
from theorycheck.core.modules import PowerReLU

F = nn.functional


class Gain(nn.Module):
    """A learnable per-unit gain after the ReLU: f is homogeneous of degree 1 in it (a layer, not a bias)."""

    def __init__(self, gain=lambda g: g):
        super().__init__()
        self.inp, self.out = nn.Linear(4, 6, bias=False), nn.Linear(6, 1, bias=False)
        self.g = nn.Parameter(torch.rand(6) + 0.5)
        self.gain = gain

    def forward(self, x):
        return self.out(self.gain(self.g) * torch.relu(self.inp(x)))


class Embedded(nn.Module):
    """Token ids (batch, 3) -> embedding table, summed -> ReLU MLP: the output is linear in the table."""

    def __init__(self, **embedding):
        super().__init__()
        self.table = nn.Embedding(9, 5, **embedding)
        self.inp, self.out = nn.Linear(5, 6, bias=False), nn.Linear(6, 1, bias=False)

    def forward(self, ids):
        return self.out(torch.relu(self.inp(self.table(ids).sum(1))))


class InOut(nn.Module):
    """Weights stored (in, out) and applied as x @ W."""

    def __init__(self):
        super().__init__()
        self.first = nn.Parameter(torch.randn(4, 6) / 2)
        self.second = nn.Parameter(torch.randn(6, 1) / 2)

    def forward(self, x):
        return torch.relu(x @ self.first) @ self.second


class Tied(nn.Module):
    """One Linear called twice: f has degree 2 in it, and unit j's symmetry scales its row and column."""

    def __init__(self):
        super().__init__()
        self.inp, self.shared, self.out = (nn.Linear(4, 5, bias=False), nn.Linear(5, 5, bias=False),
                                           nn.Linear(5, 1, bias=False))

    def forward(self, x):
        return self.out(torch.relu(self.shared(torch.relu(self.shared(torch.relu(self.inp(x)))))))


class Transposed(nn.Module):
    """ConvTranspose1d layers: weight layout (in, out, k)."""

    def __init__(self):
        super().__init__()
        self.up1, self.up2 = nn.ConvTranspose1d(2, 3, 3, bias=False), nn.ConvTranspose1d(3, 2, 3, bias=False)
        self.head = nn.Linear(2 * 8, 1, bias=False)

    def forward(self, x):
        return self.head(torch.relu(self.up2(torch.relu(self.up1(x)))).flatten(1))


def _run(model, X, *, steps=6, check_X=None, lr=0.05, **recorder):
    y = torch.where(torch.arange(len(X), device=X.device) % 2 == 0, 1.0, -1.0).to(next(model.parameters()).dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    with tc.Recorder(model, opt, check_X, **recorder) as rec:
        for _ in range(steps):
            opt.zero_grad()
            F.softplus(-y * model(X).reshape(-1)).sum().backward()
            opt.step()
    return rec.trajectory, tc.check_layer_balance(rec.trajectory)


def _built(make, tc_device, tc_dtype, *shape, ids=False):
    torch.manual_seed(0)
    model = make().to(device=tc_device, dtype=dtype_of(tc_dtype))
    X = (torch.randint(0, 9, (10, 3), device=tc_device) if ids
         else torch.randn(10, *shape, device=tc_device, dtype=dtype_of(tc_dtype)))
    return model, X


def _members(traj):
    return [[(m.layer, m.axis, m.layout, m.exponent) for m in pair.members] for pair in traj.pairs]


# --- roles and degrees: measured, and the same for the Recorder and the homogeneity check -----------------

@pytest.mark.parametrize("with_X", [False, True])
def test_a_per_unit_gain_is_a_measured_layer(with_X, tc_device, tc_dtype):
    model, X = _built(Gain, tc_device, tc_dtype, 4)
    traj, verdict = _run(model, X, check_X=X if with_X else None)
    assert set(traj.layers) == {"inp.weight", "g", "out.weight"} and not traj.non_weight_parameters
    assert traj.degrees == (1.0, 1.0, 1.0) and traj.roles["degrees"]["g"] == "measured"
    assert verdict.status == "holds", verdict.summary()
    if with_X:
        assert traj.homogeneity.homogeneous is True, traj.homogeneity.summary()
    assert {m[0] for members in _members(traj) for m in members} == set(traj.layers) and not traj.unpaired


def test_a_gain_entering_non_homogeneously_is_not_a_layer(tc_device, tc_dtype):
    """exp(g) * relu(.): f != 0 at g = 0, so g is not a weight layer and the theorem does not apply."""
    torch.manual_seed(0)
    model = Gain(gain=torch.exp).to(device=tc_device, dtype=dtype_of(tc_dtype))
    X = torch.randn(10, 4, device=tc_device, dtype=dtype_of(tc_dtype))
    traj, verdict = _run(model, X)
    assert traj.non_weight_parameters == ("g",)
    assert verdict.status == "vacuous" and verdict.failed_assumptions == [balance_kit.assumptions["no_bias"]], \
        verdict.summary()


@pytest.mark.parametrize("with_X", [False, True])
def test_an_embedding_table_feeding_a_relu_mlp_is_a_layer(with_X, tc_device, tc_dtype):
    model, ids = _built(Embedded, tc_device, tc_dtype, ids=True)
    traj, verdict = _run(model, ids, check_X=ids if with_X else None)
    assert traj.layers[0] == "table.weight" and not traj.non_weight_parameters
    assert verdict.status == "holds", verdict.summary()
    if with_X:
        assert traj.homogeneity.homogeneous is True, traj.homogeneity.summary()
        assert tc.check_homogeneity(model, ids).status == "holds"
    assert [("table.weight", 1, "whole", 1.0), ("inp.weight", 1, "whole", -1.0)] in _members(traj)


def test_a_renormalized_embedding_is_not_homogeneous(tc_device, tc_dtype):
    """max_norm rescales the looked-up rows: f is not homogeneous in the table (and the table is edited)."""
    torch.manual_seed(0)
    model = Embedded(max_norm=0.5).to(device=tc_device, dtype=dtype_of(tc_dtype))
    with torch.no_grad():
        model.table.weight.mul_(4)
    traj, verdict = _run(model, torch.randint(0, 9, (10, 3), device=tc_device))
    assert verdict.status == "vacuous", verdict.summary()


def test_declared_degrees_are_kept_and_wrong_ones_are_caught(tc_device, tc_dtype):
    model, X = _built(Tied, tc_device, tc_dtype, 4)
    traj, verdict = _run(model, X)
    assert dict(zip(traj.layers, traj.degrees)) == {"inp.weight": 1.0, "shared.weight": 2.0, "out.weight": 1.0}
    assert verdict.status == "holds", verdict.summary()
    model, X = _built(Tied, tc_device, tc_dtype, 4)
    _, wrong = _run(model, X, degrees={"inp.weight": 1.0, "shared.weight": 1.0, "out.weight": 1.0})
    assert wrong.status == "vacuous" and wrong.assumptions[balance_kit.assumptions["euler"]] is False, wrong.summary()


# --- per-unit symmetries: measured from the instance ---------------------------------------------------------

@pytest.mark.parametrize("make, shape, expected", [
    (InOut, (4,), [[("first", 1, "whole", 1.0), ("second", 0, "whole", -1.0)]]),
    (Tied, (4,), [[("inp.weight", 0, "whole", 1.0), ("shared.weight", 0, "whole", 1.0),
                   ("shared.weight", 1, "whole", -1.0), ("out.weight", 1, "whole", -1.0)]]),
    (Transposed, (2, 4), [[("up1.weight", 1, "whole", 1.0), ("up2.weight", 0, "whole", -1.0)],
                          [("up2.weight", 1, "whole", 1.0), ("head.weight", 1, "blocks", -1.0)]]),
])
def test_layouts_tied_weights_and_conv_transpose_are_paired(make, shape, expected, tc_device, tc_dtype):
    model, X = _built(make, tc_device, tc_dtype, *shape)
    traj, verdict = _run(model, X)
    assert _members(traj) == expected and not traj.unpaired
    assert verdict.status == "holds" and verdict.details["per_neuron"]["status"] == "judged", verdict.summary()


def test_a_power_relu_unit_pairs_with_its_degree():
    """max(z, 0)^2: scaling a unit's incoming row by c scales its output by c^2, undone by c^-2 on its column."""
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 5, bias=False), PowerReLU(2.0), nn.Linear(5, 1, bias=False)).to(dtype)
        traj, verdict = _run(model, torch.randn(10, 4, dtype=dtype), lr=0.01)
        assert traj.degrees == (2.0, 1.0) and _members(traj) == [[("0.weight", 0, "whole", 1.0),
                                                                   ("2.weight", 1, "whole", -2.0)]]
        assert verdict.status == "holds", verdict.summary()


def test_a_unit_norm_moved_in_an_in_out_layout_is_seen(tc_device, tc_dtype):
    """Between steps, norm moves from unit 0's incoming column of an (in, out) weight to unit 1's (the layer's
    norm kept): the layers balance, the correctly paired neurons do not."""
    model, X = _built(InOut, tc_device, tc_dtype, 4)

    y = torch.where(torch.arange(10, device=X.device) % 2 == 0, 1.0, -1.0).to(X.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with tc.Recorder(model, opt) as rec:
        for _ in range(3):
            opt.zero_grad()
            F.softplus(-y * model(X).reshape(-1)).sum().backward()
            opt.step()
            with torch.no_grad():
                a, b = (model.first[:, 0] ** 2).sum(), (model.first[:, 1] ** 2).sum()
                model.first[:, 0].mul_(0.5)
                model.first[:, 1].mul_(torch.sqrt((b + 0.75 * a) / b))
    verdict = tc.check_layer_balance(rec.trajectory)
    failing = [p["name"] for p in verdict.details["comparisons"] if not p["held"]]
    assert failing and all(name.startswith("neuron") for name in failing), verdict.summary()
    assert verdict.status == "vacuous" and verdict.assumptions[balance_kit.assumptions["unedited"]] is False


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degrees_and_symmetries_of_a_deep_power_relu_net_are_measured(dtype):
    """f = W3 s(W2 s(W1 x)), s(z) = max(z, 0)^2: degrees 4, 2, 1, and each unit's column scales by c^-2."""
    from theorycheck.engines.unit_pairing import UnitSymmetries

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6, bias=False), PowerReLU(2.0), nn.Linear(6, 6, bias=False), PowerReLU(2.0),
                        nn.Linear(6, 1, bias=False)).to(dtype)
    measured = UnitSymmetries(net, dict(net.named_parameters()), (torch.randn(16, 5, dtype=dtype),))
    assert measured.degrees() == {"0.weight": 4.0, "2.weight": 2.0, "4.weight": 1.0}
    pairs, unpaired = measured.pairs()
    assert [[(m.layer, m.axis, m.exponent) for m in p.members] for p in pairs] == [
        [("0.weight", 0, 1.0), ("2.weight", 1, -2.0)], [("2.weight", 0, 1.0), ("4.weight", 1, -2.0)]] and not unpaired
