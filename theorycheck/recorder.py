"""Recorder: attach to a user's UNCHANGED training loop through the optimizer's step hooks.

Before each ``optimizer.step()`` it reads every weight layer W_k, its gradient g_k and its step size;
after the step it reads the update actually applied. ``rec.trajectory`` is the record, the input of
:func:`theorycheck.check_layer_balance`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import expect
from .models import declared_degrees, read_parameters
from .tensors import as_batch, model_device_dtype


@dataclasses.dataclass(frozen=True)
class NeuronPair:
    """Layers k -> k+1 in a chain: unit i of layer k feeds input group i of layer k+1."""

    lower: str
    upper: str
    units: int


@dataclasses.dataclass(frozen=True)
class BalanceTrajectory:
    """Per-step record of a training run (arrays are float64 numpy, steps along axis 0).

    ``degrees``: the degree of f in each layer (1 for ReLU networks, p^(activations after) for ReLU^p).
    Per layer (columns in ``layers`` order): ``sq_norms`` (steps + 1: before each step, then after
    the last), ``inner`` <W, g>, ``abs_inner`` sum|W * g|, ``grad_sq`` ||g||^2, ``lr`` the step size
    of the layer's parameter group, ``plain_residual`` ||update + lr g||, ``update_norm`` ||update||,
    ``grad_norm`` ||g||. Per neuron pair: ``neuron_sq[p]`` (steps + 1, 2, units) the values of
    ||W_k[i]||^2 and ||W_{k+1}[:, i]||^2, ``neuron_grad_sq[p]`` (steps, 2, units) the same for g.
    """

    layers: tuple[str, ...]
    degrees: tuple[float, ...]
    sizes: tuple[int, ...]
    fan_in_total: int
    sq_norms: Any
    inner: Any
    abs_inner: Any
    grad_sq: Any
    lr: Any
    plain_residual: Any
    update_norm: Any
    grad_norm: Any
    pairs: tuple[NeuronPair, ...]
    neuron_sq: tuple
    neuron_grad_sq: tuple
    missing_gradients: int
    non_weight_parameters: tuple[str, ...]
    optimizer: str
    device: str
    dtype: str
    homogeneity: Any = None  # Verdict of check_homogeneity(model, X) at attach time, when X was given
    outputs: Any = None  # model(X) after each step, when X was given

    @property
    def steps(self) -> int:
        return len(self.inner)


class Recorder:
    """Record per-layer norms, <W_k, g_k>, ||g_k||^2 and the applied update at every optimizer step.

    ``Recorder(model, optimizer, X=None, y=None)``: with ``X``, the model's homogeneity is checked on
    ``X`` at attach time (an assumption of the balance theorem) and outputs on ``X`` are recorded
    after each step. ``degrees``: the degree of f in each weight layer (default
    ``model.homogeneity_degrees``, else 1 each). ``neurons=False`` skips the per-neuron record. Call :meth:`close` (or use
    ``with``) to detach the hooks.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, X=None, y=None, *,
                 degrees=None, neurons: bool = True):
        expect(isinstance(optimizer, torch.optim.Optimizer), expected="a torch.optim.Optimizer",
               received=type(optimizer).__name__, fix="pass the optimizer your loop calls .step() on")
        self.model, self.optimizer, self.neurons = model, optimizer, neurons
        self.device, self.dtype = model_device_dtype(model)
        found = read_parameters(model)
        self._weights = found.weights
        self._others = tuple(sorted(found.others))
        self._degrees = dict(zip(self._weights, declared_degrees(model, list(self._weights), degrees)))
        expect(bool(self._weights), expected="a model with weight layers (parameters named '*weight', 2+ dims)",
               received="none", fix="attach the Recorder to the network being trained")
        self.X = None if X is None else as_batch(X, model, "X")
        self.y = y
        self._homogeneity = None
        if self.X is not None:
            from .claims.homogeneity import check_homogeneity

            self._homogeneity = check_homogeneity(model, self.X)
        self._order: list[str] = []
        self._rows: list[dict] = []
        self._outputs: list[torch.Tensor] = []
        self._last_sq: dict[str, torch.Tensor] | None = None
        self._pending: dict | None = None
        self._missing = 0
        self._neurons_after: dict = {}
        owners = {id(p): name for name, p in self._weights.items()}
        self._forward_hooks = [
            module.register_forward_pre_hook(self._note_order(owners[id(module.weight)]))
            for module in model.modules()
            if isinstance(getattr(module, "weight", None), nn.Parameter) and id(module.weight) in owners
        ]
        self._step_hooks = [optimizer.register_step_pre_hook(self._before_step),
                            optimizer.register_step_post_hook(self._after_step)]

    # -- hooks -----------------------------------------------------------------------------------
    def _note_order(self, name: str):
        def hook(module, args):
            if name not in self._order:
                self._order.append(name)
        return hook

    def _layer_lr(self) -> dict[str, float]:
        lr_of = {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                lr_of[id(p)] = float(group["lr"])
        return {name: lr_of.get(id(p), float("nan")) for name, p in self._weights.items()}

    def _before_step(self, optimizer, args, kwargs):
        for hook in self._forward_hooks:  # the first forward pass has fixed the layer order
            hook.remove()
        self._forward_hooks = []
        before, grads = {}, {}
        for name, p in self._weights.items():
            before[name] = p.detach().clone()
            if p.grad is None:
                self._missing += 1
                grads[name] = torch.zeros_like(before[name])
            else:
                grads[name] = p.grad.detach().clone()
        self._pending = {"before": before, "grads": grads, "lr": self._layer_lr()}

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        pending, self._pending = self._pending, None
        if pending is None:
            return
        row: dict[str, Any] = {"lr": pending["lr"], "layers": {}}
        for name, p in self._weights.items():
            w, g, lr = pending["before"][name], pending["grads"][name], pending["lr"][name]
            update = p.detach() - w
            row["layers"][name] = torch.stack([
                (w * w).sum(), (w * g).sum(), (w * g).abs().sum(), (g * g).sum(),
                (update + lr * g).norm(), update.norm(), g.norm(), (p.detach() ** 2).sum()])
        if self.neurons:
            row["neurons"] = {pair: (self._unit_sq(pending["before"], pair), self._unit_sq(pending["grads"], pair))
                              for pair in self._pairs()}
            current = {n: q.detach() for n, q in self._weights.items()}
            self._neurons_after = {pair: self._unit_sq(current, pair) for pair in self._pairs()}
        self._rows.append(row)
        if self.X is not None:
            self._outputs.append(self.model(self.X).detach().reshape(-1))

    # -- per-neuron bookkeeping ----------------------------------------------------------------------
    def _layer_order(self) -> list[str]:
        seen = [n for n in self._order if n in self._weights]
        return seen + [n for n in self._weights if n not in seen]

    def _pairs(self) -> tuple[NeuronPair, ...]:
        order, pairs = self._layer_order(), []
        for lower, upper in zip(order, order[1:]):
            units, upper_w = self._weights[lower].shape[0], self._weights[upper]
            if upper_w.shape[1] == units or (upper_w.ndim == 2 and upper_w.shape[1] % units == 0):
                pairs.append(NeuronPair(lower, upper, units))
        return tuple(pairs)

    @staticmethod
    def _unit_sq(tensors: dict[str, torch.Tensor], pair: NeuronPair) -> torch.Tensor:
        """(||T_k[i]||^2, ||T_{k+1}[:, i]||^2) per unit i, shape (2, units) (T: weights or gradients)."""
        lower = tensors[pair.lower].reshape(pair.units, -1)
        upper = tensors[pair.upper]
        upper = upper.reshape(upper.shape[0], pair.units, -1)
        return torch.stack([(lower ** 2).sum(1), (upper ** 2).sum((0, 2))])

    # -- the record --------------------------------------------------------------------------------
    @property
    def trajectory(self) -> BalanceTrajectory:
        """The record so far, as numpy arrays (float64)."""
        order = self._layer_order()
        weights = self._weights
        if self._rows:
            table = torch.stack([torch.stack([row["layers"][n] for n in order]) for row in self._rows])
            table = table.to("cpu", torch.float64).numpy()  # (steps, layers, 8)
            lr = [[row["lr"][n] for n in order] for row in self._rows]
        else:
            table = torch.zeros(0, len(order), 8, dtype=torch.float64).numpy()
            lr = []
        sq_norms = np.concatenate([table[:, :, 0], table[-1:, :, 7]]) if len(table) else np.zeros((0, len(order)))
        pairs = self._pairs() if (self.neurons and self._rows) else ()
        neuron_sq = tuple(np.stack([r["neurons"][p][0].cpu().double().numpy() for r in self._rows]
                                 + [self._neurons_after[p].cpu().double().numpy()]) for p in pairs)
        neuron_grad_sq = tuple(np.stack([r["neurons"][p][1].cpu().double().numpy() for r in self._rows]) for p in pairs)
        outputs = (torch.stack(self._outputs).cpu().double().numpy() if self._outputs else None)
        return BalanceTrajectory(
            layers=tuple(order), degrees=tuple(self._degrees[n] for n in order), sizes=tuple(weights[n].numel() for n in order),
            fan_in_total=sum(weights[n][0].numel() for n in order),
            sq_norms=sq_norms, inner=table[:, :, 1], abs_inner=table[:, :, 2], grad_sq=table[:, :, 3],
            lr=np.asarray(lr, dtype=np.float64).reshape(len(table), len(order)),
            plain_residual=table[:, :, 4], update_norm=table[:, :, 5], grad_norm=table[:, :, 6],
            pairs=pairs, neuron_sq=neuron_sq, neuron_grad_sq=neuron_grad_sq, missing_gradients=self._missing,
            non_weight_parameters=self._others, optimizer=type(self.optimizer).__name__,
            device=str(self.device), dtype=str(self.dtype).removeprefix("torch."),
            homogeneity=self._homogeneity, outputs=outputs)

    def close(self) -> None:
        for hook in self._forward_hooks + self._step_hooks:
            hook.remove()
        self._forward_hooks, self._step_hooks = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
