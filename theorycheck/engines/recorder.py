"""Recorder: attach to a user's UNCHANGED training loop through the optimizer's step hooks.

Before each ``optimizer.step()`` it reads every weight layer W_k, its gradient g_k, its step size and
whatever changed W_k since the last step; after the step it reads the update actually applied. Which parameters
are weight layers, their degrees and the per-unit symmetries (the per-neuron pairs) are measured on X, or else on
the batch of the first forward pass with autograd on (:mod:`theorycheck.engines.unit_pairing`), with the same
reading the homogeneity check uses. ``rec.trajectory`` is the record, the input of
:func:`theorycheck.check_layer_balance`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..core.devices import dtype_name
from ..core.errors import expect
from ..core.inputs import as_batch, check_record_shapes, model_device_dtype
from ..core.modules import declared_degrees, read_parameters
from .gradient_scale import GradientScale
from .homogeneity import measure_homogeneity
from .unit_pairing import NeuronPair, UnitSymmetries, unit_sq


_HALF = (torch.float16, torch.bfloat16)


def _find_closure(optimizer, args, kwargs) -> tuple[Any, int | None]:
    """The closure passed to ``optimizer.step`` (positional or ``closure=``) and its position in ``args``
    (None: passed by keyword). The hooks' ``args`` start with the optimizer itself."""
    if kwargs.get("closure") is not None:
        return kwargs["closure"], None
    offset = 1 if args and args[0] is optimizer else 0
    if len(args) > offset and callable(args[offset]):
        return args[offset], offset
    return None, None


