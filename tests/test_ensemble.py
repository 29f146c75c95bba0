"""The batched ensemble engine against the loop a researcher writes (nn.Sequential + torch.optim.SGD per
network) and against theorycheck.train; its constructors, bad input and non-finite runs."""

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import theorycheck as tc
from theorycheck.core.devices import gamma
from theorycheck.engines.ensemble import Ensemble, mlp, sgd_indices, train_ensemble

WIDTHS = (5, 8, 8, 1)
N, STEPS, LR = 24, 25, 0.02
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _data(dtype, n=N, d=WIDTHS[0], seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    y = torch.where(X[:, 0] >= 0, 1.0, -1.0)  # separable through 0: exp-loss SGD stays bounded
    return X.to(dtype), y.to(dtype)


def _loop(models, X, y, *, lr, steps, loss, indices=None, momentum=0.0):
    """The reference: one model and one torch.optim.SGD per network, records on the full data at every step."""
    per_sample = {"logistic": lambda q: F.softplus(-q), "exp": lambda q: torch.exp(-q)}[loss]
    records = {"log_loss": [], "min_margin": [], "layer_norms_sq": []}
    for e, model in enumerate(models):
        Xe, ye = (X[e], y[e]) if X.ndim == 3 else (X, y)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        rows = []
        for t in range(steps + 1):
            with torch.no_grad():
                q = ye * model(Xe).squeeze(1)
                rows.append([float(torch.log(per_sample(q).sum())), float(q.min())]
                            + [float((p * p).sum()) for p in model.parameters()])
            if t == steps:
                break
            batch = slice(None) if indices is None else indices[t, e]
            optimizer.zero_grad()
            q = ye[batch] * model(Xe[batch]).squeeze(1)
            (per_sample(q).sum() * (len(ye) / len(q))).backward()
            optimizer.step()
        rows = np.array(rows)
        records["log_loss"].append(rows[:, 0])
        records["min_margin"].append(rows[:, 1])
        records["layer_norms_sq"].append(rows[:, 2:])
    return {k: np.stack(v, axis=1) for k, v in records.items()}


def _tolerance(dtype, steps, n=N, widths=WIDTHS, extra=0):
    """2 T gamma_K, K = N + max width + depth (+ ``extra`` roundings): each step's gradient (a sum over N samples
    of products through the layers) is rounded to gamma_K relative in either program, and a non-expansive step
    (small lr) adds the two programs' deviations at most linearly over T steps."""
    return 2 * steps * gamma(n + max(widths) + len(widths) + extra, dtype)


def _relative(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _compare(run, ensemble, models, reference):
    worst = max((_relative(getattr(run, name), reference[name]) for name in reference), default=0.0)
    for k, W in enumerate(ensemble.weights):
        final = torch.stack([[p for p in m.parameters()][k].detach() for m in models])
        worst = max(worst, float((W - final).norm() / final.norm()))
    return worst


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear"])
@pytest.mark.parametrize("method,loss", [("gd", "logistic"), ("gd", "exp"), ("sgd", "logistic"), ("sgd", "exp")])
def test_matches_the_plain_loop(dtype, activation, method, loss):
    X, y = _data(DTYPES[dtype])
    ensemble = Ensemble.random(3, WIDTHS, activation=activation, negative_slope=0.1, dtype=DTYPES[dtype], seed=1)
    models = ensemble.to_models()
    lr = LR if method == "gd" else LR / 4  # SGD's batch sum is scaled by N / b = 4
    run = train_ensemble(ensemble, X, y, lr=lr, steps=STEPS, loss=loss, method=method,
                         batch_size=6 if method == "sgd" else None, chunk=2)
    indices = None if run.indices is None else torch.as_tensor(run.indices)
    reference = _loop(models, X, y, lr=lr, steps=STEPS, loss=loss, indices=indices)
    assert (run.non_finite == -1).all()
    assert _compare(run, ensemble, models, reference) <= _tolerance(DTYPES[dtype], STEPS)


@pytest.mark.parametrize("change", ["step size 1e-9 larger", "momentum"])
def test_a_different_loop_is_told_apart(change):
    """Negative control: the comparison's float64 tolerance separates a loop that is not the same iteration."""
    X, y = _data(torch.float64)
    ensemble = Ensemble.random(3, WIDTHS, dtype=torch.float64, seed=1)
    models = ensemble.to_models()
    run = train_ensemble(ensemble, X, y, lr=LR, steps=STEPS)
    lr, momentum = (LR * (1 + 1e-9), 0.0) if change.startswith("step") else (LR, 0.9)
    reference = _loop(models, X, y, lr=lr, steps=STEPS, loss="logistic", momentum=momentum)
    assert _compare(run, ensemble, models, reference) > _tolerance(torch.float64, STEPS)


def test_per_network_datasets():
    E = 3
    generator = torch.Generator().manual_seed(5)
    X = torch.randn(E, N, WIDTHS[0], generator=generator, dtype=torch.float64)
    y = torch.where(X[..., 1] >= 0, 1.0, -1.0)
    ensemble = Ensemble.random(E, WIDTHS, seed=2)
    models = ensemble.to_models()
    run = train_ensemble(ensemble, X, y, lr=LR, steps=STEPS)
    reference = _loop(models, X, y, lr=LR, steps=STEPS, loss="logistic")
    assert _compare(run, ensemble, models, reference) <= _tolerance(torch.float64, STEPS)


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_agrees_with_single_network_train(method):
    """network e under sgd_indices(seed=s) takes the batches of tc.train(method="sgd", seed=s + e); the
    records at train's record steps agree (train's update is exp(log L) grad log L: the same to roundoff)."""
    X, y = _data(torch.float64)
    ensemble = Ensemble.random(2, WIDTHS, activation="leaky_relu", negative_slope=0.1, seed=3)
    models = ensemble.to_models()
    run = train_ensemble(ensemble, X, y, lr=LR, steps=STEPS, method=method, batch_size=5 if method == "sgd" else None,
                         seed=7)
    tolerance = _tolerance(torch.float64, STEPS, extra=4)  # + train's log-space round trip: log, exp, p_n, product
    for e, model in enumerate(models):
        single = tc.train(model, X, y, loss="logistic", method=method, lr=LR, steps=STEPS, log_loss_target=-1e9,
                          batch_size=5 if method == "sgd" else None, seed=7 + e)
        at = single.records["step"].astype(int)
        assert _relative(run.log_loss[at, e], single.records["log_loss"]) <= tolerance
        assert _relative(run.min_margin[at, e], single.records["min_margin"]) <= tolerance
        assert _relative(run.layer_norms_sq[at, e], single.records["layer_norms"] ** 2) <= tolerance


def test_sgd_indices_are_epochs_of_permutations():
    indices = sgd_indices(3, 10, 4, 7, seed=1)
    assert indices.shape == (7, 3, 4)
    for e in range(3):
        flat = indices[:, e].reshape(-1)
        assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:20].tolist()) == list(range(10))
    assert not torch.equal(indices[:, 0], indices[:, 1])


