"""Measuring positive homogeneity: Euler's identity and the scalings f(a W_k) = a^{d_k} f(W) of each weight
layer, and f(W) = rho f(V), as residuals over their roundoff tolerances (a record, not a verdict).

The identities are evaluated on a float64 copy of the weights (the float32 weights exactly), so roundoff is
float64's; the model's own forward pass is compared with that copy within its first-order error bound. A
forward that fixes its dtypes itself (``x.float()``) is evaluated on its own parameters instead, in the
precision it is measured to compute in (:mod:`theorycheck.core.evaluation`).
Tolerances: Higham's gamma_K for each computation, K counted from the dot lengths (see the helpers), with the
unit roundoff of the arithmetic used. Where autograd's <W_k, df/dW_k> disagrees with the derivative of
a -> f(a W_k) measured by forward evaluations (a path under torch.no_grad, ``.detach()``, reentrant
checkpointing), Euler's identity is judged from those forward evaluations and the layers are named.
Sources: Lyu & Li, ICLR 2020, eq. (6) and Theorem B.2 (Euler's theorem for homogeneous functions).
The claim ``homogeneity`` turns a measurement into its verdict; the flow engine and the Recorder use
:attr:`HomogeneityMeasurement.homogeneous` as the pre-check of their runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator

import numpy as np
import torch
from torch.func import functional_call

from ..core.devices import dtype_name, unit_roundoff
from ..core.evaluation import evaluation_state, output_tensor, unwrap
from ..core.inputs import as_batch
from ..core.modules import declared_degrees, read_parameters
from ..core.threads import one_thread_when_small
from .euler import UNTRACKED, euler_sums

SCALES = (1e-3, 0.5, 2.0, 1e3)  # f(a W_k) = a^{d_k} f(W): below and above 1, over six orders of magnitude
# and, per layer, a such that a x (the median |pre-activation| of the layer) = 10^j: a threshold anywhere from
# 1e-15 to 1e15 in the pre-activations' own units (relu6 on inputs x 1e-4, a dead zone at |z| < 1e-9) is crossed
SWEEP_DECADES = tuple(range(-15, 16, 3))
# beyond them, out to the dtype's range (|j| <= 0.85 log10 max): a threshold past 1e15 (a dead zone at
# |z| < 1e-25, clamp(max=1e20)) is crossed by any decade past it
OUTER_DECADES = (30, 60, 120, 240)
# a comparison resolves the identity on a sample when a deviation of half of |f| exceeds its roundoff bound
# (tolerance x the sample's absolute terms); one that resolves it on no sample cannot see it fail
RESOLUTION = 0.5


@dataclasses.dataclass(frozen=True)
class HomogeneityMeasurement:
    """What a homogeneity test of one model on one batch found.

    ``facts``: the structure the identities need (``weights``: weight layers found, ``no_bias``,
    ``homogeneous_modules``: no tanh/sigmoid/GELU/normalization, ``deterministic``: no training-mode
    randomness); ``statistic``: the worst residual over its tolerance (<= 1: every identity holds; NaN
    when not measured); ``inconclusive``: the numbers cannot decide (non-finite values, a network that outputs
    0 on every sample, underflow, the model's own pass beyond its error bound); ``device``, ``dtype``: x's.
    """

    facts: dict
    statistic: float
    tolerance: float
    inconclusive: bool
    tolerance_basis: str
    reason: str
    details: dict
    device: str
    dtype: str

    @property
    def homogeneous(self) -> bool | None:
        """True: every identity holds; None: undecided (inconclusive); False: a fact or an identity fails."""
        if not all(self.facts.values()):
            return False
        return None if self.inconclusive else bool(self.statistic <= 1)

    @property
    def identities_hold(self) -> bool | None:
        """The measurement alone, module types only explaining it: False where no weight layer was found, the
        forward is random or an identity fails; None where undecided; True where every identity holds."""
        if not (self.facts["weights"] and self.facts["deterministic"]):
            return False
        return None if self.inconclusive or math.isnan(self.statistic) else bool(self.statistic <= 1)

    def summary(self) -> str:
        word = {True: "homogeneous", None: "homogeneity undecided", False: "not homogeneous"}[self.homogeneous]
        failed = [name for name, met in self.facts.items() if not met]
        return (f"{word}: worst residual / tolerance {self.statistic:.3e}"
                + (f"; not met: {failed}" if failed else "") + (f"; {self.reason}" if self.reason else ""))


def measurement_work(model=None, x=None, *args, X=None, **kwargs) -> tuple[float, object]:
    """Parameters x samples and the device of a check of ``model`` on ``x`` (a small one runs on one intra-op
    thread: on 2 shared cores, a 27-parameter convolutional net's Hessian checks took 2.1 s with two threads
    and 0.05 s with one); anything else counts as small, for the checker to refuse."""
    x = X if x is None else x  # the checkers name it X
    parameters = sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0
    samples = x.shape[0] if isinstance(x, torch.Tensor) and x.ndim else 1
    return parameters * samples, x.device if isinstance(x, torch.Tensor) else "cpu"


@one_thread_when_small(measurement_work)
def measure_homogeneity(model: torch.nn.Module, x: torch.Tensor, *, degrees=None) -> HomogeneityMeasurement:
    """Euler's identity <W_k, df/dW_k> = d_k f (one forward and one backward pass per output column,
    :mod:`theorycheck.engines.euler`), f(a W_k) = a^{d_k} f(W) for every a in :data:`SCALES` and
    f(W) = rho f(V), V_k = W_k / ||W_k||, rho = prod ||W_k||^{d_k}, per weight layer of ``model`` on the batch
    ``x``. ``degrees``: the degree of f in each weight layer (list in registration order, or dict by name);
    default ``model.homogeneity_degrees`` if set, else 1 each. The model is not changed (buffers are copied,
    the random state restored). ``x`` may hold integer ids (an embedding model); ``nn.DataParallel`` is
    checked through the module it wraps."""
    model = unwrap(model)
    x = as_batch(x, model, indices=True)
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        return _measure(model, x, degrees)


def _measure(model, x, degrees) -> HomogeneityMeasurement:
    dtype = x.dtype if x.is_floating_point() else next(model.parameters()).dtype
    where = dict(device=str(x.device), dtype=dtype_name(dtype))
    found = read_parameters(model, x)
    layer_params = {**found.weights, **found.frozen_weights}
    names = [n for n, _ in model.named_parameters() if n in layer_params]
    # a frozen non-weight parameter is held constant, as a buffer is (preprocessing before every weight layer);
    # it counts against "no bias parameters" where the identities fail with it held constant
    frozen_others = sorted(n for n in found.others if n in found.frozen)
    facts = {"weights": bool(names), "no_bias": len(frozen_others) == len(found.others),
             "homogeneous_modules": not found.non_homogeneous_modules, "deterministic": True}
    reading = {"non_weight_parameters": sorted(found.others), "frozen_parameters": list(found.frozen),
               "parameter_roles": dict(found.roles), "non_homogeneous_modules": found.non_homogeneous_modules,
               "unrecognized_modules": found.unrecognized_modules}
    if not names:
        return HomogeneityMeasurement(facts=facts, statistic=math.nan, tolerance=math.nan, inconclusive=False,
                                      details=reading, tolerance_basis="no weight layers to test",
                                      reason="no weight layers found (parameters f vanishes at, or the weights "
                                             "of Linear/Conv modules)", **where)
    degrees = declared_degrees(model, names, degrees)
    evaluation = evaluation_state(model, x)
    params, buffers, xr, arithmetic = evaluation.params, evaluation.buffers, evaluation.x, evaluation.arithmetic
    u, arithmetic_name = _forward_unit_roundoff(arithmetic, x.device)
    sums = euler_sums(model, params, buffers, names, xr, arithmetic=arithmetic)
    f = sums.output

    def forward(replaced, inputs=xr):  # on copies: a forward that writes into its parameters changes none
        state = {n: b.clone() for n, b in buffers.items()}
        values = {n: replaced[n] if n in replaced else p.clone() for n, p in params.items()}
        with torch.no_grad():
            out = output_tensor(functional_call(model, (values, state), (inputs,)))
        return (out if sums.output_axis is None else out.movedim(sums.output_axis, 0)).reshape(-1)

    independent = _independent_layers(forward, sums, params, names)
    if independent:  # not layers of f: degree 0, measured; the identities are about the others
        degrees = [d for n, d in zip(names, degrees) if n not in independent]
        names = [n for n in names if n not in independent]
        reading["independent_layers"] = independent
        facts["weights"] = bool(names)
        if not names:
            return HomogeneityMeasurement(
                facts=facts, statistic=math.nan, tolerance=math.nan, inconclusive=False, details=reading,
                tolerance_basis="no weight layer f depends on",
                reason=f"f does not depend on any weight layer ({_independent_text(independent)})", **where)
    if sums.method == UNTRACKED:
        return HomogeneityMeasurement(
            facts=facts, statistic=math.nan, tolerance=math.nan, inconclusive=all(facts.values()), details=reading,
            tolerance_basis="not tested: no roundoff scale without gradients",
            reason="autograd sees no path from any weight to f (the forward runs under torch.no_grad or detaches "
                   "its output): Euler's sums and the roundoff scale sum |delta|^T |W| |a| they give cannot be "
                   "formed; check the model with a forward autograd can follow", **where)
    # per sample, first order: the forward error is <= gamma_K sum_k |delta_k|^T |W_k| |a_k| (each layer's
    # rounding carried to f by its exact Jacobian); d|f| adds the identity's other side
    scale = sum(sums.absolute[n] + d * f.abs() for n, d in zip(names, degrees))
    k_forward = _roundoff_counts({n: params[n] for n in names}, degrees)
    stochastic = _stochastic(forward, found, scale, 2 * _gamma(k_forward, u))
    if stochastic:
        facts["deterministic"] = False
        return HomogeneityMeasurement(facts=facts, statistic=math.nan, tolerance=math.nan, inconclusive=False,
                                      details={**reading, "stochastic_modules": stochastic},
                                      tolerance_basis="not tested: random forward",
                                      reason=f"the forward pass is random ({stochastic}): call model.eval() first",
                                      **where)
    k_euler = _euler_count({n: params[n] for n in names}, degrees, sums.reduction)
    tolerances = {"euler": _gamma(k_euler, u), "forward": _gamma(k_forward, u),
                  "scaling": lambda d: 2 * _gamma(k_forward, u) + (d + 2) * u,
                  "rescaling": 2 * _gamma(k_forward, u) + 2 * sum(
                      d * (_gamma(params[n].numel(), u) + 2 * u) for n, d in zip(names, degrees))}
    f_unit = forward({n: params[n] / params[n].norm() for n in names})
    rho = math.prod(float(params[n].norm()) ** d for n, d in zip(names, degrees))
    finite = bool(torch.isfinite(f).all() and torch.isfinite(scale).all() and torch.isfinite(f_unit).all()
                  and all(torch.isfinite(sums.euler[n]).all() and torch.isfinite(sums.absolute[n]).all()
                          for n in names))
    # Higham's bounds assume no underflow: samples whose terms reach the subnormal range are set aside
    normal_floor = torch.finfo(arithmetic).tiny / u
    underflow = (scale > 0) & (scale < normal_floor)
    usable = ~underflow
    ones = torch.ones_like(scale)
    safe_scale = torch.where(scale > 0, scale, ones)  # a sample with every term 0 has residual 0
    informative = usable & (f.abs() > 1e3 * tolerances["euler"] * safe_scale)

    def scaling(fa, factor, degree, extra=0.0):
        return _scaling_entry(fa, factor, f, safe_scale, usable, tolerances["scaling"](degree) + extra, normal_floor)

    (medians, order), limit = _medians(model, forward, names), 0.85 * math.log(torch.finfo(arithmetic).max)
    # the sweep the model's own dtype represents (its widest-ranged parameters'), and the arithmetic's share
    declared = max((p.dtype for p in model.parameters() if p.is_floating_point()), key=lambda t: torch.finfo(t).max)
    decades, wanted = _decades(arithmetic), _decades(declared)
    labelled = _joint_vectors(order, dict(zip(names, degrees)), medians, limit, decades)
    joint = [(own, scaling(forward({n: a * params[n] for n, a in own.items()}),
                           math.prod(_power(own[n], d) for n, d in zip(names, degrees)), max(degrees),
                           _gamma(2 * len(names), 2.0 ** -53)))  # the float64 product of the factors
             for own, _ in labelled]
    judged = sorted(j for (_, j), (_, e) in zip(labelled, joint) if j is not None and e["samples"])
    joint_ratio = max([0.0] + [e["residual"] / e["tolerance"] for _, e in joint if not math.isnan(e["residual"])])
    joint_held = joint_ratio <= 1
    if joint_held:
        scalings = {n: _per_layer_view(n, joint) for n in names}
        inferred = {n: ((sums.euler[n] / f)[informative]).tolist() or [math.nan] for n in names}
        cumulative = _cumulative(order, [own for own, _ in joint])
        layer_scales = {n: sorted({own[n] for own, _ in joint} | cumulative[n]) for n in names}
    else:  # attribute the failure: each layer scaled alone
        layer_scales = _layer_scales(medians, names, degrees, limit, decades)
        scaled = {n: {a: forward({n: a * params[n]}) for a in layer_scales[n]} for n in names}
        scalings = {n: {str(a): scaling(fa, _power(a, d), d) for a, fa in scaled[n].items()}
                    for n, d in zip(names, degrees)}
        inferred = {n: _infer_degree(f, scaled[n], informative) for n in names}
        judged = sorted({j for n in names for j in decades
                         if scalings[n].get(str(10.0 ** j / medians[n]), {}).get("samples")})
    layers = {n: _layer_report(f, sums.euler[n], sums.absolute[n], scalings[n], inferred[n], d, safe_scale, usable,
                               informative) for n, d in zip(names, degrees)}
    blind = _untracked_paths(forward, params, names, degrees, f, safe_scale, usable, layers, tolerances, u)
    # f(V) is computed at the scale S / rho: it must stay in the normal range too
    rescalable = usable & ((scale == 0) | (scale / rho >= normal_floor)) if 0 < rho < math.inf else usable & False
    rescale_res = _masked_max((f - rho * f_unit).abs() / safe_scale, rescalable)

    model_check = (_model_forward_check(model, x, dtype, buffers, f, scale, k_forward, sums.output_axis)
                   if evaluation.copied else {"inconclusive": False, "finite": True, "reasons": [], "set_aside": 0,
                                              "checked": "the identities ran on the model's own pass"})
    ratios = {n: _layer_ratio(r, tolerances["euler"]) for n, r in layers.items()}
    offending = [n for n, r in ratios.items() if r > 1]
    rescale_ratio = 0.0 if math.isnan(rescale_res) else rescale_res / tolerances["rescaling"]
    statistic = max([rescale_ratio, joint_ratio] + list(ratios.values()))
    if frozen_others and statistic > 1:
        facts["no_bias"] = False
    silent = not bool((f[usable] != 0).any())
    all_underflow = not bool(usable.any())
    resolution = {check: _resolution(tol, f, safe_scale, usable) for check, tol in (
        ("Euler", tolerances["euler"]), ("scalings", max(tolerances["scaling"](d) for d in degrees)),
        ("f = rho f(V)", tolerances["rescaling"]))}
    unresolved = [check for check, r in resolution.items() if not r < RESOLUTION]
    uncovered = [j for j in wanted if j not in decades]
    # the model's own pass is bounded only for nets the theorem covers; it can only stop a "holds"
    forward_decides = statistic <= 1 and all(facts.values()) and not found.unrecognized_modules
    inconclusive = ((not finite) or silent or all_underflow or not model_check["finite"]
                    or (model_check["inconclusive"] and forward_decides)
                    or (forward_decides and bool(unresolved or uncovered)))
    reasons = []
    if forward_decides and unresolved:
        reasons.append(f"the {arithmetic_name} arithmetic cannot resolve the identity: for {unresolved} the "
                       f"roundoff bound x the sample's absolute terms exceeds {RESOLUTION:g} |f| on every sample "
                       f"(smallest relative deviation of f seen: "
                       f"{', '.join(f'{c} {resolution[c]:.2g}' for c in unresolved)}), so a failure could pass")
    if forward_decides and uncovered:
        reasons.append(f"the scale sweep is limited by {arithmetic_name}'s range to pre-activations "
                       f"10^{decades[0]}..10^{decades[-1]}: the decades j = {uncovered} of {dtype_name(declared)}'s "
                       "range are not tested (a threshold there would go unseen)")
    if not finite or not model_check["finite"]:
        reasons.append("non-finite output or gradient (overflow or NaN)")
    if all_underflow:
        reasons.append("every sample's terms underflow to subnormal numbers: roundoff bounds do not apply")
    elif silent:
        aside = int(underflow.sum())
        reasons.append("the network outputs 0 on every sample: nothing to test"
                       + (f" ({aside} more set aside for underflow)" if aside else ""))
    reasons += model_check["reasons"] if forward_decides else []
    if offending:
        worst = max(offending, key=lambda n: ratios[n])
        bad_scales = [a for a, s in layers[worst]["scalings"].items() if s["residual"] > s["tolerance"]]
        reasons.append(f"Euler/scaling identity fails in layer(s) {offending}: {worst} Euler residual "
                       f"{layers[worst]['euler_residual']:.2e}, failing scales {bad_scales}, inferred degree "
                       f"{layers[worst]['degree_inferred']:.3g} vs declared {layers[worst]['degree_declared']:g}")
    elif rescale_ratio > 1:
        reasons.append(f"f(W) != rho f(V): residual {rescale_res:.2e}")
    elif joint_ratio > 1:
        reasons.append(f"scaling all layers at once fails (residual / tolerance {joint_ratio:.2e}) while each "
                       "layer scaled alone passes")
    if found.others and not facts["no_bias"]:
        reasons.append(f"bias/non-weight parameters: {sorted(found.others)}"
                       + (f" (frozen, requires_grad=False: {frozen_others}; held constant, the identities fail)"
                          if frozen_others else ""))
    elif frozen_others:
        reasons.append(f"frozen non-weight parameters {frozen_others} held constant like buffers (requires_grad="
                       "False: constants of f, not parameters it is tested in; the identities hold with them)")
    if independent:
        reasons.append(f"weight layers f does not depend on: {_independent_text(independent)}")
    if found.frozen_weights:
        reasons.append(f"frozen weight layers checked as layers: {sorted(found.frozen_weights)}")
    if found.non_homogeneous_modules:
        reasons.append(f"non-homogeneous modules: {found.non_homogeneous_modules}")
    if sums.method != "hooks":
        reasons.append(f"Euler sums by {sums.method}")
    if blind:
        reasons.append(f"autograd does not see every path from {sorted(blind)} to f: <W, df/dW> differs from the "
                       "derivative of a -> f(aW) measured by forward evaluations (a path under torch.no_grad, "
                       ".detach() or reentrant checkpointing); Euler's identity there is judged from f((1 +- h)W)")
    if not evaluation.copied:
        reasons.append(f"identities evaluated in {dtype_name(arithmetic)} ({evaluation.note})")
    return HomogeneityMeasurement(
        facts=facts, statistic=statistic, tolerance=1.0, inconclusive=inconclusive,
        tolerance_basis=(f"worst residual / its tolerance, {evaluation.note} of the {dtype_name(dtype)} model, "
                         f"unit roundoff {u:.2e} ({arithmetic_name}); Euler "
                         f"gamma_K = {tolerances['euler']:.2e} (K = {k_euler:g}: forward + backward dot lengths + "
                         f"the sum, x max degree), scalings a in {list(SCALES)} and per layer a "
                         f"with a x median|pre-activation| = 10^j, j judged in {_span(judged)}: "
                         f"2 gamma_K' + (d+2)u "
                         f"(K' = {k_forward:g}), rho: {tolerances['rescaling']:.2e}; relative to "
                         "sum_k (|delta_k|^T |W_k| |a_k| + d_k |f|)"),
        details={"layers": layers, "rescaling_residual": rescale_res, "rho": rho, "total_degree": sum(degrees),
                 "offending_layers": offending, "batch": int(x.shape[0]), "scales": list(SCALES),
                 "layer_scales": {n: list(layer_scales[n]) for n in names},
                 "scaling_mode": "joint" if joint_held else "per layer",
                 "scales_reason": "homogeneity is exact at every a > 0: scales below and above 1 over six "
                                  "orders of magnitude catch thresholds (clamp, relu6) a single a = 2 misses, and "
                                  "a with a x median|pre-activation| = 1e-15 .. 1e15 (every 3 decades) and "
                                  "beyond, to the arithmetic's range (10^+-30, 60, 120, 240), catch thresholds "
                                  "outside the inputs' own range. Joint: all layers scaled at "
                                  "once, f(a_1 W_1, ..) = prod a_k^d_k f (each layer's weight by a and 1/a in "
                                  "turn; every layer's pre-activations brought to 10^j together), O(depth) "
                                  "passes; where one fails, each layer alone (the per-layer identities) names "
                                  "the layer. layer_scales: the factors of each layer's weight and of its "
                                  "pre-activations",
                 "euler_method": sums.method, "output_batch_axis": sums.output_axis,
                 "arithmetic": arithmetic_name, "evaluation": evaluation.note,
                 "untracked_paths": blind,
                 "tolerances": {"euler": tolerances["euler"], "forward": tolerances["forward"],
                                "rescaling": tolerances["rescaling"],
                                "scaling": {n: tolerances["scaling"](d) for n, d in zip(names, degrees)}},
                 "model_forward": {k: v for k, v in model_check.items() if k != "reasons"},
                 "samples_set_aside_for_underflow": int(underflow.sum()) + model_check["set_aside"],
                 "samples_in_rescaling_check": int(rescalable.sum()),
                 "decades_judged": judged, "decades_not_covered": uncovered,
                 "resolution": resolution, "frozen_constants": frozen_others if facts["no_bias"] else [],
                 **reading},
        reason="; ".join(reasons), **where)


def _medians(model, forward, names: list[str]) -> tuple[dict[str, float], list[str]]:
    """Per weight layer, the median nonzero |output| of the module owning it (its pre-activations, on the
    evaluated copy; 1 for a weight not owned by a module's output, used functionally), and the layers in the
    order of their first call (those not seen last)."""
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for name in names:
        module = modules.get(name.rpartition(".")[0])
        if module is None or getattr(module, name.rpartition(".")[2], None) is None:
            continue

        def hook(mod, args, output, name=name):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                values = output.detach().abs().flatten()
                seen.setdefault(name, []).append(values[(values > 0) & torch.isfinite(values)])

        hooks.append(module.register_forward_hook(hook))
    try:
        forward({})
    finally:
        for hook in hooks:
            hook.remove()
    values = {n: torch.cat(seen[n]) if seen.get(n) else torch.empty(0) for n in names}
    order = list(seen) + [n for n in names if n not in seen]
    return {n: float(v.double().median()) if v.numel() else 1.0 for n, v in values.items()}, order


def _decades(dtype: torch.dtype) -> tuple[int, ...]:
    """The sweep's decades j (pre-activations brought to 10^j) that ``dtype`` represents well inside its range:
    :data:`SWEEP_DECADES` and :data:`OUTER_DECADES` (both signs) with |j| <= 0.85 log10 max (262 in float64,
    32 in float32 and bfloat16, 4 in float16)."""
    top = 0.85 * math.log10(torch.finfo(dtype).max)
    return tuple(j for j in sorted(set(SWEEP_DECADES) | {s * j for j in OUTER_DECADES for s in (1, -1)})
                 if abs(j) <= top)


def _layer_scales(medians: dict, names: list[str], degrees: list[float], limit: float,
                  decades: tuple[int, ...]) -> dict[str, tuple]:
    """Per weight layer alone: :data:`SCALES` and a = 10^j / m for j in ``decades``, m its median
    pre-activation, kept where a^d stays well inside the arithmetic's range (|d ln a| <= ``limit``, 0.85 ln max:
    600 in float64, 75 in float32)."""
    out = {}
    for name, d in zip(names, degrees):
        extra = [10.0 ** j / medians[name] for j in decades]
        kept = [a for a in extra if 0 < a < math.inf and abs(max(d, 1.0) * math.log(a)) <= limit]
        out[name] = tuple(sorted(set(SCALES) | set(kept)))
    return out


def _joint_vectors(names: list[str], degree: dict[str, float], medians: dict, limit: float,
                   decades: tuple[int, ...]) -> list[tuple[dict, int | None]]:
    """Scale vectors for all layers at once: for a in :data:`SCALES` (as pairs a, 1/a), a and 1/a alternating
    over the layers, from the first layer or the second and starting with either (each layer's weight at a and
    at 1/a, and each layer's pre-activations at a and 1/a, the product of the factors before it staying within
    [1/a, a]); and for j in ``decades``, the factors c_k / c_(k-1) with c_k = 10^j / m_k that bring
    every layer's pre-activations to 10^j at once (in a chain of positively homogeneous layers, in call order).
    Kept where every product of factors and the expected factor stay within ``limit`` (as ln), each with its
    decade j (None for the pairs). ``names`` in call order."""
    largest = max(max(degree.values()), 1.0)
    vectors = []
    for a in sorted({max(s, 1 / s) for s in SCALES}):
        for shift in (0, 1):
            for up in (a, 1 / a):
                vectors.append(({n: 1.0 if k < shift else (up if (k - shift) % 2 == 0 else 1 / up)
                                 for k, n in enumerate(names)}, None))
    for j in decades:  # in logs: 10^j / m_k may leave float64's range where the ratios do not
        c = [j * math.log(10.0) - math.log(medians[n]) for n in names]
        vectors.append(({n: math.exp(min(c[k] - (c[k - 1] if k else 0.0), 709.0)) for k, n in enumerate(names)}, j))
    kept = []
    for own, j in vectors:
        logs = [math.log(own[n]) if 0 < own[n] < math.inf else math.inf for n in names]
        partial = max(abs(p) for p in itertools.accumulate(logs)) * largest
        if any(x != 0 for x in logs) and partial <= limit and abs(sum(degree[n] * g for n, g in zip(names, logs))) <= limit:
            kept.append((own, j))
    return kept


def _cumulative(names: list[str], vectors: list[dict]) -> dict[str, set[float]]:
    """Per layer, the factors its pre-activations are scaled by: the products of the factors up to it
    (``names`` in call order)."""
    out = {n: set() for n in names}
    for own in vectors:
        for name, product in zip(names, itertools.accumulate((own[n] for n in names), operator.mul)):
            out[name].add(product)
    return out


def _per_layer_view(name: str, joint: list) -> dict:
    """A layer's scalings from the joint checks: keyed by its own weight's factor (the worst residual)."""
    view = {}
    for own, entry in joint:
        key = str(own[name])
        if key not in view or entry["residual"] > view[key]["residual"]:
            view[key] = entry
    return view


def _power(a: float, d: float) -> float:
    """a^d, inf where it would leave float64's range (|d ln a| > 600: nothing to compare there)."""
    return a ** d if abs(d * math.log(a)) <= 600 else math.inf


