"""A model seen as a function of one flat parameter vector theta: outputs, margins, their per-sample
gradients and (for networks with kinks) activation patterns; which modules are C^2.

Used by the flow engine (:mod:`theorycheck.engines.dynamics`) and the KKT claim; the model is never changed.
"""

from __future__ import annotations

import collections

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..core.devices import gamma
from .direct_pass import KINK_MODULES, DirectPass, kink_code

# modules known to be C^2 in their input and weights (PowerReLU is C^2 exactly when p > 2)
_SMOOTH_MODULES = (nn.Linear, nn.modules.conv._ConvNd, nn.Identity, nn.Flatten, nn.Unflatten,
                   nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd, nn.Sequential,
                   nn.ModuleList, nn.ModuleDict, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.Softplus)


# autograd ops that are C^infinity where defined: a custom forward applying only these to the trained parameters is C^2
_SMOOTH_OPS = frozenset(
    f"{op}Backward" for op in (
        "Add", "Sub", "Mul", "Div", "Neg", "Mm", "Addmm", "Bmm", "Mv", "Dot", "Linear", "Convolution", "T", "Transpose",
        "Permute", "View", "Unsafe_View", "UnsafeView", "Expand", "Squeeze", "Unsqueeze", "Clone", "ToCopy", "Sum",
        "Mean", "Cat", "Stack", "Select", "Slice", "Index", "Split", "SplitWithSizes", "Unbind", "AvgPool1D",
        "AvgPool2D", "AvgPool3D", "AdaptiveAvgPool2D", "AdaptiveAvgPool3D", "Tanh", "Sigmoid", "Exp", "Gelu", "Silu",
        "Softplus", "Alias", "Reshape", "Flip", "Roll", "Repeat")) | {"torch::autograd::AccumulateGrad"}


def twice_differentiable(model: nn.Module, X: torch.Tensor | None = None) -> tuple[bool, str]:
    """Whether ``model`` is C^2 in its trained parameters (Lyu & Li's Thm 4.2 needs it for GD).

    Modules known to be C^2 are; ReLU, LeakyReLU, max-pooling and ReLU^p with p <= 2 are not. Given ``X``, what
    the forward pass on X does to the trained parameters is read from autograd: a module with no trained parameter
    whose inputs carry no gradient (a frozen feature map upstream of every trained parameter) is a fixed function
    of the data and is skipped, and a module with its own forward (not torch's) is C^2 when every op on the graph
    from the trained parameters is (:data:`_SMOOTH_OPS`; x^p for a constant integer p >= 0 or p > 2); without X it
    counts as not.
    """
    from ..core.modules import PowerReLU

    fixed, ops = _trained_graph(model, X) if X is not None else (set(), None)
    offending, custom = [], []
    for name, module in model.named_modules():
        if name in fixed:
            continue
        if isinstance(module, PowerReLU):
            if module.p <= 2:
                offending.append(f"{name or 'model'} (ReLU^{module.p:g}: C^2 needs p > 2)")
        elif not isinstance(module, _SMOOTH_MODULES):
            own = type(module).__module__.partition(".")[0] != "torch"
            (custom if own else offending).append(f"{name or 'model'} ({type(module).__name__})")
    if custom and not offending and ops is not None:
        rough = sorted(op for op in ops if op not in _SMOOTH_OPS)
        if not rough:
            return True, f"C^2 in the trained parameters: known modules, and the ops of {custom} on X ({sorted(ops)})"
        custom = [f"{c}: ops {rough}" for c in custom]
    offending += custom
    return not offending, ("all modules C^2" if not offending else "not C^2 (or unknown): " + ", ".join(offending))