def test_models_round_trip_and_outputs():
    torch.manual_seed(0)
    models = [mlp(WIDTHS, "leaky_relu", 0.2) for _ in range(4)]
    ensemble = Ensemble.from_models(models)
    assert ensemble.size == 4 and ensemble.widths == WIDTHS and ensemble.negative_slope == 0.2
    X, _ = _data(torch.float64)
    expected = torch.stack([m(X).squeeze(1) for m in models]).detach()
    assert torch.allclose(ensemble.outputs(X), expected, rtol=0, atol=_tolerance(torch.float64, 1) * expected.abs().max())
    for a, b in zip(ensemble.to_models(), models):
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert [type(m) for m in a] == [type(m) for m in b]


def test_chunks_do_not_change_the_result():
    X, y = _data(torch.float64)
    runs = []
    for chunk in (1, 2, 5):
        ensemble = Ensemble.random(5, WIDTHS, seed=4)
        runs.append(train_ensemble(ensemble, X, y, lr=LR, steps=STEPS, chunk=chunk))
    for run in runs[1:]:
        assert _relative(run.log_loss, runs[0].log_loss) <= _tolerance(torch.float64, STEPS)


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_chunks_in_threads_give_the_one_thread_result(method):
    """With two torch threads the chunks run side by side (torch's op threads set to one meanwhile): the same
    operations on the same chunks, so the records and weights are bitwise those of the one-thread run, and the
    caller's thread setting is back afterwards."""
    X, y = _data(torch.float64)
    X.requires_grad_(True)  # a leaf with grad: read as data, never differentiated
    kwargs = dict(lr=LR, steps=STEPS, chunk=2, method=method, batch_size=6 if method == "sgd" else None)
    before = torch.get_num_threads()
    runs, ensembles = [], []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ensembles.append(Ensemble.random(5, WIDTHS, seed=4))
            runs.append(train_ensemble(ensembles[-1], X, y, **kwargs))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    for name in ("log_loss", "min_margin", "layer_norms_sq"):
        np.testing.assert_array_equal(getattr(runs[0], name), getattr(runs[1], name))
    assert all(torch.equal(a, b) for a, b in zip(*(e.weights for e in ensembles)))


class _HalvedLinear(nn.Linear):
    """A Linear layer applying half its weight: stacking its weight would train another network."""

    def forward(self, x):
        return F.linear(x, self.weight / 2)


@pytest.mark.parametrize("models,match", [
    ([nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1, bias=False))], "bias-free"),
    ([nn.Sequential(_HalvedLinear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 1, bias=False))], "_HalvedLinear"),
    ([nn.Sequential(nn.Linear(3, 4, bias=False), nn.Tanh(), nn.Linear(4, 1, bias=False))], "Tanh"),
    ([nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 4, bias=False), nn.LeakyReLU(),
                    nn.Linear(4, 1, bias=False))], "one activation"),
    ([mlp((3, 4, 1)), mlp((3, 5, 1))], "one architecture"),
    ([mlp((3, 4, 2))], "scalar output"),
    ([], "at least one"),
])
def test_bad_models_are_refused(models, match):
    with pytest.raises(tc.InvalidArgument, match=match):
        Ensemble.from_models(models)


