"""Claim ``homogeneity``: a bias-free network with positively homogeneous activations is
positively homogeneous in each weight layer.

f(..., a W_k, ...) = a^{d_k} f(W) for a > 0, hence Euler's identity <W_k, df/dW_k> = d_k f per layer,
and f(W) = rho f(V) with V_k = W_k / ||W_k||, rho = prod_k ||W_k||^{d_k}.
Sources: Poggio, Liao, Banburski, Nat. Commun. 11:3371 (2020) ("Theory III"); Lyu & Li, ICLR 2020,
eq. (6) and Theorem B.2 (Euler's theorem for homogeneous functions).
"""

from __future__ import annotations

import functools

import torch
from hypothesis import strategies as st

from ..core.kit import Case, ClaimKit
from ..core.verdict import Verdict
from ..engines.homogeneity import measure_homogeneity
from ..generate.models import build_network
from ..generate.sampling import network_and_batch, random_spec, reproduce_line
from ..generate.specs import BREAKS
from ..generate.strategies import network_specs

kit = ClaimKit(
    id="homogeneity",
    statement="A bias-free network with positively homogeneous activations satisfies f(aW_k) = a^{d_k} f(W) "
              "for a > 0 in each weight layer: Euler <W_k, df/dW_k> = d_k f and f(W) = rho f(V), "
              "rho = prod ||W_k||^{d_k}.",
    source="Poggio, Liao & Banburski, Nat. Commun. 2020 (Theory III); Lyu & Li, ICLR 2020, eq. 6 and Thm B.2",
    assumptions={"weights": "weight layers found", "no_bias": "no bias parameters",
                 "modules": "no non-homogeneous modules (tanh, sigmoid, GELU, normalization)",
                 "deterministic": "deterministic forward (no dropout or other training-mode randomness)"},
    tolerance="per check, on a float64 copy (or the model's own pass, in the precision its forward is measured "
              "to compute in): Euler gamma_K, scalings 2 gamma_K' + (d+2)u, relative to "
              "sum_k (|delta_k|^T |W_k| |a_k| + d_k |f|); the model's own pass within gamma_K'(u) of the copy; "
              "u of the operations on the parameters; a check whose bound exceeds |f| / 2 on every sample, or a sweep "
              "the arithmetic's range cuts short of the model dtype's, is inconclusive",
)


@kit.checker(samples=("x",), indices=("x",))
def check_homogeneity(model: torch.nn.Module, x: torch.Tensor, *, degrees=None, seed=None) -> Verdict:
    """Check positive homogeneity of ``model`` in each weight layer on the batch ``x``.

    Per weight layer W_k: Euler's identity <W_k, df/dW_k> = d_k f, f(a W_k) = a^{d_k} f(W) for every a in
    :data:`~theorycheck.engines.homogeneity.SCALES`, and f(W) = rho f(V), measured by
    :func:`~theorycheck.engines.homogeneity.measure_homogeneity` on a float64 copy (the float32 weights
    exactly); the model's own forward pass is checked against that copy within its first-order error bound.
    A forward that fixes its own dtypes is judged on its own pass in the precision it is measured to use;
    ``x`` may hold integer ids; the batch axis is measured; paths hidden from autograd are named.
    ``degrees``: the degree of f in each weight layer (list in registration order, or dict by name);
    default ``model.homogeneity_degrees`` if set, else 1 each. The model is not changed (the checks run on
    copies). Frozen non-weight parameters are constants of f, as buffers are, unless the identities fail with
    them held constant (then they count as biases); weight layers f does not depend on (measured) have
    degree 0 and are left out.
    """
    measured = measure_homogeneity(model, x, degrees=degrees)
    facts = measured.facts
    assumptions = {"weights": facts["weights"], "no_bias": facts["no_bias"],
                   "modules": facts["homogeneous_modules"], "deterministic": facts["deterministic"]}
    return kit.decide(assumptions=assumptions, conclusion_held=bool(measured.statistic <= 1),
                      inconclusive=measured.inconclusive, statistic=measured.statistic, bound=0.0,
                      tolerance=measured.tolerance, tolerance_basis=measured.tolerance_basis,
                      details=measured.details, reason=measured.reason, device=measured.device, dtype=measured.dtype)


assert_homogeneity = kit.assert_


def instance_strategy(device: str, dtype: str):
    """An instance: a homogeneous network of :func:`~theorycheck.generate.strategies.network_specs`, its weight
    and batch seed, and a batch of 2-32 inputs (the audit's and the property tests' one generator; a failing
    instance shrinks to fewer layers, narrower widths and a smaller batch)."""
    return st.tuples(network_specs(), st.integers(0, 2**31 - 1), st.integers(2, 32))


def _case(params, device: str, dtype: str) -> Case:
    spec, instance_seed, batch = params

    def run():
        model, x = network_and_batch(spec, instance_seed, batch, device, dtype)
        return check_homogeneity(model, x, seed=instance_seed)

    return Case(run=run, size=sum(p.numel() for p in build_network(spec).parameters()),
                reproduce=reproduce_line(spec, instance_seed, batch, device, dtype, "tc.check_homogeneity(m, x)"))


def _broken_case(rng, device: str, dtype: str, breaks: str) -> Case:
    """A network of :func:`~theorycheck.generate.sampling.random_spec` broken by ``breaks``."""
    return _case((random_spec(rng, breaks=breaks), int(rng.integers(2**31)), int(rng.integers(2, 33))), device, dtype)


kit.instances_from(instance_strategy, _case)
for _break in BREAKS:  # a residual connection breaks the identity itself; the others break an assumption
    kit.control(_break, expect="violated" if _break == "residual" else "vacuous")(
        functools.partial(_broken_case, breaks=_break))


@kit.battery
def battery_check(model, X, y, *, seed):
    """The battery adapter: homogeneity of the family's model on the drawn inputs."""
    return check_homogeneity(model, X, seed=seed)