def _trained_graph(model: nn.Module, X: torch.Tensor) -> tuple[set[str], set[str]]:
    """(names of the modules without trained parameters whose every input on X carries no gradient, the autograd
    ops on the graph from the trained parameters to the output; x^p named with its exponent unless C^2)."""
    tracked: dict[str, bool] = {}
    names = {module: name for name, module in model.named_modules()}

    def hook(module, args, output):
        trained = any(p.requires_grad for p in module.parameters())
        tracked[names[module]] = trained or any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.enable_grad(), torch.random.fork_rng(devices=[X.device] if X.device.type == "cuda" else []):
            buffers = {n: b.clone() for n, b in model.named_buffers()}  # batch-norm statistics stay as they are
            out = functional_call(model, (dict(model.named_parameters()), buffers), (X.detach(),))
    finally:
        for handle in handles:
            handle.remove()
    ops, stack, seen = set(), [getattr(out, "grad_fn", None)], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack += [child for child, _ in node.next_functions]
        op = node.name().rstrip("0123456789")
        if op == "PowBackward":
            p = getattr(node, "_saved_exponent", None)
            smooth = isinstance(p, (int, float)) and ((float(p).is_integer() and p >= 0) or p > 2)
            op = "MulBackward" if smooth else f"PowBackward(exponent {p})"
        ops.add(op)
    return {name for name, carries in tracked.items() if not carries}, ops


class KinkPattern:
    """The activation pattern of a network's kink modules (ReLU-type signs, max-pooling argmax) on X.

    Two parameter vectors with the same pattern lie in one smooth piece of the field; a step whose
    stages see different patterns crossed a kink, where the field jumps. ``known`` is False when the
    model is not C^2 but its kinks are not in modules this class can read (a custom forward).
    """

    def __init__(self, net: "FlatNetwork", smooth: bool):
        self.net = net
        self.modules = [m for m in net.model.modules() if isinstance(m, KINK_MODULES)]
        self.known = smooth or bool(self.modules)

    def __call__(self, theta: torch.Tensor) -> torch.Tensor | None:
        if not self.modules:
            return None
        if self.net.direct is not None:
            return self.net.kink_pattern(theta)
        seen: list[torch.Tensor] = []

        def hook(module, inputs, output):
            seen.append(kink_code(module, inputs[0]))

        handles = [m.register_forward_hook(hook) for m in self.modules]
        try:
            with torch.no_grad():
                self.net.outputs(theta)
        finally:
            for handle in handles:
                handle.remove()
        return torch.cat([t.to(torch.int64) for t in seen])


_LAYERWISE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _layer_roles(model: nn.Module, names: list[str]):
    """([(module name, layer)], [(module name, 'weight' | 'bias')] in parameter order) when every trained parameter
    belongs to an nn.Linear, nn.Conv1d or nn.Conv2d itself, not a subclass (layers whose per-sample gradients
    are products of a delta and the layer's input); else ([], [])."""
    # the exact classes: a subclass may transform its weight in forward (standardized, masked), then the rule fails;
    # frozen layers (no trained parameter of their own) carry no gradient to build
    layers = [(n, m) for n, m in model.named_modules() if type(m) in _LAYERWISE_MODULES
              and any(p.requires_grad for p in m.parameters(recurse=False))]
    owner = {(f"{n}.{kind}" if n else kind): (n, kind) for n, _ in layers for kind in ("weight", "bias")}
    if not layers or any(name not in owner for name in names):
        return [], []
    return layers, [owner[name] for name in names]