@dataclasses.dataclass(frozen=True)
class BalanceTrajectory:
    """Per-step record of a training run (arrays are float64 numpy, steps along axis 0).

    ``degrees``: the degree of f in each layer (1 for ReLU networks, p^(activations after) for ReLU^p).
    Per layer (columns in ``layers`` order): ``sq_norms`` (steps + 1: before each step, then after
    the last), ``inner`` <W, g>, ``abs_inner`` sum|W * g|, ``grad_sq`` ||g||^2, ``lr`` the step size
    of the layer's parameter group, ``plain_residual`` ||update + lr g||, ``update_norm`` ||update||,
    ``grad_norm`` ||g||, ``edited`` ||W before step t - W after step t-1|| (0 at t = 0: changes made
    outside the optimizer between steps). Per step: ``grad_scale`` the roundoff scale S of the computed
    gradients (:class:`~theorycheck.engines.gradient_scale.GradientScale`; NaN where it could not be formed) and ``grad_samples`` the samples
    their batch sums ran over. Per measured per-unit symmetry (:class:`~theorycheck.engines.unit_pairing.NeuronPair`):
    ``neuron_sq[p]`` (steps + 1, members, units) each member slice's ||W_m,i||^2, ``neuron_grad_sq[p]`` (steps,
    members, units) the same for g. ``unpaired``: (None, layer, why) for weights in no measured symmetry.
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
    homogeneity: Any = None  # HomogeneityMeasurement of the model on X at attach time, when X was given
    outputs: Any = None  # model(X) after each step, when X was given
    edited: Any = None
    unpaired: tuple = ()
    grad_scale: Any = None
    grad_samples: Any = None
    roles: Any = None  # how each parameter's role, and the degrees, were read (measured, declared or by shape)
    grad_roundoff: Any = None  # per step: u of the arithmetic the step's backward passes ran in (autocast: its dtype)
    grad_reused: Any = None  # per step: the previous step's gradient reused bit for bit, no backward pass since
    MAY_BE_UNDEFINED = ("grad_scale", "grad_roundoff")  # NaN on steps whose backward pass the Recorder did not see

    def __post_init__(self):
        K, T = len(self.layers), len(self.inner)
        per_step = (T, K)
        check_record_shapes("BalanceTrajectory", {
            "sq_norms": (self.sq_norms, (T + 1 if T else len(self.sq_norms), K)), "inner": (self.inner, per_step),
            "abs_inner": (self.abs_inner, per_step), "grad_sq": (self.grad_sq, per_step), "lr": (self.lr, per_step),
            "plain_residual": (self.plain_residual, per_step), "update_norm": (self.update_norm, per_step),
            "grad_norm": (self.grad_norm, per_step), "edited": (self.edited, per_step),
            "grad_scale": (self.grad_scale, (T,)), "grad_samples": (self.grad_samples, (T,)),
            "grad_roundoff": (self.grad_roundoff, (T,)), "grad_reused": (self.grad_reused, (T,))})
        expect(len(self.degrees) == K and len(self.neuron_sq) == len(self.neuron_grad_sq) == len(self.pairs),
               expected=f"one degree per layer ({K}) and one record per neuron pair ({len(self.pairs)})",
               received=f"{len(self.degrees)} degrees, {len(self.neuron_sq)} and {len(self.neuron_grad_sq)} records",
               fix="pass the BalanceTrajectory as the Recorder made it")

    @property
    def steps(self) -> int:
        return len(self.inner)


class Recorder:
    """Record per-layer norms, <W_k, g_k>, ||g_k||^2 and the applied update at every optimizer step.

    ``Recorder(model, optimizer, X=None, y=None)``: with ``X``, the model's homogeneity is measured on
    ``X`` at attach time (an assumption of the balance theorem) and outputs on ``X`` are recorded
    after each step. Which parameters are weight layers (f = 0 when one is 0), the degree of f in each
    (f(2W) = 2^d f(W)) and the per-unit symmetries are measured on ``X``, else on the batch of the first forward
    pass with autograd on (before the first step); ``degrees`` (default ``model.homogeneity_degrees``) overrides
    the measured degrees, also in the homogeneity measurement. ``neurons=False`` skips the per-neuron record. The
    optimizer must own every trainable weight. Call :meth:`close` (or use ``with``) to detach the hooks.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, X=None, y=None, *,
                 degrees=None, neurons: bool = True):
        expect(isinstance(optimizer, torch.optim.Optimizer), expected="a torch.optim.Optimizer",
               received=type(optimizer).__name__, fix="pass the optimizer your loop calls .step() on")
        self.model, self.optimizer, self.neurons = model, optimizer, neurons
        self.device, self.dtype = model_device_dtype(model)
        self.X = None if X is None else as_batch(X, model, "X", indices=True)  # as the model takes it (token ids)
        self.y = y
        self._declared = degrees if degrees is not None else getattr(model, "homogeneity_degrees", None)
        self._pairs: tuple[NeuronPair, ...] = ()
        self._unpaired: tuple = ()
        self._trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self._read_roles(None if self.X is None else ((self.X,), {}))
        self._homogeneity = None
        if self.X is not None:
            self._homogeneity = measure_homogeneity(model, self.X, degrees={**self._frozen_degrees, **self._degrees})
        self._order: list[str] = []
        self._batch = None  # (args, kwargs) of the first forward pass with autograd on
        self._last_after: dict[str, torch.Tensor] | None = None
        self._rows: list[dict] = []
        self._outputs: list[torch.Tensor] = []
        self._pending: dict | None = None
        self._missing = 0
        self._neurons_after: dict = {}
        owners = {id(p): name for name, p in model.named_parameters()}
        self._forward_hooks = [
            module.register_forward_hook(self._note_layer(owners[id(module.weight)]))
            for module in model.modules()
            if isinstance(getattr(module, "weight", None), nn.Parameter) and id(module.weight) in owners
        ] + [model.register_forward_pre_hook(self._note_batch, with_kwargs=True)]
        self._scale = GradientScale(model)
        self._step_hooks = [optimizer.register_step_pre_hook(self._before_step),
                            optimizer.register_step_post_hook(self._after_step)]

    def _read_roles(self, batch) -> None:
        """Weights and their degrees, measured on ``batch`` ((args, kwargs); None: by shape, until a batch is seen)
        as the homogeneity check reads them. The user's random state is kept."""
        model = self.model
        x = batch[0][0] if batch and len(batch[0]) == 1 and not batch[1] else None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            try:
                found, why_not = read_parameters(model, x), "" if x is not None else "no single-tensor batch seen"
            except (RuntimeError, TypeError, ValueError, IndexError) as error:  # a forward the float64 copy breaks
                found, why_not = read_parameters(model), f"{type(error).__name__}: {error}"
            self._weights, self._others = found.weights, tuple(sorted(found.others))
            expect(bool(self._weights), expected="a model with weight layers (parameters f vanishes at, or "
                   "'*weight' parameters of 2+ dimensions)", received=f"none among {list(found.roles)}",
                   fix="attach the Recorder to the network being trained")
            owned = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
            foreign = [name for name, p in self._weights.items() if id(p) not in owned]
            expect(not foreign, expected="an optimizer that owns every trainable weight of the model",
                   received=f"weights {foreign} not in {type(self.optimizer).__name__}'s param groups",
                   fix="build the optimizer from this model's parameters (model.parameters()), or freeze the "
                       "others with requires_grad_(False)")
            names = list(self._weights)
            measured = {}
            if self._declared is None and batch is not None:
                try:
                    measured = UnitSymmetries(model, self._weights, *batch).degrees()
                except (RuntimeError, TypeError, ValueError, IndexError) as error:
                    why_not = f"{type(error).__name__}: {error}"
        # declared degrees cover every weight layer, frozen ones included (as check_homogeneity reads them); a
        # frozen layer's degree serves only the homogeneity pre-check: 1 unless declared
        layers = [n for n, _ in model.named_parameters() if n in self._weights or n in found.frozen_weights]
        self._frozen_degrees = {name: 1.0 for name in found.frozen_weights}
        if self._declared is not None:
            declared = dict(zip(layers, declared_degrees(model, layers, self._declared)))
            self._degrees, source = {name: declared[name] for name in names}, "declared"
            self._frozen_degrees = {name: declared[name] for name in found.frozen_weights}
        else:  # measured f(2W) = 2^d f(W); 1 where none could be read (not homogeneous: the identities decide)
            self._degrees = {name: measured.get(name) or 1.0 for name in names}
            source = {name: "measured" if measured.get(name) else
                      "1 (measured 0: f does not scale with it)" if measured.get(name) == 0 else
                      f"1 (not measured{': ' + why_not if why_not else ''})" for name in names}
        self._roles = {"parameters": dict(found.roles), "degrees": source}

    def _read_pairs(self, batch) -> None:
        """The per-unit symmetries among the weights (in forward order), measured on ``batch``."""
        if not self.neurons:
            return
        weights = {name: self._weights[name] for name in self._layer_order()}
        why_not = "no forward pass with autograd on before the first step"
        if batch is not None:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                try:
                    pairs, unpaired = UnitSymmetries(self.model, weights, *batch).pairs()
                    self._pairs, self._unpaired = tuple(pairs), tuple(unpaired)
                    return
                except (RuntimeError, TypeError, ValueError, IndexError) as error:
                    why_not = f"{type(error).__name__}: {error}"
        self._unpaired = tuple((None, name, f"per-unit symmetries not measured ({why_not})") for name in weights)

    # -- hooks -----------------------------------------------------------------------------------
    def _note_layer(self, name: str):
        """Forward hook: the order layers run in."""
        def hook(module, args, output):
            if name not in self._order:
                self._order.append(name)
        return hook

    def _note_batch(self, module, args, kwargs):
        """Root forward pre-hook: keep the first batch run with autograd on (the roles are measured on it)."""
        if self._batch is None and torch.is_grad_enabled():
            detach = (lambda v: v.detach().clone() if isinstance(v, torch.Tensor) else v)
            self._batch = (tuple(detach(a) for a in args), {k: detach(v) for k, v in kwargs.items()})

    def _layer_lr(self) -> dict[str, float]:
        lr_of = {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                lr_of[id(p)] = float(group["lr"])
        return {name: lr_of.get(id(p), float("nan")) for name, p in self._trainable.items()}

    def _before_step(self, optimizer, args, kwargs):
        """Read the weights before the step. Without a closure the gradient the step uses is already in
        ``p.grad``; with ``step(closure)`` it is computed inside the step, so the closure is wrapped and the
        gradient read right after its first call (the gradient at the weights the step starts from)."""
        before, edited = {}, {}
        for name, p in self._trainable.items():  # every trainable parameter: the weights are read at the first step
            before[name] = p.detach().clone()
            last = None if self._last_after is None else self._last_after[name]
            edited[name] = (torch.zeros((), dtype=p.dtype, device=p.device) if last is None
                            else (before[name] - last).to(torch.float64 if p.dtype in _HALF else p.dtype).norm())
        self._pending = {"before": before, "lr": self._layer_lr(), "edited": edited, "closure_calls": 0}
        closure, position = _find_closure(optimizer, args, kwargs)
        if closure is None:
            self._read_gradients(self._pending)
            return None
        pending = self._pending

        def observed_closure(*c_args, **c_kwargs):
            result = closure(*c_args, **c_kwargs)
            pending["closure_calls"] += 1
            if pending["closure_calls"] == 1:
                self._read_gradients(pending)
            return result

        if position is not None:
            return tuple(args[:position]) + (observed_closure,) + tuple(args[position + 1:]), kwargs
        return tuple(args), {**kwargs, "closure": observed_closure}

    def _read_gradients(self, pending: dict) -> None:
        """The gradient each weight's step uses (``p.grad`` now) and the roundoff scale of its backward pass. At the
        first step, the weights, degrees and symmetries are measured first (on X, else on the batch of the forward
        pass just run: before the step, or inside its closure)."""
        if not self._rows:
            if self.X is None:
                self._read_roles(self._batch)
            self._read_pairs(self._batch if self.X is None else ((self.X,), {}))
        grads = {}
        for name, p in self._weights.items():
            if p.grad is None:
                self._missing += 1
                grads[name] = torch.zeros_like(pending["before"][name])
            else:
                grads[name] = p.grad.detach().clone()
        pending["scale"], pending["samples"], pending["roundoff"] = self._scale.take()
        last = self._rows[-1] if self._rows else None
        pending["reused"] = bool(pending["samples"] == 0 and last is not None and all(
            torch.equal(grads[name], last["grads"][name]) for name in grads))
        pending["grads"] = grads

    @torch.no_grad()
    def _after_step(self, optimizer, args, kwargs):
        for hook in self._forward_hooks:  # the first step has fixed the layer order and measured on the batch
            hook.remove()
        self._forward_hooks, self._batch = [], None
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if "grads" not in pending:  # a closure the step never called: no gradient was used
            self._read_gradients(pending)
        if pending["closure_calls"] > 1:
            self._scale.take()  # backward passes of later closure calls (a line search) are not the step's
        row: dict[str, Any] = {"lr": pending["lr"], "layers": {}, "scale": pending["scale"],
                               "samples": pending["samples"], "roundoff": pending["roundoff"],
                               "grads": pending["grads"], "reused": pending["reused"]}
        for name, p in self._weights.items():
            w, g, lr = pending["before"][name], pending["grads"][name], pending["lr"][name]
            after = p.detach()
            if w.dtype in _HALF:  # float16/bfloat16 sums overflow at 65504 or round at 2^-8: exact up-cast
                w, g, after = w.double(), g.double(), after.double()
            update = after - w
            row["layers"][name] = torch.stack([
                (w * w).sum(), (w * g).sum(), (w * g).abs().sum(), (g * g).sum(),
                (update + lr * g).norm(), update.norm(), g.norm(), (after ** 2).sum(),
                pending["edited"][name].to(w.dtype)])
        if pending["reused"]:
            self._carry_scale(row)
        if self._rows:
            self._rows[-1]["grads"] = None  # only the last step's gradient is compared with the next
        self._last_after = {name: p.detach().clone() for name, p in self._trainable.items()}
        if self.neurons:
            row["neurons"] = {pair: (unit_sq(pending["before"], pair), unit_sq(pending["grads"], pair))
                              for pair in self._pairs}
            current = {n: q.detach() for n, q in self._weights.items()}
            self._neurons_after = {pair: unit_sq(current, pair) for pair in self._pairs}
        self._rows.append(row)
        if self.X is not None:
            self._outputs.append(self._observe_outputs())

    def _carry_scale(self, row: dict) -> None:
        """A step that reuses the previous step's gradient bit for bit (no backward pass since): its roundoff is that
        pass's, S carried to the current weights by the largest growth of sum|W_k * g_k| (the sums S bounds)."""
        last = self._rows[-1]
        growth = max(float(row["layers"][n][2] / last["layers"][n][2]) if float(last["layers"][n][2]) > 0 else
                     (1.0 if float(row["layers"][n][2]) == 0 else math.inf) for n in self._weights)
        row["scale"] = last["scale"] * max(growth, 1.0) if math.isfinite(growth) else math.nan
        row["samples"], row["roundoff"] = last["samples"], last["roundoff"]

    def _observe_outputs(self) -> torch.Tensor:
        """model(X) without changing the user's run: the random state is forked (CPU, and CUDA where X lives),
        buffers (BatchNorm statistics) are copies, and module modes are left as they are."""
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        devices = [self.X.device] if self.X.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            out = functional_call(self.model, buffers, (self.X,), strict=False)
        return out.detach().reshape(-1)

    # -- per-neuron bookkeeping ----------------------------------------------------------------------
    def _layer_order(self) -> list[str]:
        seen = [n for n in self._order if n in self._weights]
        return seen + [n for n in self._weights if n not in seen]

    # -- the record --------------------------------------------------------------------------------
    @property
    def trajectory(self) -> BalanceTrajectory:
        """The record so far, as numpy arrays (float64)."""
        order = self._layer_order()
        weights = self._weights
        if self._rows:
            table = torch.stack([torch.stack([row["layers"][n] for n in order]) for row in self._rows])
            table = table.to("cpu", torch.float64).numpy()  # (steps, layers, 9)
            lr = [[row["lr"][n] for n in order] for row in self._rows]
        else:
            table = torch.zeros(0, len(order), 9, dtype=torch.float64).numpy()
            lr = []
        sq_norms = np.concatenate([table[:, :, 0], table[-1:, :, 7]]) if len(table) else np.zeros((0, len(order)))
        pairs = self._pairs if self._rows else ()
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
            device=str(self.device), dtype=dtype_name(self.dtype),
            homogeneity=self._homogeneity, outputs=outputs, edited=table[:, :, 8],
            unpaired=self._unpaired, roles=dict(self._roles),
            grad_scale=np.array([row["scale"] for row in self._rows], dtype=np.float64),
            grad_samples=np.array([row["samples"] for row in self._rows], dtype=np.int64),
            grad_roundoff=np.array([row["roundoff"] for row in self._rows], dtype=np.float64),
            grad_reused=np.array([row["reused"] for row in self._rows], dtype=bool))

    def close(self) -> None:
        for hook in self._forward_hooks + self._step_hooks:
            hook.remove()
        self._forward_hooks, self._step_hooks = [], []
        self._scale.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
