"""random_label_margin: trained to zero error, random-label nets have the smaller normalized margin (sign test);
the normalization removes the scale a run reached; runs short of interpolation say nothing; swapped arms are caught."""

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.generate.data import digits
from theorycheck.core.errors import InvalidArgument
from theorycheck.core.kit import KITS

RNG = np.random.default_rng(0)
LOW, HIGH = RNG.uniform(0.01, 0.05, size=(7, 30)), RNG.uniform(0.2, 0.5, size=(7, 30))


def test_true_labels_with_larger_margins_hold_and_the_reverse_is_violated():
    held = tc.check_random_label_margin(HIGH, LOW)
    assert held.status == "holds" and held.details["wins"] == 7 and held.statistic == pytest.approx(0.5 ** 7)
    assert held.details["median_ratio"] > 4
    reverse = tc.check_random_label_margin(LOW, HIGH)
    assert reverse.status == "violated" and reverse.details["p_reverse"] == pytest.approx(0.5 ** 7)


def test_no_difference_is_undecided_and_too_few_pairs_or_a_training_error_say_nothing():
    mixed = np.concatenate([HIGH[:4], LOW[:3]])
    undecided = tc.check_random_label_margin(mixed, np.concatenate([LOW[:4], HIGH[:3]]))
    assert undecided.status == "inconclusive" and "undecided" in undecided.reason
    few = tc.check_random_label_margin(HIGH[:5], LOW[:5])  # 1/32 > alpha: the run cannot decide
    assert few.status == "inconclusive" and "cannot reach" in few.reason
    assert all(few.assumptions.values())
    misfit = LOW.copy()
    misfit[0, 0] = -0.01
    unmet = tc.check_random_label_margin(HIGH, misfit)
    assert unmet.status == "vacuous" and "fits random labels" in unmet.reason
    nan = HIGH.copy()
    nan[1, 1] = np.nan
    assert tc.check_random_label_margin(nan, LOW).status == "inconclusive"


def test_trained_digit_nets_hold_and_the_normalization_removes_the_scale():
    data = digits(64, classes=(3, 8), seed=1, dtype=torch.float32)
    torch.manual_seed(123)
    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(7), steps=1500)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # the caller's global generator is left as it was
    verdict = tc.check_random_label_margin(pairs["true"], pairs["random"])
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["training_error"] == {"true": 0.0, "random": 0.0} and verdict.details["median_ratio"] > 2
    run_again = tc.label_margin_pairs(data.X, data.y, seeds=range(7), steps=1500)
    assert torch.equal(run_again["random"], pairs["random"])  # reproducible: the same streams every time


def test_normalized_margins_are_invariant_to_layer_rescaling():
    from theorycheck.engines.ensemble import Ensemble

    X = torch.randn(10, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    net = Ensemble.random(3, (4, 8, 8, 1), seed=5)
    rho = lambda e: torch.stack([W.flatten(1).norm(dim=1) for W in e.weights]).prod(0)[:, None]  # noqa: E731
    before = net.outputs(X) / rho(net)
    scaled = Ensemble([net.weights[0] * 10.0, net.weights[1] * 0.5, net.weights[2] * 30.0])
    assert not torch.allclose(scaled.outputs(X), net.outputs(X))
    assert torch.allclose(scaled.outputs(X) / rho(scaled), before, rtol=1e-13, atol=0)


def test_stopped_short_of_interpolation_is_vacuous():
    data = digits(64, classes=(0, 6), seed=2, dtype=torch.float32)
    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(7), steps=50)
    verdict = tc.check_random_label_margin(pairs["true"], pairs["random"])
    assert verdict.status == "vacuous" and verdict.details["training_error"]["random"] > 0


def test_bad_input_names_what_was_expected():
    with pytest.raises(InvalidArgument, match=r"two \(S, N\) arrays"):
        tc.check_random_label_margin(HIGH, LOW[:, :5])
    with pytest.raises(InvalidArgument, match="0 < alpha < 1"):
        tc.check_random_label_margin(HIGH, LOW, alpha=1.5)


def test_the_swapped_control_reverses_its_instance_on_the_same_runs():
    """arms_swapped-k draws instance k's stream: the same digits, seeds and random labels, the runs trained
    once (cached), and the checker sees the reverse effect of the instance's."""
    from theorycheck.claims import random_label_margin as rlm

    cases = {c.name: c for c in tc.CLAIMS["random_label_margin"].audit_cases(n=2, seed=0, device="cpu",
                                                                               dtype="float32")}
    rlm._digit_pairs.cache_clear()
    instance, control = cases["instance-1"].run(), cases["control-arms_swapped-1"].run()
    assert rlm._digit_pairs.cache_info().hits == 1 and rlm._digit_pairs.cache_info().misses == 1
    assert instance.status == "holds" and control.status == "violated"
    assert (control.details["wins"], control.details["losses"]) == (instance.details["losses"],
                                                                    instance.details["wins"])


