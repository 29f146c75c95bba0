"""check_homogeneity on models as users write them: forwards that fix dtypes, sequence-first layouts,
paths hidden from autograd, wrappers, integer inputs and odd outputs (right status in float32 and float64)."""

import pytest
import torch
import torch.utils.checkpoint
from torch import nn

import theorycheck as tc
from theorycheck.core.devices import dtype_of

DTYPES = ["float32", "float64"]


def _mlp(inputs=4, width=8, outputs=1, activation=None, bias=False):
    return nn.Sequential(nn.Linear(inputs, width, bias=bias), activation or nn.ReLU(),
                         nn.Linear(width, outputs, bias=False))


def _build(cls, dtype, *args, seed=0):
    torch.manual_seed(seed)
    return cls(*args).to(dtype_of(dtype))


# --- A: forwards that fix their dtypes ------------------------------------------------------------

class CastsToFloat32(nn.Module):
    """A float32 model whose forward calls x.float(): on a float64 copy it cannot run."""

    def __init__(self, activation=None):
        super().__init__()
        self.net = _mlp(activation=activation)

    def forward(self, x):
        return self.net(x.float())


class Pixels(nn.Module):
    """uint8 images scaled in the forward: x.to(torch.float32) / 255."""

    def __init__(self, activation=None):
        super().__init__()
        self.net = _mlp(inputs=12, activation=activation)

    def forward(self, x):
        return self.net(x.flatten(1).to(torch.float32) / 255)


class RoundTrip(nn.Module):
    """Any-dtype model whose hidden layer passes through float32 (h.float().to(x.dtype)): on a float64 copy
    the forward runs, but computes in float32; float64 tolerances would call its roundoff a violation."""

    def __init__(self, activation=None):
        super().__init__()
        self.a, self.b = nn.Linear(4, 64, bias=False), nn.Linear(64, 1, bias=False)
        self.activation = activation or torch.relu

    def forward(self, x):
        return self.b(self.activation(self.a(x)).float().to(x.dtype))


