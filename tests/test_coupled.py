"""Unit tests of the coupled-SGD harness: same indices and start, what it records, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import theorycheck as tc
from theorycheck.engines.stability_constants import logistic_loss
from theorycheck.generate.data import separable
from theorycheck.core.devices import dtype_of


def _problem(n=8, d=3, seed=0, dtype=torch.float64):
    data = separable(n + 1, d, seed=seed, dtype=dtype)
    model = torch.nn.Linear(d, 1, bias=False).to(dtype)
    with torch.no_grad():
        model.weight.copy_(0.1 * torch.randn(1, d, generator=torch.Generator().manual_seed(seed), dtype=dtype))
    return model, data.X[:n], data.y[:n], (data.X[n:], data.y[n:])


def _manual_sgd(model, loss, X, y, indices, alphas, weight_decay=0.0):
    """Plain per-sample SGD with autograd on a copy of the model: the reference for one run."""
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone().requires_grad_(True)
    path = [w.detach().clone()]
    for i, alpha in zip(indices, alphas):
        out = X[i:i + 1] @ w.reshape(-1, 1)
        value = loss(out, y[i:i + 1]).sum() + 0.5 * weight_decay * (w * w).sum()
        (g,) = torch.autograd.grad(value, w)
        w = (w - alpha * g).detach().requires_grad_(True)
        path.append(w.detach().clone())
    return torch.stack(path)


def test_matches_plain_sgd_on_both_samples(tc_device, tc_dtype):
    dtype = dtype_of(tc_dtype)
    model, X, y, new = _problem(dtype=dtype)
    indices = [3, 0, 5, 0, 7, 1, 2, 0]
    alphas = [0.5, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1]
    run = tc.coupled_sgd(model, logistic_loss, X, y, index=0, replacement=new, indices=indices, step_size=alphas,
                         weight_decay=0.01, device=tc_device, dtype=tc_dtype)
    X2, y2 = X.clone(), y.clone()
    X2[0], y2[0] = new[0][0], new[1][0]
    a = _manual_sgd(model, logistic_loss, X, y, indices, alphas, 0.01)
    b = _manual_sgd(model, logistic_loss, X2, y2, indices, alphas, 0.01)
    expected = (a - b).norm(dim=1).numpy()
    scale = 50 * torch.finfo(dtype).eps
    assert run.distance.shape == (1, len(indices) + 1)
    np.testing.assert_allclose(run.distance[0], expected, atol=scale)
    assert run.device.startswith(tc_device) and run.dtype == tc_dtype
    assert run.hits[0].tolist() == [i == 0 for i in indices]
    assert (run.distance[0, :2] == 0).all()  # identical runs until the changed example is sampled


def test_records_loss_gap_on_probes_and_leaves_model_alone():
    model, X, y, new = _problem()
    before = model.weight.detach().clone()
    X_test = torch.randn(5, 3, dtype=torch.float64)
    y_test = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    run = tc.coupled_sgd(model, logistic_loss, X, y, index=2, replacement=new, steps=12, runs=4, step_size=0.5,
                         X_test=X_test, y_test=y_test)
    assert torch.equal(model.weight, before)
    assert run.loss_gap.shape == (4, 13, 5)
    assert np.abs(run.loss_gap[:, 0]).max() <= 4 * np.finfo(float).eps  # same start (up to batch-row rounding)
    # the gap at a probe is the difference of the two runs' losses there, at most L ||w - w'|| (+ rounding:
    # the two runs sit in different rows of one batched evaluation)
    L = float(torch.cat([X, new[0], X_test]).norm(dim=1).max())
    assert (np.abs(run.loss_gap).max(axis=2) <= L * run.distance + 1e-14).all()


def test_removal_skips_the_removed_example():
    model, X, y, _ = _problem()
    indices = [1, 0, 2, 0, 3]
    alphas = [0.3] * 5
    run = tc.coupled_sgd(model, logistic_loss, X, y, index=0, indices=indices, step_size=alphas)
    keep = [(i, a) for i, a in zip(indices, alphas) if i != 0]
    a = _manual_sgd(model, logistic_loss, X, y, indices, alphas)
    b = _manual_sgd(model, logistic_loss, X, y, [i for i, _ in keep], [a_ for _, a_ in keep])
    assert run.removal and run.grad_diff.shape == (1, 5)
    np.testing.assert_allclose(run.distance[0, -1], float((a[-1] - b[-1]).norm()), rtol=1e-12)


def test_user_module_and_loss_with_buffers_and_projection():
    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
            self.register_buffer("scale", torch.tensor(0.5))

        def forward(self, x):
            return self.scale * self.body(x).squeeze(-1)

    torch.manual_seed(0)
    model = Scaled()  # float32 parameters: the harness runs a float64 copy
    X = torch.randn(10, 4)
    y = (torch.rand(10) > 0.5).float()
    loss = lambda out, t: F.binary_cross_entropy_with_logits(out, t, reduction="none")  # noqa: E731
    run = tc.coupled_sgd(model, loss, X, y, index=4, replacement=(X[:1], 1 - y[:1]), steps=20, runs=3,
                         step_size=lambda t: 1.0 / t, radius=2.0)
    assert run.dtype == "float64" and run.param_count == sum(p.numel() for p in model.parameters())
    assert (run.param_norm <= 2.0 * (1 + 1e-12)).all()
    np.testing.assert_allclose(run.step_sizes, 1.0 / np.arange(1, 21))
    assert run.finite


def test_seeded_indices():
    model, X, y, new = _problem()
    a = tc.coupled_sgd(model, logistic_loss, X, y, replacement=new, steps=6, runs=3, seed=5)
    b = tc.coupled_sgd(model, logistic_loss, X, y, replacement=new, steps=6, runs=3, seed=5)
    c = tc.coupled_sgd(model, logistic_loss, X, y, replacement=new, steps=6, runs=3, seed=6)
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.distance, b.distance)
    assert not np.array_equal(a.indices, c.indices)
    assert a.sampled_uniformly and a.seed == 5


@pytest.mark.parametrize("kwargs, message", [
    (dict(loss=lambda out, t: F.softplus(-t * out.squeeze(-1)).mean()), "per-sample losses"),
    (dict(index=8), "expected an index in [0, 8)"),
    (dict(indices=[0, 9]), "expected indices in [0, 8)"),
    (dict(step_size=[0.1, 0.2]), "expected 4 step sizes"),
    (dict(step_size=-1.0), "expected positive finite step sizes"),
    (dict(radius=0.0), "expected radius > 0"),
    (dict(replacement=(torch.zeros(1, 2, dtype=torch.float64), torch.ones(1, dtype=torch.float64))),
     "one replacement point shaped (1, 3)"),
    (dict(X=np.zeros((8, 3))), "training inputs and targets as torch tensors"),
    (dict(dtype="float16"), "expected a dtype in"),
])
def test_bad_input_names_expected_received_fix(kwargs, message):
    model, X, y, new = _problem()
    args = dict(model=model, loss=logistic_loss, X=X, y=y, replacement=new, steps=4)
    args.update(kwargs)
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        tc.coupled_sgd(**args)
    assert message in str(info.value)


def test_curvature_that_cannot_be_estimated_is_stated_not_guessed(monkeypatch):
    """A loss whose second derivative fails: the run is kept, the curvature is NaN over 0 points with the
    error stated, and the checker does not count it as observed."""
    import theorycheck.engines.coupled as coupled

    def fail(*args, **kwargs):
        raise NotImplementedError("no double backward")

    monkeypatch.setattr(coupled, "path_curvature", fail)
    X = torch.randn(6, 2, dtype=torch.float64)
    y = torch.sign(X[:, 0])
    run = tc.coupled_sgd(torch.nn.Linear(2, 1, bias=False).double(), logistic_loss, X, y,
                         replacement=(-X[:1], y[:1]), steps=12, runs=4)
    assert run.curvature_points == 0 and math.isnan(run.curvature) and "no double backward" in run.curvature_error
    verdict = tc.check_sgd_stability_convex(run, tc.linear_loss_constants("logistic", run))
    assert verdict.status != "inconclusive" and "not estimated" in verdict.details["observed"]["curvature_basis"]