def _scaling_entry(fa, factor, f, scale, usable, tolerance, normal_floor) -> dict:
    """|f(scaled) - factor f| / (factor S), where factor S stays in the normal range."""
    if not (0 < factor < math.inf and abs(math.log(factor)) <= 600):  # a^d S may leave float64's range
        return {"residual": math.nan, "tolerance": tolerance, "samples": 0}
    target = factor * scale
    kept = usable & torch.isfinite(fa) & (target >= normal_floor)
    return {"residual": _masked_max((fa - factor * f).abs() / target, kept), "tolerance": tolerance,
            "samples": int(kept.sum())}


def _resolution(tolerance: float, f, scale, usable) -> float:
    """The smallest relative deviation of f a check sees: min over samples of tolerance x S / |f|."""
    keep = usable & (f != 0)
    return float((tolerance * scale[keep] / f[keep].abs()).min()) if bool(keep.any()) else math.inf


def _span(decades: list[int]) -> str:
    return f"{decades[0]}..{decades[-1]} ({len(decades)} decades)" if decades else "none"


def _gamma(n: float, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * u / (1 - n * u) if n * u < 1 else math.inf


def _forward_unit_roundoff(dtype: torch.dtype, device: torch.device) -> tuple[float, str]:
    """u of the model's own forward pass: TF32 (10-bit mantissa) where CUDA may use it for float32."""
    tf32 = (device.type == "cuda" and dtype == torch.float32
            and (torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32))
    return (2.0 ** -11, "TF32") if tf32 else (unit_roundoff(dtype), dtype_name(dtype))


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].max()) if bool(mask.any()) else math.nan