@pytest.mark.parametrize("model_class", [CastsToFloat32, Pixels])
def test_forward_casting_to_float32_is_judged_in_float32(model_class):
    model = _build(model_class, "float32")
    x = (torch.randint(0, 256, (8, 3, 4), dtype=torch.uint8) if model_class is Pixels
         else torch.randn(8, 4))
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["arithmetic"] == "float32" and "float64 copy does not run" in verdict.details["evaluation"]
    assert "identities evaluated in float32" in verdict.reason
    broken = tc.check_homogeneity(_build(model_class, "float32", nn.Tanh()), x)
    assert broken.status == "vacuous", broken.summary()  # named by the module scan, and measured:
    assert broken.details["offending_layers"] == ["net.0.weight"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_precision_lost_inside_the_forward_is_measured(dtype):
    model = _build(RoundTrip, dtype)
    x = torch.randn(8, 4, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(model, x)
    if dtype == "float64":  # float32's range cuts the sweep short of float64's: thresholds there are untested
        assert verdict.status == "inconclusive", verdict.summary()
        assert "limited by float32's range to pre-activations 10^-30..10^30" in verdict.reason
        assert verdict.details["decades_not_covered"] == [-240, -120, -60, 60, 120, 240]
    else:
        assert verdict.status == "holds", verdict.summary()
    assert verdict.details["arithmetic"] == "float32"
    assert "computes in torch.float32" in verdict.details["evaluation"]
    assert verdict.details["tolerances"]["euler"] > 1e-7  # float32's roundoff, not float64's
    model.activation = torch.tanh
    assert tc.check_homogeneity(model, x).status == "violated"


class Around(nn.Module):
    """A ReLU MLP ``net`` called by ``around(net, x)``: what a user's forward does around it."""

    def __init__(self, around, outputs=1):
        super().__init__()
        self.net, self.around = _mlp(outputs=outputs), around

    def forward(self, x):
        return self.around(self.net, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_that_keeps_the_dtype_it_gets_still_uses_the_float64_copy(dtype):
    follows = _build(Around, dtype, lambda net, x: net(x.to(net[0].weight.dtype)))
    verdict = tc.check_homogeneity(follows, torch.randn(8, 4, dtype=dtype_of(dtype)))
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["arithmetic"] == "float64" and verdict.details["tolerances"]["euler"] < 1e-12


# --- B: the batch axis is measured ----------------------------------------------------------------

class SequenceFirst(nn.Module):
    """(batch, seq, features) in, (seq, batch, features) inside, summed over the sequence."""

    def __init__(self, keep_sequence=False):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8, bias=False), nn.Linear(8, 2, bias=False)
        self.activation, self.keep_sequence = torch.relu, keep_sequence

    def forward(self, x):
        h = self.b(self.activation(self.a(x.transpose(0, 1))))
        return h if self.keep_sequence else h.sum(0)  # (seq, batch, 2) or (batch, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep_sequence", [False, True])
@pytest.mark.parametrize("batch", [1, 3, 5])
def test_sequence_first_layout_with_length_equal_to_the_batch(dtype, batch, keep_sequence):
    model = _build(SequenceFirst, dtype, keep_sequence)
    x = torch.randn(batch, 3, 4, dtype=dtype_of(dtype))  # sequence length 3: equal to the batch when batch = 3
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["euler_method"] == "hooks"
    assert verdict.details["output_batch_axis"] == (1 if keep_sequence else 0)
    model.activation = torch.tanh
    assert tc.check_homogeneity(model, x).status == "violated"


@pytest.mark.parametrize("dtype", DTYPES)
def test_classes_by_batch_output_is_not_called_interacting(dtype):
    transposed = _build(Around, dtype, lambda net, x: net(x).T, 3)
    verdict = tc.check_homogeneity(transposed, torch.randn(6, 4, dtype=dtype_of(dtype)))
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["output_batch_axis"] == 1 and verdict.details["euler_method"] == "hooks"
    assert "interact" not in verdict.reason


@pytest.mark.parametrize("dtype", DTYPES)
def test_samples_that_do_interact_are_still_found(dtype):
    class Centered(nn.Module):  # subtracts the batch mean of the hidden layer: samples interact
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8, bias=False), nn.Linear(8, 1, bias=False)

        def forward(self, x):
            h = self.a(x)
            return self.b(torch.relu(h - h.mean(0)))

    verdict = tc.check_homogeneity(_build(Centered, dtype), torch.randn(6, 4, dtype=dtype_of(dtype)))
    assert verdict.status == "holds", verdict.summary()  # still homogeneous: a mean is linear
    assert "samples interact" in verdict.details["euler_method"]


# --- C: paths autograd does not see ---------------------------------------------------------------

class Hidden(nn.Module):
    """A backbone hidden from autograd by ``how``; the head is trained."""

    def __init__(self, how, activation=None, bias=False):
        super().__init__()
        self.how = how
        self.backbone = nn.Sequential(nn.Linear(4, 8, bias=bias), activation or nn.ReLU())
        self.head = nn.Linear(8, 1, bias=False)

    def forward(self, x):
        if self.how == "no_grad":
            with torch.no_grad():
                h = self.backbone(x)
        elif self.how == "detach":
            h = self.backbone(x).detach()
        else:
            h = torch.utils.checkpoint.checkpoint(self.backbone, x, use_reentrant=True)
        return self.head(h)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("how", ["no_grad", "detach", "checkpoint"])
def test_paths_hidden_from_autograd_are_named_not_violated(how, dtype):
    x = torch.randn(8, 4, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(_build(Hidden, dtype, how), x)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["untracked_paths"] == ["backbone.0.weight"] and "autograd does not see" in verdict.reason
    # the forward evaluations still judge the hidden layer: a non-homogeneous backbone is caught
    broken = tc.check_homogeneity(_build(Hidden, dtype, how, nn.Softplus()), x)
    assert broken.status == "vacuous" and "backbone.0.weight" in broken.details["offending_layers"]
    biased = tc.check_homogeneity(_build(Hidden, dtype, how, None, True), x)
    assert biased.status == "vacuous" and biased.assumptions["no bias parameters"] is False


@pytest.mark.parametrize("dtype", DTYPES)
def test_hidden_functional_nonlinearity_is_violated(dtype):
    class HiddenTanh(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 8, bias=False), nn.Linear(8, 1, bias=False)

        def forward(self, x):
            with torch.no_grad():
                h = torch.tanh(self.a(x))
            return self.b(h)

    verdict = tc.check_homogeneity(_build(HiddenTanh, dtype), torch.randn(8, 4, dtype=dtype_of(dtype)))
    assert verdict.status == "violated" and verdict.details["offending_layers"] == ["a.weight"]


# --- N: wrappers, outputs, inputs -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_data_parallel_is_checked_through_its_module(dtype):
    model = nn.DataParallel(_build(_mlp, dtype))
    x = torch.randn(6, 4, dtype=dtype_of(dtype))
    assert tc.check_homogeneity(model, x).status == "holds"
    model.module[1] = nn.Tanh()
    assert tc.check_homogeneity(model, x).status == "vacuous"


@pytest.mark.filterwarnings("ignore")
def test_traced_model_is_refused_with_a_fix():
    model = _build(_mlp, "float64")
    traced = torch.jit.trace(model, torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(tc.InvalidArgument, match="TorchScript module.*Fix: pass the nn.Module before torch.jit"):
        tc.check_homogeneity(traced, torch.randn(6, 4, dtype=torch.float64))


def test_tuple_output_is_refused_with_a_fix():
    pair = _build(Around, "float64", lambda net, x: (net(x), net(x).detach()))
    with pytest.raises(tc.InvalidArgument, match=r"one tensor f\(x\).*a tuple \(\[0\] \(6, 1\).*Fix: wrap"):
        tc.check_homogeneity(pair, torch.randn(6, 4, dtype=torch.float64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_inputs_and_weights_are_inconclusive_empty_input_is_refused(dtype):
    model, x = _build(_mlp, dtype), torch.randn(6, 4, dtype=dtype_of(dtype))
    x[2, 1] = float("nan")
    assert tc.check_homogeneity(model, x).status == "inconclusive"
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    assert tc.check_homogeneity(model, x.nan_to_num()).status == "inconclusive"
    with pytest.raises(tc.InvalidArgument, match="non-empty x.*Fix"):
        tc.check_homogeneity(model, x[:0])


class Table(nn.Module):
    """Token ids -> rows of a learned table (linear in it) -> ReLU MLP."""

    def __init__(self, activation=None):
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 4))
        self.net = _mlp(activation=activation)

    def forward(self, ids):
        return self.net(self.table[ids].sum(1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_token_ids_are_taken_as_they_are(dtype):
    ids = torch.randint(0, 10, (6, 3))
    verdict = tc.check_homogeneity(_build(Table, dtype), ids)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.dtype == dtype and set(verdict.details["layers"]) == {"table", "net.0.weight", "net.2.weight"}
    assert tc.check_homogeneity(_build(Table, dtype, nn.Tanh()), ids).status == "vacuous"


def test_integer_ids_to_a_model_that_takes_features_say_what_to_do():
    with pytest.raises(tc.InvalidArgument, match="integer x is passed to the model as it is") as info:
        tc.check_homogeneity(_build(_mlp, "float64"), torch.randint(0, 10, (6, 4)))
    assert "to(float64)" not in str(info.value)


def test_integer_inputs_elsewhere_are_not_told_to_cast_token_ids():
    from theorycheck.core.inputs import as_batch

    with pytest.raises(tc.InvalidArgument, match="token ids: embed them") as info:
        as_batch(torch.randint(0, 10, (6, 4)), _build(_mlp, "float64"))
    assert ".to(" not in str(info.value)


# --- cost linear in depth: every layer scaled at once, each layer alone only to name a failure ------------

class Chain(nn.Module):
    """A bias-free chain of ``depth`` Linear layers with ReLU; ``odd`` replaces layer ``at``'s activation,
    or (``weight_clamp``) clamps that layer's weight in the forward."""

    def __init__(self, depth=6, at=None, odd=None, weight_clamp=False):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4 if k == 0 else 8, 8, bias=False) for k in range(depth)])
        self.at, self.odd, self.weight_clamp = at, odd, weight_clamp

    def forward(self, x):
        for k, layer in enumerate(self.layers):
            if k == self.at and self.weight_clamp:
                x = torch.relu(nn.functional.linear(x, layer.weight.clamp(-1.0, 1.0)))
            else:
                x = (self.odd if k == self.at and self.odd else torch.relu)(layer(x))
        return x.sum(1, keepdim=True)


DEEP_BREAKS = {  # break, input scale: thresholds the pre-activations never reach on their own
    "relu6 at 1e-4": (dict(at=3, odd=nn.functional.relu6), 1e-4),
    "dead zone at 1e-9": (dict(at=2, odd=lambda z: torch.where(z.abs() < 1e-9, 0 * z, torch.relu(z))), 1.0),
    "weight clamp": (dict(at=1, weight_clamp=True), 1.0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DEEP_BREAKS)
def test_breaks_deep_in_a_chain_are_caught_and_named(name, dtype):
    kwargs, scale = DEEP_BREAKS[name]
    x = scale * torch.randn(8, 4, dtype=dtype_of(dtype))
    torch.manual_seed(0)
    model = Chain(**kwargs).to(dtype_of(dtype))
    verdict = tc.check_homogeneity(model, x)
    assert verdict.status == "violated", verdict.summary()
    assert verdict.details["scaling_mode"] == "per layer"
    assert f"layers.{kwargs['at']}.weight" in verdict.details["offending_layers"]
    torch.manual_seed(0)
    fine = tc.check_homogeneity(Chain().to(dtype_of(dtype)), x)
    assert fine.status == "holds" and fine.details["scaling_mode"] == "joint", fine.summary()


def test_dropout_in_coupled_runs_asks_for_eval():
    """vmap refuses random operations: a training-mode dropout must be named, not raised from inside vmap."""
    from theorycheck.engines.coupled import coupled_sgd

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 1)).double()
    X, y = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)

    def loss(out, target):
        return (out.reshape(-1) - target) ** 2

    with pytest.raises(tc.InvalidArgument, match="deterministic model.*Fix: call model.eval"):
        coupled_sgd(model, loss, X, y, steps=2, step_size=0.01)
    assert coupled_sgd(model.eval(), loss, X, y, steps=2, step_size=0.01).distance.shape == (1, 3)


