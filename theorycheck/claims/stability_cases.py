"""Generated coupled-SGD instances for the audits and properties of the SGD stability claims
(:class:`SGDCase`, :func:`random_case`, their negative controls), beside their claims; the checker is looked
up in the registry (claims/stability.py imports this module)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from ..engines.coupled import CoupledRun, coupled_sgd
from ..core.devices import dtype_of
from ..generate.cases import generated_data
from ..core.registry import CLAIMS
from ..engines.stability_constants import (LINEAR_LOSSES, LossConstants, huber_loss, linear_closed_form, linear_loss_constants,
                                  logistic_loss, max_input_norm, sigmoid_loss, tanh_closed_form,
                                  tanh_network_constants)
from ..core.verdict import Verdict


@dataclasses.dataclass(frozen=True)
class SGDCase:
    """One generated coupled-SGD instance (rebuilt from these fields alone; see :meth:`verdict`).

    ``loss``: a :data:`LINEAR_LOSSES` name on a bias-free linear model, or ``"tanh"``/``"relu"`` (a
    one-hidden-layer network under the sigmoid loss) or ``"tanh-logistic"``; ``data``: separable,
    random or digits; ``change``: fresh (a new point replaces example 0), flip (its label negated),
    mirror (its input negated) or remove; ``step_scale``: the step size as a fraction of the claim's
    limit (2/beta, 2/(beta + gamma), or c = step_scale/beta for c/t); ``control`` breaks one assumption.
    """

    claim: str
    loss: str = "logistic"
    data: str = "separable"
    n: int = 12
    d: int = 3
    hidden: int = 4
    steps: int = 24
    runs: int = 32
    step_scale: float = 0.5
    change: str = "fresh"
    weight_decay: float = 0.0
    radius: float | None = None
    seed: int = 0
    control: str | None = None

    def data_set(self, dtype) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """Training inputs/labels and the replacement of example 0 (None: removed)."""
        X, y = generated_data(self.data, self.n + 1, self.d, self.seed, dtype)
        if self.loss in NETWORK_LOSSES:  # inputs of norm <= 1 for the network constants
            X = X / X.norm(dim=1).max()
        new = {"fresh": (X[-1:], y[-1:]), "flip": (X[:1], -y[:1]), "mirror": (-X[:1], y[:1]), "remove": None}
        return X[:-1], y[:-1], new[self.change]

    def model(self, dtype) -> torch.nn.Module:
        generator = torch.Generator().manual_seed(self.seed)
        d = self.d if self.data != "digits" else 64
        if self.loss in NETWORK_LOSSES:
            act = torch.nn.ReLU() if self.loss == "relu" else torch.nn.Tanh()
            model = torch.nn.Sequential(torch.nn.Linear(d, self.hidden, bias=False), act,
                                        torch.nn.Linear(self.hidden, 1, bias=False)).to(dtype)
            with torch.no_grad():
                theta = [p for p in model.parameters()]
                for p in theta:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=dtype))
                scale = 0.5 * self.radius / math.sqrt(sum(float((p ** 2).sum()) for p in theta))
                for p in theta:
                    p.mul_(scale)
            return model
        model = torch.nn.Linear(d, 1, bias=False).to(dtype)
        with torch.no_grad():
            model.weight.copy_(0.1 * torch.randn(model.weight.shape, generator=generator, dtype=dtype))
        return model

    def constants(self, model, run: CoupledRun) -> LossConstants:
        if self.loss in LINEAR_LOSSES:
            constants = linear_loss_constants(self.loss, run)
        elif self.loss == "tanh":
            constants = tanh_network_constants(model, run)
        else:  # relu: ||grad g|| <= R ||x|| still holds, but g is not smooth; tanh-logistic: unbounded loss
            tanh = tanh_closed_form(max_input_norm(run.inputs), run.radius, run.weight_decay)
            constants = dataclasses.replace(
                tanh, smoothness=math.inf if self.loss == "relu" else tanh.smoothness,
                lipschitz=4 * tanh.lipschitz if self.loss == "tanh-logistic" else tanh.lipschitz,
                loss_range=(0.0, 1.0) if self.loss == "relu" else None,
                basis=("ReLU network: L as for tanh, not smooth (beta = inf)" if self.loss == "relu" else
                       "logistic loss (|l'| <= 1) of a tanh network: unbounded, no [0, 1] range"))
        if self.control == "understated-L":
            constants = dataclasses.replace(constants, lipschitz=constants.lipschitz / 4,
                                            basis="declared L = a quarter of the closed form")
        if self.control == "overstated-gamma":
            constants = dataclasses.replace(constants, strong_convexity=constants.smoothness + 1,
                                            basis="declared gamma = beta + 1 (above the curvature)")
        return constants

    def step_size(self, X_all: torch.Tensor, model) -> Callable[[int], float] | float:
        x_max = max_input_norm(X_all)
        if self.loss in LINEAR_LOSSES:
            pre = linear_closed_form(self.loss, x_max=x_max, y_max=1.0, weight_decay=self.weight_decay,
                                    radius=self.radius, init_norm=0.0, max_step=0.0)
        else:
            pre = tanh_closed_form(x_max, self.radius, self.weight_decay)
        beta, g = pre.smoothness, pre.strong_convexity
        if self.claim == "sgd_stability_nonconvex":
            c = self.step_scale / beta
            if self.control == "increasing-steps":
                return lambda t: c * min(t, 4) / 4
            return lambda t: c / t
        limit = 2 / (beta + g) if self.claim == "sgd_stability_strongly_convex" else 2 / beta
        return self.step_scale * limit

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        """Build the data, the model and the coupled run, and check the claim."""
        if self.control == "expansive-counterexample":
            return expansive_counterexample(device=device, dtype=dtype)
        torch_dtype = dtype_of(dtype)
        X, y, new = self.data_set(torch_dtype)
        model = self.model(torch_dtype)
        loss = NETWORK_LOSSES.get(self.loss) or LINEAR_LOSSES[self.loss][0]
        X_all = X if new is None else torch.cat([X, new[0]])
        run = coupled_sgd(model, loss, X, y, index=0, replacement=new, steps=self.steps,
                          step_size=self.step_size(X_all, model), runs=self.runs, weight_decay=self.weight_decay,
                          radius=self.radius, seed=self.seed, device=device, dtype=dtype)
        return CLAIMS[self.claim].checker(run, self.constants(model, run))


NETWORK_LOSSES = {"tanh": sigmoid_loss, "relu": sigmoid_loss, "tanh-logistic": logistic_loss}


def expansive_counterexample(*, device="cpu", dtype="float64", steps: int = 6) -> Verdict:
    """Steps above 2/beta break the convex pathwise bound. Huber loss (threshold 1: L = beta = 1) of
    w x with x = 1, all labels 0, example 0 replaced by label 1, w_0 = 0, the changed example sampled
    at step 1 only, alpha = (0.5, 3, 3, ...): the run on S stays at 0; the other moves to 0.5, then
    w -> -2w (3 > 2/beta) to -1, then saturates at 2, so ||w_T - w'_T|| = 2 > 2 L alpha_1 = 1."""
    torch_dtype = dtype_of(dtype)
    X, y = torch.ones(4, 1, dtype=torch_dtype), torch.zeros(4, dtype=torch_dtype)
    model = torch.nn.Linear(1, 1, bias=False).to(torch_dtype)
    with torch.no_grad():
        model.weight.zero_()
    indices = [0] + [1 + t % 3 for t in range(steps - 1)]
    run = coupled_sgd(model, huber_loss, X, y, index=0, replacement=(X[:1], torch.ones(1, dtype=torch_dtype)),
                      indices=indices, step_size=[0.5] + [3.0] * (steps - 1), device=device, dtype=dtype)
    return CLAIMS["sgd_stability_convex"].checker(run, linear_loss_constants("huber", run))