def _fan(w: torch.Tensor) -> tuple[int, int]:
    """Dot-product lengths of a layer's forward (fan-in) and backward (fan-out) passes."""
    if w.ndim < 2:
        return 1, 1
    return w[0].numel(), w[:, 0].numel()


def _roundoff_counts(weights: dict, degrees: list[float]) -> float:
    """K of the forward pass: to first order its error is sum_k (rounding of layer k) carried by the exact
    Jacobian, <= gamma_K sum_k |delta_k|^T |W_k| |a_k| with K the dot lengths and activations (x the
    largest degree, which d |f| carries)."""
    return max(1.0, max(degrees)) * sum(_fan(w)[0] + 2 for w in weights.values())


def _euler_count(weights: dict, degrees: list[float], reduction: dict) -> float:
    """K of an Euler sum: the forward count plus the backward dot products and the sum itself."""
    fans = [_fan(w) for w in weights.values()]
    return max(1.0, max(degrees)) * (sum(i + o + 2 for i, o in fans) + max(reduction.values()))


def _infer_degree(f, scaled: dict, informative) -> list[float]:
    """log(f(aW)/f(W)) / log a on samples where f is far above roundoff and keeps its sign."""
    found = []
    for a, fa in scaled.items():
        keep = informative & (fa * f > 0) & torch.isfinite(fa)
        found += (torch.log((fa / f)[keep]) / math.log(a)).tolist()
    return found or [math.nan]