def test_training_stops_at_the_first_check_with_every_run_fitted_on_the_same_iterates():
    data = digits(64, classes=(3, 8), seed=1, dtype=torch.float64)
    stopped = tc.label_margin_pairs(data.X, data.y, seeds=range(7), steps=1500, check_every=100)
    assert stopped["steps"] % 100 == 0 and stopped["steps"] < 1500
    assert bool((stopped["true"] > 0).all() and (stopped["random"] > 0).all())
    assert not (stopped["run"].min_margin[-101] > 0).all()  # not yet fitted at the check before
    whole = tc.label_margin_pairs(data.X, data.y, seeds=range(7), steps=stopped["steps"])
    assert torch.equal(whole["true"], stopped["true"]) and torch.equal(whole["random"], stopped["random"])


# --- the user's own networks and training loop ---------------------------------------------------

class _Net(torch.nn.Module):
    """A user's network (not the toolkit's MLP): ReLU then LeakyReLU, depth 3, optional biases or tanh."""

    def __init__(self, bias=False, smooth=False):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(64, 16, bias=bias), torch.nn.Linear(16, 16, bias=bias)
        self.out, self.smooth = torch.nn.Linear(16, 1, bias=bias), smooth

    def forward(self, x):
        h = torch.tanh(self.fc1(x)) if self.smooth else torch.relu(self.fc1(x))
        return self.out(torch.nn.functional.leaky_relu(self.fc2(h), 0.1))


def _adam(steps):
    def train(net, X, labels):  # the user's loop: Adam, not GD
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(steps):
            optimizer.zero_grad()
            torch.nn.functional.softplus(-labels * net(X).reshape(-1)).sum().backward()
            optimizer.step()
    return train


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_your_own_network_and_training_loop(dtype):
    data = digits(24, classes=(3, 8), seed=1, dtype=dtype)
    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(7), model=lambda: _Net().to(dtype), train=_adam(50))
    assert len(pairs["homogeneous"]) == 14 and all(pairs["homogeneous"].values())
    verdict = tc.check_random_label_margin(pairs)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.assumptions[KITS["random_label_margin"].assumptions["homogeneous"]] is True


@pytest.mark.parametrize("kw", [{"bias": True}, {"smooth": True}], ids=["biases", "functional-tanh"])
def test_networks_whose_normalized_margin_depends_on_scale_are_vacuous(kw):
    """Biases, or a tanh inside forward: f(W) != prod ||W_k|| f(V), measured on each trained network."""
    data = digits(24, classes=(3, 8), seed=1, dtype=torch.float64)
    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(7), model=lambda: _Net(**kw).double(), train=_adam(5))
    verdict = tc.check_random_label_margin(pairs)
    assert verdict.status == "vacuous" and "homogeneous" in " ".join(verdict.failed_assumptions), verdict.summary()


def test_your_loop_needs_your_network_and_the_dict_its_keys():
    data = digits(8, classes=(3, 8), seed=1, dtype=torch.float64)
    with pytest.raises(InvalidArgument, match="train= with model="):
        tc.label_margin_pairs(data.X, data.y, seeds=range(2), train=_adam(1))
    with pytest.raises(InvalidArgument, match="keys 'true', 'random'"):
        tc.check_random_label_margin({"true": HIGH})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_labels_other_than_plus_minus_one_and_other_shapes_are_refused(dtype):
    data = digits(8, classes=(3, 8), seed=1, dtype=dtype)
    net = lambda: _Net().to(dtype)  # noqa: E731
    for labels, what in ((3 * data.y, "label values"), ((data.y + 1) / 2, "label values"),
                         (data.y[:, None], "one label per row")):
        for model in (None, net):
            with pytest.raises(InvalidArgument, match=what):
                tc.label_margin_pairs(data.X, labels, seeds=range(2), model=model, steps=1)
    two = lambda: torch.nn.Linear(64, 2, bias=False).to(dtype)  # noqa: E731
    with pytest.raises(InvalidArgument, match="one output per sample"):
        tc.label_margin_pairs(data.X, data.y, seeds=range(2), model=two, train=_adam(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_frozen_layer_is_measured_as_a_layer(dtype):
    data = digits(8, classes=(3, 8), seed=1, dtype=dtype)

    def frozen():
        net = _Net().to(dtype)
        next(net.parameters()).requires_grad_(False)
        return net

    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(2), model=frozen, train=_adam(1))
    assert all(held is True for held in pairs["homogeneous"].values()), pairs["homogeneous"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("middle", [lambda: torch.nn.BatchNorm1d(16, affine=False), lambda: torch.nn.Dropout(0.2)],
                         ids=["batchnorm-train", "dropout-train"])
def test_a_network_left_in_training_mode_has_no_per_sample_margin(middle, dtype):
    """Batch statistics or dropout: f(x_n) is not a function of x_n alone, so no normalized margin exists to
    compare (measured per run: not homogeneous), never a raw error from the measurement."""
    data = digits(8, classes=(3, 8), seed=1, dtype=dtype)

    def make():
        return torch.nn.Sequential(torch.nn.Linear(64, 16, bias=False), middle(), torch.nn.ReLU(),
                                   torch.nn.Linear(16, 1, bias=False)).to(dtype)

    pairs = tc.label_margin_pairs(data.X, data.y, seeds=range(2), model=make, train=_adam(1))
    assert not any(pairs["homogeneous"].values())
    verdict = tc.check_random_label_margin(pairs)
    assert verdict.status == "vacuous" and "homogeneous" in " ".join(verdict.failed_assumptions)