@pytest.mark.parametrize("kwargs,match", [
    (dict(X=torch.randn(N, 4, dtype=torch.float64)), "X of shape"),
    (dict(X=torch.randn(N, 5)), "X on the weights'"),
    (dict(y=torch.ones(N) * 0), r"labels in \{-1, \+1\}"),
    (dict(lr=0.0), "lr > 0"),
    (dict(lr=math.nan), "lr > 0"),
    (dict(steps=0), "steps >= 1"),
    (dict(loss="square"), "loss in"),
    (dict(method="flow"), "method in"),
    (dict(method="sgd"), "batch_size or indices"),
    (dict(method="sgd", batch_size=N + 1), "batch_size <="),
    (dict(method="sgd", indices=torch.full((3, 2, 4), N)), "indices"),
    (dict(batch_size=4), "no indices or batch_size"),
    (dict(chunk=0), "chunk >= 1"),
])
def test_bad_arguments_are_refused(kwargs, match):
    X, y = _data(torch.float64)
    arguments = dict(X=X, y=y.to(torch.float64), lr=LR, steps=3) | kwargs
    with pytest.raises(tc.InvalidArgument, match=match):
        train_ensemble(Ensemble.random(2, WIDTHS), **arguments)


def test_divergence_and_underflow_are_flagged():
    """Negative controls: an exploding run (exp loss, huge step) and a float32 summed loss below N x the smallest
    normal number are recorded as non-finite from the step they happen, never as finite numbers."""
    X, y = _data(torch.float64)
    exploding = Ensemble.random(2, WIDTHS, seed=5)
    run = train_ensemble(exploding, X, -y, lr=50.0, steps=10, loss="exp")
    assert (run.non_finite > 0).all()
    X32, _ = _data(torch.float32)
    y_sep = torch.where(X32[:, 0] >= 0, 1.0, -1.0)
    X_sep = X32.clone()
    X_sep[:, 0] += 0.5 * y_sep  # |x_0| >= 0.5: q_n = 1e6 |x_0| >= 5e5, l(q_n) = e^-q_n below any float
    first = torch.zeros(2, 1, WIDTHS[0])
    first[..., 0] = 1e3
    separated = Ensemble([first, torch.full((2, 1, 1), 1e3)], activation="linear")
    run = train_ensemble(separated, X_sep, y_sep, lr=1e-12, steps=2)
    assert (run.non_finite == 0).all() and np.isnan(run.log_loss).all()
    healthy = train_ensemble(Ensemble.random(2, WIDTHS, seed=5), X, y, lr=LR, steps=10)
    assert (healthy.non_finite == -1).all() and np.isfinite(healthy.log_loss).all()


def test_benchmark_quick_prints_the_speedup_and_peak_fraction_lines():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    done = subprocess.run([sys.executable, str(script), "--quick", "--claims", "homogeneity,min_norm"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    costs = done.stdout[done.stdout.index("checker time per audit instance"):].splitlines()[1:3]
    assert sorted(line.split()[0] for line in costs) == ["homogeneity", "min_norm"]
    assert "loop@1" in done.stdout  # the loop at one thread, besides --threads
    speedup, fraction = done.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"speedup float32=\d+(\.\d+)? float64=\d+(\.\d+)?", speedup), speedup
    assert re.fullmatch(r"peak_fraction float32=\d+\.\d+ float64=\d+\.\d+", fraction), fraction


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_benchmark_on_cuda_without_a_gpu_names_the_fix(capsys):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
    spec = importlib.util.spec_from_file_location("benchmark_run", script)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    with pytest.raises(SystemExit) as refused:
        benchmark.main(["--quick", "--device", "cuda"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "expected a CUDA device" in err and "--device cpu" in err


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_setting_matches_the_plain_loop(dtype):
    """The benchmark's setting: 64 ReLU MLPs 10-32-32-1, 128 samples, 300 GD steps on the logistic loss; the
    loop runs every 4th network (both chunks of the default split)."""
    widths, n, steps = (10, 32, 32, 1), 128, 300
    X, y = _data(DTYPES[dtype], n=n, d=10)
    ensemble = Ensemble.random(64, widths, dtype=DTYPES[dtype])
    models = ensemble.to_models()[::4]
    run = train_ensemble(ensemble, X, y, lr=0.01, steps=steps)
    assert run.chunk < 64
    reference = _loop(models, X, y, lr=0.01, steps=steps, loss="logistic")
    every_4th = Ensemble([W[::4] for W in ensemble.weights])
    worst = max(_relative(getattr(run, name)[:, ::4], reference[name]) for name in reference)
    assert max(worst, _compare(run, every_4th, models, {})) <= _tolerance(DTYPES[dtype], steps, n=n, widths=widths)