def _layer_report(f, euler, absolute, scalings, inferred, degree, scale, usable, informative) -> dict:
    """Residuals of one layer relative to the sample's absolute scale: Euler's identity and the scalings,
    with the degree inferred (from the scalings of the layer alone, or Euler's sum over f)."""
    inferred = np.array(inferred)
    return {
        "degree_declared": degree,
        "degree_inferred": float(np.median(inferred)),
        "degree_inferred_range": [float(inferred.min()), float(inferred.max())],
        "euler_residual": _masked_max((euler - degree * f).abs() / scale, usable),
        "scaling_residual": max((s["residual"] for s in scalings.values() if not math.isnan(s["residual"])),
                                default=math.nan),
        "scalings": scalings,
        "euler_relative_to_f": _masked_max((euler - degree * f).abs() / f.abs(), informative),
        "euler_values": euler,
        "absolute_sum_max": float(absolute.max()) if absolute.numel() else 0.0,
    }


def _layer_ratio(report: dict, tol_euler: float) -> float:
    """The worst residual of a layer divided by its tolerance (NaN-free: unjudged checks count 0); Euler's
    identity by forward evaluations where autograd misses paths (:func:`_untracked_paths`)."""
    by_forward = report.get("euler_by_forward")
    ratios = [by_forward["ratio"] if by_forward else report["euler_residual"] / tol_euler]
    ratios += [s["residual"] / s["tolerance"] for s in report["scalings"].values()]
    return max([0.0] + [r for r in ratios if not math.isnan(r)])