CONVEX_LOSSES = ("logistic", "squared_hinge", "huber")
DATA = ("separable", "random", "digits")
CHANGES = ("fresh", "flip", "mirror", "remove")
CONTROLS = {
    "sgd_stability_convex": {"expansive-counterexample": "vacuous", "large-steps": "vacuous",
                             "squared-unbounded": "vacuous", "understated-L": "vacuous"},
    "sgd_stability_strongly_convex": {"no-regularization": "vacuous", "large-steps": "vacuous",
                                      "overstated-gamma": "vacuous"},
    "sgd_stability_nonconvex": {"relu": "vacuous", "unbounded-loss": "vacuous", "increasing-steps": "vacuous"},
}


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> SGDCase:
    """A random instance of ``claim`` (sizes kept small: n <= 20 examples, 2n steps, 32 runs)."""
    n, data = int(rng.integers(6, 21)), DATA[int(rng.integers(len(DATA)))]
    fields = dict(claim=claim, data=data, n=n, d=int(rng.integers(2, 7)), steps=2 * n,
                  change=CHANGES[int(rng.integers(len(CHANGES)))], seed=int(rng.integers(2**31)),
                  step_scale=float(rng.uniform(0.2, 1.0)), control=control)
    if claim == "sgd_stability_nonconvex":
        loss = {"relu": "relu", "unbounded-loss": "tanh-logistic"}.get(control, "tanh")
        fields.update(loss=loss, hidden=int(rng.integers(2, 7)), radius=float(rng.uniform(0.5, 2.0)),
                      step_scale=float(rng.uniform(0.2, 2.0)))
    else:
        loss = CONVEX_LOSSES[int(rng.integers(len(CONVEX_LOSSES)))]
        if control == "squared-unbounded":
            loss = "squared"
        if control == "understated-L":  # losses whose closed-form L is attained up to a factor < 4
            loss = ("logistic", "huber")[int(rng.integers(2))]
        radius = float(rng.uniform(0.5, 3.0)) if loss == "squared_hinge" else None
        lam = float(10 ** rng.uniform(-2, -0.5)) if claim == "sgd_stability_strongly_convex" else 0.0
        fields.update(loss=loss, radius=radius, weight_decay=0.0 if control == "no-regularization" else lam)
        if control == "large-steps":
            fields.update(step_scale=float(rng.uniform(2.5, 4.0)))
    return SGDCase(**fields)