def test_bfloat16_autocast_inside_the_forward_is_measured():
    """bfloat16's roundoff bound on a ReLU net exceeds half of |f| on every sample: the identity cannot be
    resolved (inconclusive, not holds); a break far beyond the bound is still seen."""
    autocast = _build(Around, "float32", lambda net, x: _autocast(net, x))
    verdict = tc.check_homogeneity(autocast, torch.randn(8, 4))
    assert verdict.status == "inconclusive" and "bfloat16 arithmetic cannot resolve" in verdict.reason
    assert min(verdict.details["resolution"].values()) > 0.5
    assert verdict.details["arithmetic"] == "bfloat16" and verdict.dtype == "float32"
    autocast.net[1] = nn.Softplus()
    assert tc.check_homogeneity(autocast, torch.randn(8, 4)).details["offending_layers"] == ["net.0.weight"]


def _autocast(net, x):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return net(x).float()


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_fixed_to_one_batch_size_falls_back_and_says_why(dtype):
    fixed = _build(Around, dtype, lambda net, x: net(x).view(6, 1))
    verdict = tc.check_homogeneity(fixed, torch.randn(6, 4, dtype=dtype_of(dtype)))
    assert verdict.status == "holds", verdict.summary()
    assert "does not run on one more sample" in verdict.details["euler_method"]