def _stochastic(forward, found, scale, tolerance) -> dict[str, str]:
    """Modules random in training mode, named, or measured: two identical passes differ. On the CPU identical
    computations are bitwise equal, so any difference is randomness; on an accelerator, whose reductions may
    run in another order, beyond that order's roundoff bound ``tolerance`` x the sample's absolute terms."""
    if found.stochastic_modules:
        return dict(found.stochastic_modules)
    first, second = forward({}), forward({})
    exact = first.device.type == "cpu"
    differ = (first != second) if exact else ((first - second).abs() > tolerance * scale)
    if bool((differ & ~(first.isnan() & second.isnan())).any()):
        return {"<forward>": "two identical forward passes differ" + (" (bitwise, on the CPU)" if exact else "")}
    return {}


def _independent_layers(forward, sums, params, names) -> list[str]:
    """Weight layers f does not depend on, measured: autograd's Euler terms are all 0 and f(a W_k) is
    bitwise f(W) != 0 for every a in :data:`SCALES` and a = 0 (an auxiliary head never called in ``forward``;
    an f that is 0 on every sample shows nothing)."""
    candidates = [n for n in names if not bool(sums.absolute[n].any()) and not bool(sums.euler[n].any())]
    reference = forward({}) if candidates else None
    if reference is None or not bool((reference != 0).any()):
        return []
    return [n for n in candidates
            if all(torch.equal(forward({n: a * params[n]}), reference) for a in (0.0,) + SCALES)]


