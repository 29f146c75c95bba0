"""A forward in training mode (dropout, BatchNorm batch statistics) or one that couples samples: measured on
the instance, it is vacuous (random, buffers changed) or undecided (samples coupled: the per-sample roundoff
bound does not cover it), never a roundoff-sized 'violated' nor a raw error."""

import pytest
import torch

import theorycheck as tc
from theorycheck.engines.batch_behaviour import measure_batch_behaviour

DTYPES = [torch.float32, torch.float64]


class BatchCentred(torch.nn.Module):
    """z - mean over the batch: couples the samples, no buffers, deterministic."""

    def forward(self, z):
        return z - z.mean(0, keepdim=True)


class NextSample(torch.nn.Module):
    """z_n + z_{n+1}: sample n depends on one other sample only."""

    def forward(self, z):
        return z + torch.roll(z, 1, dims=0)


def _net(middle, dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 4), middle,
                               torch.nn.ReLU(), torch.nn.Linear(4, 1)).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_measurement_sees_randomness_buffer_updates_and_every_coupled_pair(dtype):
    X = torch.randn(5, 3, dtype=dtype)
    bn = measure_batch_behaviour(_net(torch.nn.BatchNorm1d(4), dtype), X)
    assert (bn.random, bn.mutates_buffers, bn.coupled) == (False, True, True)
    assert measure_batch_behaviour(_net(torch.nn.BatchNorm1d(4), dtype).eval(), X).per_sample
    for p in (0.5, 1e-9):  # a rate so small that no unit drops is still a random forward
        assert measure_batch_behaviour(_net(torch.nn.Dropout(p), dtype), X).random
    assert measure_batch_behaviour(_net(torch.nn.Dropout(0.0), dtype), X).per_sample
    for module in (BatchCentred(), NextSample()):
        found = measure_batch_behaviour(_net(module, dtype), X)
        assert (found.random, found.mutates_buffers, found.coupled) == (False, False, True)
    model = _net(torch.nn.BatchNorm1d(4), dtype)
    measure_batch_behaviour(model, X)
    assert int(model[3].num_batches_tracked) == 0  # the model itself is not run
    assert measure_batch_behaviour(_net(BatchCentred(), dtype), X[:1]).coupled is False  # one sample

    class Untracked(torch.nn.Module):
        def forward(self, z):
            with torch.no_grad():
                return z - z.mean(0)
    assert measure_batch_behaviour(Untracked(), X).coupled is None  # autograd cannot see it: not claimed


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("middle", [lambda: torch.nn.BatchNorm1d(4), BatchCentred], ids=["batchnorm-train", "centred"])
def test_coupled_samples_at_an_exact_minimum_are_never_violated(middle, dtype):
    """The identities hold exactly (H(T theta) = T^-1 H T^-1, H = J^T J at r = 0) but the per-sample bound
    does not cover batch statistics: a gap of roundoff size is undecided."""
    torch.manual_seed(0)
    X = torch.randn(5, 3, dtype=dtype)
    model = _net(middle(), dtype)
    with torch.no_grad():
        y = model(X)
    for check in (tc.check_gauss_newton, tc.check_flat_minima):
        verdict = check(model, X, y)
        assert verdict.status == "inconclusive" and "coupled" in verdict.reason, verdict.summary()
        assert verdict.details["batch_behaviour"]["coupled"] is True


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_same_network_in_eval_mode_holds(dtype):
    torch.manual_seed(0)
    X = torch.randn(5, 3, dtype=dtype)
    model = _net(torch.nn.BatchNorm1d(4), dtype).eval()
    with torch.no_grad():
        y = model(X)
    for check in (tc.check_gauss_newton, tc.check_flat_minima):
        assert check(model, X, y).status == "holds"


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_in_training_mode_is_vacuous_and_says_call_eval(dtype):
    torch.manual_seed(0)
    X = torch.randn(5, 3, dtype=dtype)
    y = torch.zeros(5, 1, dtype=dtype)
    for p in (0.3, 1e-9):  # at 1e-9 no unit drops, yet the forward draws: torch.func could not differentiate it
        model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Dropout(p),
                                    torch.nn.Linear(6, 1)).to(dtype)
        for check in (tc.check_gauss_newton, tc.check_flat_minima):
            verdict = check(model, X, y)
            assert verdict.status == "vacuous" and "model.eval()" in verdict.reason, verdict.summary()
    wn_X, wn_y = torch.randn(8, 4, dtype=dtype), torch.tensor([1.0, -1.0] * 4, dtype=dtype)
    for middle in (torch.nn.Dropout(0.3), torch.nn.BatchNorm1d(6, affine=False)):
        net = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False), middle, torch.nn.ReLU(),
                                  torch.nn.Linear(6, 1, bias=False)).to(dtype)
        verdict = tc.check_weight_norm(net, wn_X, wn_y)
        assert verdict.status == "vacuous" and "model.eval()" in verdict.reason, verdict.summary()


@pytest.mark.parametrize("dtype,scale,expected", [(torch.float64, 1e-160, "inconclusive"),
                                                   (torch.float32, 1e-18, "holds")], ids=["float64", "float32"])
def test_inputs_at_the_edge_of_the_range_are_never_violated(dtype, scale, expected):
    """X x 1e-160 in float64: Hessian entries ~1e-320 are subnormal and the roundoff bounds underflow to 0, so
    nothing can be decided (inconclusive, never a 'violated' from a bound of 0); float32 inputs x 1e-18 stay
    normal in the float64 copy and hold."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6, bias=False), torch.nn.ReLU(), torch.nn.Linear(6, 5, bias=False),
                                torch.nn.ReLU(), torch.nn.Linear(5, 1, bias=False)).to(dtype)
    X = torch.randn(5, 3, dtype=dtype) * scale
    with torch.no_grad():
        y = model(X)
    for check in (tc.check_gauss_newton, tc.check_flat_minima):
        verdict = check(model, X, y)
        assert verdict.status == expected, verdict.summary()
        if expected == "inconclusive":
            assert "underflow" in verdict.reason


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_on_coupled_samples_is_never_violated(dtype):
    """z - mean over the batch is linear in each layer (the identities hold) but couples the samples: the
    per-sample bound does not cover it, so only a pass within it is decided."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False), BatchCentred(), torch.nn.ReLU(),
                              torch.nn.Linear(6, 1, bias=False)).to(dtype)
    X, y = torch.randn(8, 4, dtype=dtype), torch.tensor([1.0, -1.0] * 4, dtype=dtype)
    verdict = tc.check_weight_norm(net, X, y)
    assert verdict.status == "holds" and verdict.details["batch_behaviour"]["coupled"] is True
    assert "coupled" in verdict.reason


def test_checks_called_with_keywords_or_bad_models_answer_as_checks():
    """The thread-sizing wrapper reads (model, X) however they are passed, and leaves refusals to the checks."""
    model, X = _net(torch.nn.Identity(), torch.float64), torch.randn(5, 3, dtype=torch.float64)
    assert tc.check_gauss_newton(model=model, X=X, y=model(X).detach()).status == "holds"
    labels = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    assert tc.check_weight_norm(model=model, X=X, y=labels).status == "vacuous"  # biases: measured, not refused
    for check in (tc.check_flat_minima, tc.check_weight_norm):
        with pytest.raises(tc.InvalidArgument, match="torch.nn.Module"):
            check("not a model", X, labels)
