"""Claim ``homogeneity``: a bias-free network with positively homogeneous activations is
positively homogeneous in each weight layer.

f(..., a W_k, ...) = a^{d_k} f(W) for a > 0, hence Euler's identity <W_k, df/dW_k> = d_k f per layer,
and f(W) = rho f(V) with V_k = W_k / ||W_k||, rho = prod_k ||W_k||^{d_k}.
Sources: Poggio, Liao, Banburski, Nat. Commun. 11:3371 (2020) ("Theory III"); Lyu & Li, ICLR 2020,
eq. (6) and Theorem B.2 (Euler's theorem for homogeneous functions).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.func import functional_call, jacrev

from ..devices import dtype_name, gamma, unit_roundoff
from ..models import build_network, declared_degrees, read_parameters
from ..registry import AuditCase, Claim, register
from ..tensors import as_batch
from ..verdict import Verdict, require_holds

CLAIM_ID = "homogeneity"
ASSUME_WEIGHTS = "weight layers found"
ASSUME_NO_BIAS = "no bias parameters"
ASSUME_MODULES = "no non-homogeneous modules (tanh, sigmoid, GELU, normalization)"
JACOBIAN_BUDGET = 50_000_000  # entries of one layer's per-sample Jacobian held at once


def _tolerance_terms(weights: dict[str, torch.Tensor]) -> int:
    """K in gamma_K: the longest dot product (Euler sum) plus the forward and backward passes."""
    fan_in_total = sum(w[0].numel() for w in weights.values())
    return max(w.numel() for w in weights.values()) + 2 * fan_in_total + 2 * len(weights)


def _masked_max(values: torch.Tensor, mask: torch.Tensor) -> float:
    return float(values[mask].max()) if bool(mask.any()) else math.nan


def _layer_report(f, euler, abs_sum, f_doubled, degree, usable, tol) -> dict:
    """Residuals of one layer: Euler's identity and the exact doubling f(2W_k) = 2^d f(W), normalized
    by the absolute scale; the degree inferred from the doubling on samples where f is well above it."""
    scale = torch.where(abs_sum > 0, abs_sum, torch.ones_like(abs_sum))
    informative = usable & (f.abs() > 1e3 * tol * scale)
    ratio = (f_doubled / f)[informative & (f_doubled * f > 0)]
    inferred = torch.log2(ratio).detach().cpu().numpy() if ratio.numel() else np.array([math.nan])
    return {
        "degree_declared": degree,
        "degree_inferred": float(np.median(inferred)),
        "degree_inferred_range": [float(inferred.min()), float(inferred.max())],
        "euler_residual": _masked_max((euler - degree * f).abs() / scale, usable),
        "scaling_residual": _masked_max((f_doubled - 2.0 ** degree * f).abs() / (2.0 ** degree * scale), usable),
        "euler_relative_to_f": _masked_max((euler - degree * f).abs() / f.abs(), informative),
    }


def check_homogeneity(model: torch.nn.Module, x: torch.Tensor, *, degrees=None, seed=None) -> Verdict:
    """Check positive homogeneity of ``model`` in each weight layer on the batch ``x``.

    ``degrees``: the degree of f in each weight layer (list in registration order, or dict by name);
    default ``model.homogeneity_degrees`` if set, else 1 per layer (ReLU-type networks).
    The checker reads any ``nn.Module``; it does not change the model (buffers are copied).
    """
    x = as_batch(x, model)
    dtype, device = x.dtype, x.device
    found = read_parameters(model)
    names = list(found.weights)
    assumptions = {ASSUME_WEIGHTS: bool(names), ASSUME_NO_BIAS: not found.others,
                   ASSUME_MODULES: not found.non_homogeneous_modules}
    common = dict(claim=CLAIM_ID, device=str(device), dtype=dtype_name(dtype), seed=seed)
    if not names:
        return Verdict.decide(assumptions=assumptions, conclusion_held=False, inconclusive=False,
                              statistic=math.nan, bound=0.0, tolerance=math.nan,
                              tolerance_basis="no weight layers to test", reason="no weight layers found "
                              "(parameters named '*weight' with 2+ dimensions)", **common)
    degrees = declared_degrees(model, names, degrees)
    if x.shape[0] * max(found.weights[n].numel() for n in names) > JACOBIAN_BUDGET:
        x = x[: max(1, JACOBIAN_BUDGET // max(found.weights[n].numel() for n in names))]

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def output(replaced: dict[str, torch.Tensor], state=None) -> torch.Tensor:
        """f on the batch with some weights replaced; buffers are copies (batch-norm statistics)."""
        state = {n: b.clone() for n, b in buffers.items()} if state is None else state
        return functional_call(model, ({**params, **replaced}, state), (x,)).reshape(-1)

    with torch.no_grad():
        f = output({})
        f_unit = output({n: params[n] / params[n].norm() for n in names})
    rho = math.prod(float(params[n].norm()) ** d for n, d in zip(names, degrees))
    tol = 2 * gamma(_tolerance_terms(found.weights), dtype)
    # Higham's bound assumes no underflow: samples whose terms reach the subnormal range are set aside
    normal_floor = torch.finfo(dtype).tiny / unit_roundoff(dtype)

    finite = bool(torch.isfinite(f).all() and torch.isfinite(f_unit).all())
    terms = {}  # per layer: Euler sum, absolute scale, f with the layer doubled (one value per sample)
    for name, degree in zip(names, degrees):
        w = params[name]
        state = {n: b.clone() for n, b in buffers.items()}  # an input, so batch norm may update it
        products = jacrev(lambda v, s: output({name: v}, s))(w, state).reshape(f.numel(), -1) * w.reshape(1, -1)
        with torch.no_grad():
            f_doubled = output({name: 2 * w})
        terms[name] = (products.sum(1), products.abs().sum(1) + degree * f.abs(), f_doubled)
        finite &= bool(torch.isfinite(products).all() and torch.isfinite(f_doubled).all())
    scale = torch.stack([t[1] for t in terms.values()]).max(0).values
    # Higham's bound assumes no underflow: samples whose terms reach the subnormal range are set aside
    normal_floor = torch.finfo(dtype).tiny / unit_roundoff(dtype)
    underflow = torch.stack([(t[1] > 0) & (t[1] < normal_floor) for t in terms.values()]).any(0)
    usable = ~underflow
    layers = {name: _layer_report(f, *terms[name], degree, usable, tol) for name, degree in zip(names, degrees)}
    ones = torch.ones_like(scale)
    # f(V) is computed at the scale S / rho: it must stay in the normal range too
    rescalable = usable & ((scale == 0) | (scale / rho >= normal_floor)) if 0 < rho < math.inf else usable & False
    rescale_res = _masked_max((f - rho * f_unit).abs() / torch.where(scale > 0, scale, ones), rescalable)

    offending = [n for n, r in layers.items() if max(r["euler_residual"], r["scaling_residual"]) > tol]
    statistic = max([0.0 if math.isnan(rescale_res) else rescale_res]
                    + [max(r["euler_residual"], r["scaling_residual"]) for r in layers.values()])
    held = statistic <= tol
    silent = not bool((f[usable] != 0).any())
    all_underflow = not bool(usable.any())
    inconclusive = (not finite) or silent or all_underflow or math.isnan(statistic)
    reasons = []
    if not finite:
        reasons.append("non-finite output or gradient (overflow or NaN)")
    if all_underflow:
        reasons.append("every sample's terms underflow to subnormal numbers: roundoff bounds do not apply")
    elif silent:
        aside = int(underflow.sum())
        reasons.append("the network outputs 0 on every sample: nothing to test"
                       + (f" ({aside} more set aside for underflow)" if aside else ""))
    if offending:
        worst = max(offending, key=lambda n: layers[n]["euler_residual"])
        reasons.append(f"Euler/scaling identity fails in layer(s) {offending}: {worst} residual "
                       f"{layers[worst]['euler_residual']:.2e}, inferred degree "
                       f"{layers[worst]['degree_inferred']:.3g} vs declared {layers[worst]['degree_declared']:g}")
    elif rescale_res > tol:
        reasons.append(f"f(W) != rho f(V): residual {rescale_res:.2e}")
    if found.others:
        reasons.append(f"bias/non-weight parameters: {sorted(found.others)}")
    if found.non_homogeneous_modules:
        reasons.append(f"non-homogeneous modules: {found.non_homogeneous_modules}")
    return Verdict.decide(
        assumptions=assumptions, conclusion_held=held, inconclusive=inconclusive,
        statistic=statistic, bound=0.0, tolerance=tol,
        tolerance_basis=(f"2 gamma_K, K = {_tolerance_terms(found.weights)} (largest layer + 2 x total fan-in + "
                         "2 x depth): Higham's dot-product roundoff bound, relative to sum|W * df/dW| + d|f|"),
        details={"layers": layers, "rescaling_residual": rescale_res, "rho": rho, "total_degree": sum(degrees),
                 "offending_layers": offending, "batch": int(x.shape[0]),
                 "samples_set_aside_for_underflow": int(underflow.sum()),
                 "samples_in_rescaling_check": int(rescalable.sum()),
                 "non_weight_parameters": sorted(found.others),
                 "non_homogeneous_modules": found.non_homogeneous_modules,
                 "unrecognized_modules": found.unrecognized_modules},
        reason="; ".join(reasons), **common)


def assert_homogeneity(model, x, **kwargs) -> Verdict:
    """:func:`check_homogeneity`, raising ``ClaimViolation`` unless the verdict is ``holds``."""
    return require_holds(check_homogeneity(model, x, **kwargs))


def audit_cases(*, n: int, seed: int, device: str, dtype: str) -> Iterator[AuditCase]:
    """n random homogeneous networks (expected: holds) and n broken ones (cycling through the breaks)."""
    from ..sampling import case_rng, network_and_batch, random_spec, reproduce_line
    from ..strategies import BREAKS

    expected_for = {"residual": frozenset({"violated"})}
    for index in range(2 * n):
        rng = case_rng(seed, CLAIM_ID, index)
        breaks = None if index < n else BREAKS[index % len(BREAKS)]
        spec = random_spec(rng, breaks=breaks)
        instance_seed, batch = int(rng.integers(2**31)), int(rng.integers(2, 33))
        expected = (frozenset({"holds"}) if breaks is None
                    else expected_for.get(breaks, frozenset({"vacuous"})))

        def run(spec=spec, instance_seed=instance_seed, batch=batch):
            model, x = network_and_batch(spec, instance_seed, batch, device, dtype)
            return check_homogeneity(model, x, seed=instance_seed)

        yield AuditCase(name=f"{'control-' + breaks if breaks else 'instance'}-{index}",
                        kind="control" if breaks else "instance", expected=expected,
                        reproduce=reproduce_line(spec, instance_seed, batch, device, dtype,
                                                 "tc.check_homogeneity(m, x)"),
                        run=run, size=sum(p.numel() for p in build_network(spec).parameters()))


CLAIM = register(Claim(
    id=CLAIM_ID,
    statement="A bias-free network with positively homogeneous activations satisfies f(aW_k) = a^{d_k} f(W) "
              "for a > 0 in each weight layer: Euler <W_k, df/dW_k> = d_k f and f(W) = rho f(V), "
              "rho = prod ||W_k||^{d_k}.",
    assumptions=(ASSUME_WEIGHTS, ASSUME_NO_BIAS, ASSUME_MODULES),
    source="Poggio, Liao & Banburski, Nat. Commun. 2020 (Theory III); Lyu & Li, ICLR 2020, eq. 6 and Thm B.2",
    checker=check_homogeneity,
    audit_cases=audit_cases,
    tolerance="2 gamma_K (Higham) relative to sum|W * df/dW| + d|f|; K = largest layer + 2 x total fan-in + 2 x depth",
))
