"""Reading any ``torch.nn.Module``: its parameters sorted by role (trainable and frozen), the modules
known to break homogeneity or to be random in training mode, and the degrees declared for its layers.

What these read explains a verdict; an assumption that can be measured on the instance is measured
(the engines' identities and scalings decide), never decided from a module-type list.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .errors import InvalidArgument, expect


class PowerReLU(nn.Module):
    """sigma(z) = max(z, 0)^p: positively homogeneous of degree p (C^1 for p > 1, C^2 for p > 2)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, z):
        return torch.relu(z) ** self.p

    def extra_repr(self):
        return f"p={self.p}"


NON_HOMOGENEOUS_MODULES = (
    nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.SELU, nn.CELU, nn.Softplus, nn.Softmax,
    nn.LogSoftmax, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Tanhshrink, nn.Softsign,
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm,
)
HOMOGENEOUS_MODULES = (
    nn.Linear, nn.modules.conv._ConvNd, nn.ReLU, nn.LeakyReLU, nn.RReLU, PowerReLU, nn.Identity, nn.Flatten,
    nn.Unflatten, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd, nn.Dropout,
    nn.Sequential, nn.ModuleList, nn.Embedding, nn.EmbeddingBag,  # a table lookup (or its mean/sum) is linear in
)  # the table; its role is measured like any parameter's (f = 0 at a zero table: a weight layer)
STOCHASTIC_MODULES = (nn.modules.dropout._DropoutNd, nn.RReLU)  # random in training mode
# modules whose parameters' roles are fixed by the module's own map, by type (not by attribute name)
KNOWN_ROLES = (
    ((nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd), {"weight": "weight", "bias": "additive offset"}),
    ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm),
     {"weight": "normalization scale", "bias": "additive offset"}),
    ((nn.PReLU,), {"weight": "activation slope"}),
)
WEIGHT = "weight"


@dataclasses.dataclass(frozen=True)
class ModelParameters:
    """The parameters of a module, trainable or frozen, sorted by role."""

    weights: dict[str, torch.nn.Parameter]  # trainable weight layers (f vanishes at 0, multiplicative)
    others: dict[str, torch.nn.Parameter]  # every other parameter, frozen or not: offsets, scales, slopes
    non_homogeneous_modules: dict[str, str]  # module name -> type, known to break homogeneity
    unrecognized_modules: dict[str, str]  # leaf modules neither known homogeneous nor known not
    frozen_weights: dict[str, torch.nn.Parameter] = dataclasses.field(default_factory=dict)
    roles: dict[str, str] = dataclasses.field(default_factory=dict)  # every parameter -> its role and why
    frozen: tuple[str, ...] = ()  # parameters with requires_grad False
    stochastic_modules: dict[str, str] = dataclasses.field(default_factory=dict)  # random in training mode


def _known_role(model: nn.Module, name: str) -> str | None:
    path, _, attr = name.rpartition(".")
    module = model.get_submodule(path) if path else model
    for types, roles in KNOWN_ROLES:
        if isinstance(module, types) and attr in roles:
            return f"{roles[attr]} ({type(module).__name__}.{attr})"
    return None


SHAPE_ONLY = ("View", "Reshape", "Expand", "Unsqueeze", "Squeeze", "Permute", "Transpose", "TBackward",
              "Clone", "ToCopy", "Alias", "Unsafe")


def _consumers(output: torch.Tensor, leaves: dict[str, torch.Tensor]) -> dict[str, set[str]]:
    """For each leaf tensor, the autograd ops that first use it past reshapes: how it enters the graph."""
    parents: dict = {}
    stack, seen = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                parents.setdefault(child, []).append(node)
                stack.append(child)
    found = {}
    for name, leaf in leaves.items():
        frontier = [n for n in parents if getattr(n, "variable", None) is leaf]
        ops, visited = set(), set()
        while frontier:
            node = frontier.pop()
            for parent in parents.get(node, []):
                if parent in visited:
                    continue
                visited.add(parent)
                if any(parent.name().startswith(s) or s in parent.name() for s in SHAPE_ONLY):
                    frontier.append(parent)
                else:
                    ops.add(parent.name())
        found[name] = ops
    return found