def _independent_text(independent: list[str]) -> str:
    return (f"{independent}: autograd's Euler terms are 0 and f(aW) is bitwise f(W) for a in "
            f"{[0.0, *SCALES]}, so f has degree 0 in them: not layers of f, left out of the identities")


def _model_forward_check(model, x, dtype, buffers, f_reference, scale, k_forward, output_axis) -> dict:
    """The model's own pass in its dtype against the float64 copy: |f - f_64| <= gamma_K(u) times the
    sample's scale, first order (see :func:`_roundoff_counts`); samples whose terms are subnormal in
    the model's dtype are set aside."""
    if dtype == f_reference.dtype:
        return {"inconclusive": False, "finite": True, "reasons": [], "set_aside": 0, "checked": "model is float64"}
    u, arithmetic = _forward_unit_roundoff(dtype, x.device)
    bound = _gamma(k_forward, u)
    state = {n: b.clone().to(dtype) if b.is_floating_point() else b.clone() for n, b in buffers.items()}
    with torch.no_grad():
        copies = {n: p.detach().clone() for n, p in model.named_parameters()}  # the model is never written to
        own = output_tensor(functional_call(model, (copies, state), (x,)))
    own = (own if output_axis is None else own.movedim(output_axis, 0)).reshape(-1).to(f_reference.dtype)
    finite = bool(torch.isfinite(own).all())
    normal = scale >= torch.finfo(dtype).tiny / unit_roundoff(dtype)
    error = _masked_max((own - f_reference).abs() / scale, normal & (scale > 0)) if finite else math.nan
    reasons = []
    if finite and not bool(normal.any()):
        reasons.append(f"every sample's terms underflow to subnormal {dtype_name(dtype)} numbers: "
                       "roundoff bounds do not apply")
    elif error > bound:
        reasons.append(f"the model's {dtype_name(dtype)} forward differs from its float64 copy by {error:.2e} of "
                       f"the absolute terms, above its error bound {bound:.2e} ({arithmetic})")
    return {"inconclusive": (not finite) or bool(reasons), "finite": finite, "reasons": reasons,
            "set_aside": int((~normal).sum()), "error": error, "bound": bound, "arithmetic": arithmetic}