def _per_sample_weight_gradient(layer: nn.Module, inputs: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """d q_n / d W for every sample n, flattened to (N, W.numel()), from the layer's inputs and output deltas:
    for a Linear layer the outer product delta_n x_n^T; for a convolution delta_n (C_out x L) times the L
    input patches of sample n (torch.nn.functional.unfold), the sum over positions the convolution's own
    weight gradient takes. ValueError for a layer this does not cover."""
    N = len(delta)
    if isinstance(layer, nn.Linear):
        if inputs.dim() != 2:
            raise ValueError("a Linear layer on non-matrix input")
        return (delta[:, :, None] * inputs[:, None, :]).reshape(N, -1)
    spatial = 1 if isinstance(layer, nn.Conv1d) else 2
    if (inputs.dim() != spatial + 2 or layer.groups != 1 or layer.padding_mode != "zeros"
            or layer.padding == "same"):
        raise ValueError("a grouped, padded-by-mode, 'same'-padded or unbatched convolution")
    padding = (0,) * spatial if layer.padding == "valid" else layer.padding
    kernel, dilation, stride = layer.kernel_size, layer.dilation, layer.stride
    if spatial == 1:  # a 1-d convolution is a 2-d one over a height-1 image
        inputs = inputs.unsqueeze(2)
        kernel, dilation, padding, stride = (1, *kernel), (1, *dilation), (0, *padding), (1, *stride)
    patches = torch.nn.functional.unfold(inputs, kernel, dilation, padding, stride)  # (N, C_in * prod(kernel), L)
    return torch.bmm(delta.flatten(2), patches.transpose(1, 2)).reshape(N, -1)


class FlatNetwork:
    """A module seen as a function of one flat parameter vector theta (the module is not changed). A plain stack
    of layers runs through its direct pass (:mod:`theorycheck.engines.direct_pass`), anything else through
    ``torch.func.functional_call``: the same operations, bit for bit."""

    def __init__(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor):
        self.model, self.X, self.y = model, X, y
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self._per_sample: bool | None = None  # whether margin_jacobian may vectorize over samples (None: untested)
        self._layers, self._parameter_roles = _layer_roles(model, self.names)
        # a plain stack runs without functional_call; the last patterns its Jacobian passes saw are kept
        self.direct = DirectPass.of(model, self.names, self.shapes)
        self._patterns: collections.deque = collections.deque(maxlen=4)

    def flatten(self) -> torch.Tensor:
        params = dict(self.model.named_parameters())
        return torch.cat([params[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.reshape(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def write(self, theta: torch.Tensor) -> None:
        """Copy theta into the module's parameters."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self.unflatten(theta).items():
                params[name].copy_(value)

    def outputs(self, theta: torch.Tensor, X: torch.Tensor | None = None) -> torch.Tensor:
        X = self.X if X is None else X
        if self.direct is not None:
            return self.direct.run(theta, X).output
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        return functional_call(self.model, (self.unflatten(theta), buffers), (X,)).reshape(-1)

    def margins(self, theta: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """q_n = y_n f(theta; x_n), for all samples or those in ``index``."""
        if index is None:
            return self.y * self.outputs(theta)
        return self.y[index] * self.outputs(theta, self.X[index])

    def margin_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, A): the margins and their per-sample gradients A[n] = grad_theta q_n (N x P).

        O(N P): one backward pass of sum_n q_n with per-sample products for Linear and convolution layers,
        else one vectorized backward pass of single-sample margins (torch.func.vmap). Where the samples
        are coupled (batch norm in training mode, a custom forward mixing rows) or a module cannot be
        vectorized, q_n depends on the whole batch and the N batched backward passes of the full batch
        are used instead (O(N^2 P)); coupling is detected once, as per-sample margins that differ from the
        batch's beyond roundoff."""
        if self._per_sample is not False:
            try:
                q, A = self._vectorized_jacobian(theta)
                if self._per_sample is None:
                    self._per_sample = self._samples_independent(theta, q)
            except (RuntimeError, ValueError, NotImplementedError):  # a module vmap cannot batch
                self._per_sample = False
            if self._per_sample:
                return q, A
        return self.batched_margin_jacobian(theta)

    def _layerwise_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nets whose parameters all belong to Linear / Conv1d / Conv2d layers: one forward and one backward
        pass of sum_n q_n; with the samples independent, the gradient of q_n in a layer's weight is built from
        its output delta and input for sample n (:func:`_per_sample_weight_gradient`), its bias gradient is
        the delta summed over positions."""
        if self.direct is not None:
            theta = theta.detach().requires_grad_(True)
            record = self.direct.run(theta, self.X, keep=True, kinks=self.direct.has_kinks)
            self._patterns.append((theta.detach().clone(), record.pattern))
            return self._layer_blocks(self.y * record.output, record.inputs, record.outputs)
        inputs: dict[str, torch.Tensor] = {}
        outputs: dict[str, torch.Tensor] = {}

        def keep(name):
            def hook(module, args, output):
                if name in inputs:  # a shared layer: its gradient is a sum over calls, use vmap instead
                    raise ValueError("a layer called twice")
                inputs[name], outputs[name] = args[0].detach(), output
            return hook

        handles = [m.register_forward_hook(keep(n)) for n, m in self._layers]
        try:
            theta = theta.detach().requires_grad_(True)
            q = self.margins(theta)
        finally:
            for handle in handles:
                handle.remove()
        if len(inputs) < len(self._layers):
            raise ValueError("a layer the forward pass does not call")
        return self._layer_blocks(q, inputs, outputs)

    def _layer_blocks(self, q: torch.Tensor, inputs: dict, outputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, A) from one backward pass of sum_n q_n to each layer's output and the layers' inputs."""
        layers = dict(self._layers)
        deltas = dict(zip(layers, torch.autograd.grad(q.sum(), [outputs[n] for n in layers])))
        blocks = []
        for name, kind in self._parameter_roles:
            delta = deltas[name]
            if kind == "weight":
                blocks.append(_per_sample_weight_gradient(layers[name], inputs[name], delta))
            else:  # a convolution's bias acts at every position
                blocks.append(delta.flatten(2).sum(2) if delta.dim() > 2 else delta)
        return q.detach(), torch.cat(blocks, dim=1)

    def _vectorized_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, A) assuming independent samples: layerwise where every parameter's layer is covered, else by
        vmap (also from the first layer the layerwise rule does not cover on, for good)."""
        if self._layers:
            try:
                return self._layerwise_jacobian(theta)
            except ValueError:
                self._layers = []
        return self._per_sample_jacobian(theta)

    def _per_sample_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def single(theta, x, y):
            return y * self.outputs(theta, x.unsqueeze(0))[0]

        A, q = torch.func.vmap(torch.func.grad_and_value(single), in_dims=(None, 0, 0))(theta.detach(), self.X, self.y)
        return q.detach(), A.detach()

    def _samples_independent(self, theta: torch.Tensor, batch: torch.Tensor) -> bool:
        """Whether the margins of single samples evaluated alone equal the batch's within 2 gamma_K |f|(|theta|, |x|)
        (forward error of both evaluations; Higham)."""
        def single(x, y):
            return y * self.outputs(theta, x.unsqueeze(0))[0]

        with torch.no_grad():
            q = torch.func.vmap(single)(self.X, self.y)
        allowed = 2 * gamma(self.dot_product_terms(), q.dtype) * self.absolute_outputs(theta)
        return bool(((q - batch).abs() <= allowed).all())

    def batched_margin_jacobian(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, A) by N batched backward passes of the full batch (identity seeds): exact for any module,
        O(N^2 P)."""
        theta = theta.detach().requires_grad_(True)
        q = self.margins(theta)
        basis = torch.eye(len(q), dtype=q.dtype, device=q.device)
        (A,) = torch.autograd.grad(q, theta, basis, is_grads_batched=True)
        return q.detach(), A

    def kink_pattern(self, theta: torch.Tensor) -> torch.Tensor | None:
        """The kink pattern at theta of a plain stack: the one its last Jacobian passes saw there, else one
        forward pass."""
        for seen, pattern in self._patterns:
            if torch.equal(seen, theta):
                return pattern
        with torch.no_grad():
            return self.direct.run(theta, self.X, kinks=True).pattern

    def absolute_outputs(self, theta: torch.Tensor) -> torch.Tensor:
        """f evaluated with |theta| and every frozen parameter's absolute value on |X|: the scale of Higham's
        forward-error bound for a network of dot products and monotone positively homogeneous activations."""
        frozen = {n: p.detach().abs() for n, p in self.model.named_parameters() if not p.requires_grad}
        with torch.no_grad():
            if not frozen:
                return self.outputs(theta.abs(), self.X.abs()).abs()
            buffers = {n: b.clone() for n, b in self.buffers.items()}
            return functional_call(self.model, ({**frozen, **self.unflatten(theta.abs())}, buffers),
                                   (self.X.abs(),)).reshape(-1).abs()

    def dot_product_terms(self) -> int:
        """K in gamma_K: the summed fan-in of the weight layers, trained or frozen, plus their number (forward-error
        length)."""
        shapes = [p.shape for p in self.model.parameters()]
        return sum(int(np.prod(s[1:])) for s in shapes if len(s) >= 2) + len(shapes)