def _measured_roles(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, str]:
    """Roles of parameters no known module defines, read on a float64 copy (or the model's own parameters
    where its forward fixes dtypes: :func:`~theorycheck.core.evaluation.evaluation_state`): f = 0 at p = 0 ->
    a weight (a multiplicative factor, homogeneous or not: the identities then decide); otherwise an additive
    offset if p enters the graph only through additions, else a parameter f is not homogeneous in."""
    from torch.func import functional_call

    from .evaluation import evaluation_state, output_tensor

    evaluation = evaluation_state(model, x)
    params, buffers, x = evaluation.params, evaluation.buffers, evaluation.x
    leaves = {n: params[n].clone().requires_grad_(True) for n in names}

    def f(replaced):
        state = {n: b.clone() for n, b in buffers.items()}
        return output_tensor(functional_call(model, ({**params, **replaced}, state), (x,))).reshape(-1)

    with torch.enable_grad():
        consumers = _consumers(f(leaves), leaves)
    roles = {}
    for name in names:
        with torch.no_grad():
            at_zero, at_one = f({name: torch.zeros_like(params[name])}), f({})
        if not bool((at_one != 0).any()):
            continue  # f = 0 on the batch: the role cannot be read here
        ops = sorted(consumers[name])
        if not bool((at_zero != 0).any()):
            roles[name] = f"weight (measured: f = 0 when it is 0; enters through {ops})"
        elif ops and all(op.startswith(("AddBackward", "SubBackward")) for op in ops):
            roles[name] = f"additive offset (measured: f != 0 when it is 0; enters through {ops})"
        else:
            roles[name] = f"not homogeneous (measured: f != 0 when it is 0; enters through {ops})"
    return roles


def read_parameters(model: nn.Module, x: torch.Tensor | None = None) -> ModelParameters:
    """Sort a module's parameters (trainable and frozen) by role; flag known-bad and random modules.

    Linear/Conv/normalization/PReLU parameters take the role their module gives them. Any other
    parameter is read numerically on the batch ``x`` when given (see :func:`_measured_roles`), else
    by shape (2+ dimensions: a weight)."""
    expect(isinstance(model, nn.Module), expected="a torch.nn.Module", received=type(model).__name__,
           fix="pass the model itself (an nn.Module), not its output or state_dict")
    named = dict(model.named_parameters())
    roles = {n: _known_role(model, n) for n in named}
    unknown = [n for n, role in roles.items() if role is None]
    measured = _measured_roles(model, unknown, x) if (x is not None and unknown) else {}
    for name in unknown:
        roles[name] = measured.get(name) or ("weight (2+ dimensions, role not measured)" if named[name].ndim >= 2
                                             else "unclassified (1 dimension or fewer, role not measured)")
    is_weight = {n: role.startswith(WEIGHT + " ") for n, role in roles.items()}
    weights = {n: p for n, p in named.items() if is_weight[n] and p.requires_grad}
    frozen_weights = {n: p for n, p in named.items() if is_weight[n] and not p.requires_grad}
    others = {n: p for n, p in named.items() if not is_weight[n]}
    bad, unrecognized, stochastic = {}, {}, {}
    for name, module in model.named_modules():
        if isinstance(module, NON_HOMOGENEOUS_MODULES):
            bad[name] = type(module).__name__
        elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.max_norm is not None:
            bad[name] = f"{type(module).__name__}(max_norm={module.max_norm}): renormalizes the rows it looks up"
        elif not isinstance(module, HOMOGENEOUS_MODULES) and not list(module.children()):
            unrecognized[name] = type(module).__name__
        if isinstance(module, STOCHASTIC_MODULES) and module.training and getattr(module, "p", 1) != 0:
            stochastic[name] = type(module).__name__
    return ModelParameters(weights, others, bad, unrecognized, frozen_weights, roles,
                           tuple(n for n, p in named.items() if not p.requires_grad), stochastic)


def declared_degrees(model: nn.Module, layer_names: list[str], degrees=None) -> list[float]:
    """Degree of f in each weight layer: given, from ``model.homogeneity_degrees``, or 1 each."""
    if degrees is None:
        degrees = getattr(model, "homogeneity_degrees", None)
    if degrees is None:
        return [1.0] * len(layer_names)
    if isinstance(degrees, dict):
        missing = [name for name in layer_names if name not in degrees]
        if missing:
            raise InvalidArgument(f"expected a degree for every weight layer {layer_names}, but got none for "
                                  f"{missing}. Fix: add them, or pass a list in layer order.")
        return [float(degrees[name]) for name in layer_names]
    degrees = [float(d) for d in degrees]
    expect(len(degrees) == len(layer_names), expected=f"{len(layer_names)} degrees (one per weight layer "
           f"{layer_names})", received=f"{len(degrees)}", fix="give one degree per weight layer")
    expect(all(d > 0 and math.isfinite(d) for d in degrees), expected="positive finite degrees",
           received=repr(degrees), fix="a positively homogeneous layer has degree > 0")
    return degrees