def _untracked_paths(forward, params, names, degrees, f, scale, usable, layers, tolerances, u) -> list[str]:
    """Layers whose Euler identity fails while autograd's <W_k, df/dW_k> disagrees with the derivative of
    a -> f(a W_k) at a = 1 measured by forward evaluations: D(h) = (f((1+h)W) - f((1-h)W)) / 2h at
    h = u^(1/3) (a power of 2) and h/2. Their difference bounds D(h/2)'s truncation error (Richardson, 3x
    over), each evaluation is within the scaling tolerance, so |D(h/2) - true| <= |D(h) - D(h/2)|
    + 2 tau (1+h)^d S / h. Beyond that plus Euler's tolerance, autograd misses a path of W_k to f (the
    forward hides it), and the layer's Euler identity d f = D is judged from D(h/2) with that error added
    (the report's ``euler_by_forward``)."""
    h = 2.0 ** -round(-math.log2(u) / 3)
    blind = []
    for name, d in zip(names, degrees):
        report = layers[name]
        if not report["euler_residual"] > tolerances["euler"]:
            continue

        def derivative(step, name=name):
            up, down = forward({name: (1 + step) * params[name]}), forward({name: (1 - step) * params[name]})
            return (up - down) / (2 * step)

        coarse, fine = derivative(h), derivative(h / 2)
        error = (coarse - fine).abs() + 2 * tolerances["scaling"](d) * (1 + h) ** d * scale / h
        euler = report["euler_values"]
        allowed = error + tolerances["euler"] * scale
        ok = usable & torch.isfinite(fine)
        if not bool((((euler - fine).abs() > allowed) & ok).any()):
            continue
        blind.append(name)
        measured = (fine / f)[ok & (f != 0)]  # the degree from the forward's own derivative, not autograd's
        if measured.numel():
            report["degree_inferred"] = float(measured.median())
            report["degree_inferred_range"] = [float(measured.min()), float(measured.max())]
        report["euler_by_forward"] = {
            "step": h, "ratio": _masked_max((fine - d * f).abs() / allowed, ok),
            "autograd_vs_forward": _masked_max((euler - fine).abs() / scale, ok),
            "forward_residual": _masked_max((fine - d * f).abs() / scale, ok)}
    for report in layers.values():
        report.pop("euler_values")
    return blind
