"""Claim ``random_labels``: a two-layer ReLU network with 2n + d weights fits any labels on n distinct
points in d dimensions exactly (Zhang, Bengio, Hardt, Recht & Vinyals, ICLR 2017, Thm 1 and its Lemma).

Construction (the paper's proof): project the points on a direction a, z_i = <a, x_i>, sorted; put the
biases between consecutive projections, b_1 < z_1 < b_2 < z_2 < ... < b_n < z_n; then
A_ij = max(z_i - b_j, 0) is lower triangular with a positive diagonal, so A w = y has a solution for
every y, and f(x) = sum_j w_j relu(<a, x> - b_j) interpolates. The checker builds it and evaluates the
network (an ``nn.Sequential``) on the points: the residual must stay within the roundoff bound of the
triangular solve and of the network's forward pass.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import strategies as st

from ..core.devices import dtype_name, dtype_of, gamma, unit_roundoff
from ..core.errors import expect
from ..core.kit import Case, ClaimKit, comparison

kit = ClaimKit(
    id="random_labels",
    statement="On n distinct points in d dimensions, a two-layer ReLU network with 2n + d weights "
              "(f(x) = sum_j w_j relu(<a, x> - b_j)) fits any labels exactly.",
    source="Zhang, Bengio, Hardt, Recht & Vinyals, ICLR 2017 (Understanding deep learning requires "
           "rethinking generalization), Thm 1 and its proof",
    assumptions={"distinct": "the projections <a, x_i> are distinct (distinct points, a generic direction a)",
                 "finite": "inputs and labels are finite"},
    tolerance="per point: 2 gamma_{n+2} (|A||w|)_i (triangular solve and the output sum, Higham Thm 8.5) + "
              "2 gamma_{d+1} (|a|^T |x_i| + |b|) sum_j |w_j| (the projections recomputed by the network)")


def interpolating_network(X: torch.Tensor, y: torch.Tensor, direction: torch.Tensor) -> torch.nn.Sequential:
    """The paper's construction as an ``nn.Sequential``: Linear(d, n) with rows a and biases -b, ReLU,
    Linear(n, 1) with weights w solving the lower-triangular system A w = y."""
    z = X @ direction
    order = torch.argsort(z)
    zs = z[order]
    gaps = torch.diff(zs)
    below = torch.cat([zs[:1] - (gaps.min() if gaps.numel() else 1.0), zs[:-1]])
    biases = (below + zs) / 2  # b_1 < z_1 < b_2 < ... < b_n < z_n
    A = torch.relu(zs[:, None] - biases[None, :])
    w = torch.linalg.solve_triangular(A, y[order][:, None], upper=False).squeeze(1)
    n, d = X.shape
    net = torch.nn.Sequential(torch.nn.Linear(d, n), torch.nn.ReLU(), torch.nn.Linear(n, 1, bias=False))
    net = net.to(dtype=X.dtype, device=X.device)
    with torch.no_grad():
        net[0].weight.copy_(direction[None, :].expand(n, d))
        net[0].bias.copy_(-biases)
        net[2].weight.copy_(w[None, :])
    return net


@kit.checker(samples=("X", "y"))
def check_random_labels(X: torch.Tensor, y: torch.Tensor, *, seed: int = 0):
    """Build the construction for (X, y) with a direction drawn from ``seed`` and check that it fits."""
    expect(isinstance(X, torch.Tensor) and X.ndim == 2 and X.shape[0] >= 1, expected="X as an (n, d) tensor",
           received=f"{type(X).__name__} of shape {tuple(getattr(X, 'shape', ()))}", fix="pass the points as rows")
    expect(isinstance(y, torch.Tensor) and y.shape == (X.shape[0],), expected=f"y of shape ({X.shape[0]},)",
           received=f"shape {tuple(getattr(y, 'shape', ()))}", fix="one label per point")
    n, d = X.shape
    finite = bool(torch.isfinite(X).all() and torch.isfinite(y).all())
    direction = torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=X.dtype).to(X.device)
    z = torch.sort(X @ direction).values
    # two projections closer than their own rounding are not known to be distinct
    rounding = 2 * gamma(d, X.dtype) * float((X.abs() @ direction.abs()).max()) if finite else 0.0
    distinct = finite and bool((torch.diff(z) > rounding).all())
    if not (finite and distinct):
        return kit.decide(assumptions={"finite": finite, "distinct": distinct}, inconclusive=not finite,
                          details={"n": n, "d": d}, seed=seed, dtype=dtype_name(X.dtype),
                          reason="duplicate or nearly equal projections: no interpolating construction"
                                 if finite else "non-finite inputs")
    net = interpolating_network(X, y, direction)
    with torch.no_grad():
        fitted = net(X).squeeze(1)
        A_abs_w = torch.relu(X @ direction[:, None] + net[0].bias[None, :]).abs() @ net[2].weight[0].abs()
        scale = X.abs() @ direction.abs() + net[0].bias.abs().max()
        allowance = (2 * gamma(n + 2, X.dtype) * A_abs_w
                     + 2 * gamma(d + 1, X.dtype) * scale * net[2].weight.abs().sum()
                     + unit_roundoff(X.dtype) * y.abs())
        ratio = float(((fitted - y).abs() / allowance).max())
        sizes = {"max_abs_residual": float((fitted - y).abs().max()), "max_abs_w": float(net[2].weight.abs().max())}
    return kit.decide(
        assumptions={"finite": True, "distinct": True},
        comparisons=[comparison("max_i |f(x_i) - y_i| / allowance_i", ratio, 0.0, 1.0,
                                "roundoff of the triangular solve and the forward pass, per point")],
        details={"n": n, "d": d, "weights": 2 * n + d, **sizes},
        seed=seed, dtype=dtype_name(X.dtype))


@dataclasses.dataclass(frozen=True)
class LabelCase:
    """n Gaussian points in d dimensions with random +-1 labels drawn from ``seed`` (``control``: the last point
    repeats the first with the opposite label, or one coordinate is NaN); rebuilt from these fields."""

    n: int
    d: int
    seed: int
    control: str | None = None

    def data(self, device: str, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(self.seed)
        X = torch.as_tensor(rng.standard_normal((self.n, self.d)), dtype=dtype_of(dtype), device=device)
        y = torch.as_tensor(rng.choice([-1.0, 1.0], size=self.n), dtype=X.dtype, device=device)
        if self.control == "duplicate_points":
            X[-1], y[-1] = X[0], -y[0]
        if self.control == "non_finite":
            X[min(2, self.n - 1), 0] = float("nan")
        return X, y


def _case(case: LabelCase, device: str, dtype: str) -> Case:
    X, y = case.data(device, dtype)
    line = (f"import torch, theorycheck as tc; from theorycheck.claims.random_labels import LabelCase; "
            f"X, y = {case!r}.data({device!r}, {dtype!r}); print(tc.check_random_labels(X, y, seed={case.seed}).summary())")
    return Case(run=lambda: check_random_labels(X, y, seed=case.seed), size=2 * case.n + case.d, reproduce=line)


def _cases(n: st.SearchStrategy, control: str | None = None):
    """Zhang et al.'s setting: n Gaussian points in d in [1, 8] dimensions, random labels."""
    return lambda device, dtype: st.builds(LabelCase, n=n, d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1),
                                           control=st.just(control))


kit.instances_from(_cases(st.integers(2, 64)), _case)
# a point repeated with the opposite label: no function fits both; a NaN coordinate: nothing to decide
kit.control_from("duplicate_points", expect="vacuous", strategy=_cases(st.integers(3, 32), "duplicate_points"),
                 build=_case)
kit.control_from("non_finite", expect="inconclusive", strategy=_cases(st.integers(3, 8), "non_finite"), build=_case)


assert_random_labels = kit.assert_