def test_float64_inputs_to_a_forward_that_casts_them_are_taken():
    model = _build(CastsToFloat32, "float32")
    verdict = tc.check_homogeneity(model, torch.randn(8, 4, dtype=torch.float64))
    assert verdict.status == "holds" and verdict.details["arithmetic"] == "float32", verdict.summary()
    with pytest.raises(tc.InvalidArgument, match="expected x on the model's cpu / torch.float32"):
        tc.check_homogeneity(_build(_mlp, "float32"), torch.randn(8, 4, dtype=torch.float64))


class CheckpointedMiddle(nn.Module):
    """A checkpointed block between two layers: recomputed in the backward pass (reentrant or not)."""

    def __init__(self, reentrant, activation=None):
        super().__init__()
        self.a, self.c = nn.Linear(4, 8, bias=False), nn.Linear(8, 1, bias=False)
        self.b = nn.Linear(8, 8, bias=False)
        self.reentrant, self.activation = reentrant, activation or torch.relu

    def forward(self, x):
        block = lambda h: self.activation(self.b(h))  # noqa: E731
        return self.c(torch.utils.checkpoint.checkpoint(block, torch.relu(self.a(x)), use_reentrant=self.reentrant))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reentrant", [True, False])
def test_checkpointed_block_recomputed_in_the_backward_pass(reentrant, dtype):
    x = torch.randn(6, 4, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(_build(CheckpointedMiddle, dtype, reentrant), x)
    assert verdict.status == "holds", verdict.summary()
    assert ("autograd.grad refused" in verdict.details["euler_method"]) == reentrant
    broken = tc.check_homogeneity(_build(CheckpointedMiddle, dtype, reentrant, torch.tanh), x)
    assert broken.status == "violated" and "b.weight" in broken.details["offending_layers"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_entirely_under_no_grad_is_inconclusive_not_violated(dtype):
    class NoGradForward(nn.Module):
        def __init__(self, bias=False):
            super().__init__()
            self.net = _mlp(bias=bias)

        @torch.no_grad()
        def forward(self, x):
            return self.net(x)

    x = torch.randn(6, 4, dtype=dtype_of(dtype))
    verdict = tc.check_homogeneity(_build(NoGradForward, dtype), x)
    assert verdict.status == "inconclusive" and "autograd sees no path" in verdict.reason
    assert tc.check_homogeneity(_build(NoGradForward, dtype, True), x).status == "vacuous"


# --- low precision: what the arithmetic can resolve, and where it acts --------------------------------

class TwoLayers(nn.Module):
    """``inputs`` -> ``width`` -> 1, bias-free, with ``middle(self, h)`` between the layers and ``before(x)``
    applied to the input."""

    def __init__(self, middle, before=None, inputs=10, width=32):
        super().__init__()
        self.l1, self.l2 = nn.Linear(inputs, width, bias=False), nn.Linear(width, 1, bias=False)
        self.middle, self.before = middle, before or (lambda x: x)

    def forward(self, x):
        return self.l2(self.middle(self, self.l1(self.before(x))))


def _in_autocast(activation, noise=0.0):
    def middle(module, h):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = activation(h)
            return (h * (1 + noise * torch.randn_like(h))).to(torch.float32)
    return middle


def test_bfloat16_autocast_cannot_resolve_a_gelu_and_says_so():
    """GELU inside bfloat16 autocast is 47% of max|f| away from homogeneous, inside bfloat16's bound: not holds."""
    torch.manual_seed(0)
    x = torch.randn(16, 10)
    functional = Around(lambda net, x: _autocast(net, x))
    functional.net = nn.Sequential(nn.Linear(10, 32, bias=False), nn.ReLU(), nn.Linear(32, 1, bias=False))
    functional.net[1].forward = torch.nn.functional.gelu  # a GELU the module scan cannot see
    verdict = tc.check_homogeneity(functional, x)
    assert verdict.status == "inconclusive" and "bfloat16 arithmetic cannot resolve" in verdict.reason
    assert verdict.details["euler_method"] == "hooks"  # bfloat16 rounding is not "used outside its module"


@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_below_the_roundoff_bound_is_still_random(dtype):
    """Two identical CPU passes are bitwise equal: noise of a few units of roundoff is randomness."""
    unit = torch.finfo(dtype_of(dtype)).eps
    noisy = _build(TwoLayers, dtype, lambda m, h: torch.relu(h) * (1 + 4 * unit * torch.randn_like(h)))
    verdict = tc.check_homogeneity(noisy, torch.randn(8, 10, dtype=dtype_of(dtype)))
    assert verdict.status == "vacuous" and verdict.assumptions["deterministic forward (no dropout or other " \
        "training-mode randomness)"] is False, verdict.summary()
    assert "bitwise" in verdict.reason
    autocast = _build(TwoLayers, "float32", _in_autocast(torch.relu, noise=0.05))
    assert tc.check_homogeneity(autocast, torch.randn(8, 10)).status == "vacuous"


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_cast_of_the_input_alone_does_not_set_the_arithmetic(dtype):
    """x.half() before any layer changes f's input, not the weights' roundoff: the sweep and tolerances stay the
    model's, so clamp(min=1e-6) as a ReLU is caught."""
    quantize = lambda x: x.half().to(x.dtype)  # noqa: E731
    x = torch.randn(16, 10, dtype=dtype_of(dtype))
    relu = tc.check_homogeneity(_build(TwoLayers, dtype, lambda m, h: torch.relu(h), quantize), x)
    assert relu.status == "holds" and relu.details["arithmetic"] == "float64", relu.summary()  # the exact copy
    assert relu.details["decades_not_covered"] == []
    clamp = tc.check_homogeneity(_build(TwoLayers, dtype, lambda m, h: h.clamp(min=1e-6), quantize), x)
    assert clamp.status == "violated" and clamp.details["offending_layers"] == ["l1.weight"], clamp.summary()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_sweep_cut_short_by_a_hidden_half_cast_is_not_holds(dtype):
    """Hidden activations in float16: the sweep reaches 10^4 at most; the rest of the model's range is untested."""
    hidden = _build(TwoLayers, dtype, lambda m, h: torch.relu(h).half().to(h.dtype), None, 4, 4)
    verdict = tc.check_homogeneity(hidden, torch.randn(8, 4, dtype=dtype_of(dtype)))
    assert verdict.status != "holds" and verdict.details["arithmetic"] == "float16", verdict.summary()
    if verdict.status == "inconclusive":
        assert "limited by float16's range to pre-activations 10^-3..10^3" in verdict.reason
    assert verdict.details["decades_not_covered"][0] == (-240 if dtype == "float64" else -30)


# --- the model is never changed ---------------------------------------------------------------------

class Looked(nn.Module):
    """Ids -> an embedding table (mean over the sequence) -> a bias-free ReLU MLP."""

    def __init__(self, table="embedding", max_norm=None, activation=None):
        super().__init__()
        self.table = table
        self.e = (nn.EmbeddingBag(50, 8, mode="mean") if table == "bag" else
                  nn.Embedding(50, 8, max_norm=max_norm) if table == "embedding" else
                  nn.Linear(50, 8, bias=False))
        self.l1, self.l2 = nn.Linear(8, 16, bias=False), nn.Linear(16, 1, bias=False)
        self.activation = activation or torch.relu

    def forward(self, ids):
        if self.table == "one_hot":
            z = torch.nn.functional.one_hot(ids, 50).to(self.e.weight.dtype).mean(1) @ self.e.weight.T
        else:
            z = self.e(ids) if self.table == "bag" else self.e(ids).mean(1)
        return self.l2(self.activation(self.l1(z)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_forward_that_writes_into_its_parameters_leaves_the_model_unchanged(dtype):
    """nn.Embedding(max_norm) renormalizes the rows it looks up in place: the checks run on copies."""
    torch.manual_seed(0)
    model = Looked(max_norm=0.5).to(dtype_of(dtype))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    verdict = tc.check_homogeneity(model, torch.randint(0, 50, (12, 5)))
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert verdict.status != "holds" and "max_norm" in str(verdict.details["non_homogeneous_modules"])


# --- what f depends on, measured ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_tables_are_weight_layers_by_measurement(dtype):
    """A lookup is linear in its table: Embedding, EmbeddingBag and one_hot(ids) @ E are the same map."""
    ids = torch.randint(0, 50, (12, 5))
    for table in ("embedding", "bag", "one_hot"):
        verdict = tc.check_homogeneity(_build(Looked, dtype, table), ids)
        assert verdict.status == "holds" and "e.weight" in verdict.details["layers"], (table, verdict.summary())
        assert verdict.details["parameter_roles"]["e.weight"].startswith("weight")
    broken = tc.check_homogeneity(_build(Looked, dtype, "embedding", None, torch.tanh), ids)
    assert broken.status == "violated" and "e.weight" in broken.details["offending_layers"], broken.summary()


class Heads(nn.Module):
    """A ReLU MLP with an auxiliary head ``aux`` used only by a training loss elsewhere (or ``gated`` x 0)."""

    def __init__(self, use_aux="unused"):
        super().__init__()
        self.l1, self.l2, self.aux = (nn.Linear(10, 32, bias=False), nn.Linear(32, 1, bias=False),
                                      nn.Linear(32, 5, bias=False))
        self.use_aux = use_aux

    def forward(self, x):
        h = torch.relu(self.l1(x))
        out = self.l2(h)
        if self.use_aux == "gated":
            return out + 0 * self.aux(h).sum(1, keepdim=True)
        if self.use_aux == "only":
            return x.sum(1, keepdim=True)
        return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_head_f_does_not_depend_on_is_not_a_layer_of_f(dtype):
    x = torch.randn(16, 10, dtype=dtype_of(dtype))
    for use in ("unused", "gated"):
        verdict = tc.check_homogeneity(_build(Heads, dtype, use), x)
        assert verdict.status == "holds", verdict.summary()
        assert verdict.details["independent_layers"] == ["aux.weight"] and "aux.weight" not in verdict.details["layers"]
        assert "f does not depend on" in verdict.reason or "does not depend on" in verdict.reason
    none = tc.check_homogeneity(_build(Heads, dtype, "only"), x)
    assert none.status == "vacuous" and "does not depend on any weight layer" in none.reason


class Standardized(nn.Module):
    """(x - mu) / sd before a bias-free ReLU MLP, mu and sd as buffers or frozen parameters; ``after``: an
    offset mu2 after the first layer instead."""

    def __init__(self, kind="buffer", after=False):
        super().__init__()
        mu, sd = torch.randn(10), torch.rand(10) + 0.5
        if kind == "buffer":
            self.register_buffer("mu", mu)
            self.register_buffer("sd", sd)
        else:
            self.mu, self.sd = nn.Parameter(mu, requires_grad=False), nn.Parameter(sd, requires_grad=False)
        self.l1, self.l2 = nn.Linear(10, 32, bias=False), nn.Linear(32, 1, bias=False)
        self.after = after

    def forward(self, x):
        if self.after:
            return self.l2(torch.relu(self.l1(x) - self.mu.repeat(4)[:32]))
        return self.l2(torch.relu(self.l1((x - self.mu) / self.sd)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_frozen_preprocessing_parameters_are_constants_like_buffers(dtype):
    x = torch.randn(16, 10, dtype=dtype_of(dtype))
    for kind in ("buffer", "frozen"):
        verdict = tc.check_homogeneity(_build(Standardized, dtype, kind), x)
        assert verdict.status == "holds", (kind, verdict.summary())
    frozen = tc.check_homogeneity(_build(Standardized, dtype, "frozen"), x)
    assert frozen.details["frozen_constants"] == ["mu", "sd"] and "held constant like buffers" in frozen.reason
    after = tc.check_homogeneity(_build(Standardized, dtype, "frozen", True), x)  # an offset after a layer
    assert after.status == "vacuous" and after.assumptions["no bias parameters"] is False, after.summary()
    assert "held constant, the identities fail" in after.reason
    assert tc.check_homogeneity(_build(Standardized, dtype, "buffer", True), x).status == "violated"


# --- thresholds far outside the inputs' range ------------------------------------------------------------

@pytest.mark.parametrize("dtype, thresholds", [("float64", (1e-25, 1e20, 1e-100, 1e200)),
                                               ("float32", (1e-20, 1e20))])
def test_thresholds_past_fifteen_decades_are_crossed(dtype, thresholds):
    x = torch.randn(16, 10, dtype=dtype_of(dtype))
    relu = tc.check_homogeneity(_build(TwoLayers, dtype, lambda m, h: torch.relu(h)), x)
    assert relu.status == "holds" and relu.details["decades_judged"][-1] == 240, relu.summary()  # float64 copy
    assert "j judged in -240..240" in relu.tolerance_basis
    for t in thresholds:
        cut = ((lambda m, h, t=t: torch.where(h.abs() > t, torch.relu(h), torch.zeros_like(h))) if t < 1 else
               (lambda m, h, t=t: torch.relu(h).clamp(max=t)))
        verdict = tc.check_homogeneity(_build(TwoLayers, dtype, cut), x)
        assert verdict.status == "violated" and "l1.weight" in verdict.details["offending_layers"], (t, verdict.summary())


@pytest.mark.parametrize("dtype, gain", [("float64", 1e150), ("float32", 1e15)])
def test_weights_near_the_range_edge_keep_the_sweep_in_range(dtype, gain):
    """Medians ~gain^2: the sweep's decades 10^j / m leave float64's range; their ratios are taken in logs."""
    model = _build(TwoLayers, dtype, lambda m, h: torch.relu(h))
    with torch.no_grad():
        model.l1.weight.mul_(gain)
        model.l2.weight.mul_(gain)
    verdict = tc.check_homogeneity(model, torch.randn(16, 10, dtype=dtype_of(dtype)))
    assert verdict.status == "holds", verdict.summary()
