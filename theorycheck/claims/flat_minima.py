"""Claims ``flat_minima`` and ``gauss_newton``: sharpness is not invariant under the rescalings that
leave a ReLU network unchanged, and at an interpolating squared-loss minimum the Hessian is J^T J.

Two-layer net f(x) = W2 a(W1 x), squared loss L = 1/2 sum_n ||f(x_n) - y_n||^2, theta = (W1, W2).
- Dinh, Pascanu, Bengio & Bengio, ICML 2017 ("Sharp minima can generalize for deep nets"), the
  alpha-scale transformation T_a(W1, W2) = (a W1, W2 / a), a > 0: for a positively 1-homogeneous a(.)
  (ReLU, LeakyReLU) f o T_a = f, so L o T_a = L and, T_a being linear, T_a H(T_a theta) T_a = H(theta):
      H(T_a theta) = T_a^{-1} H(theta) T_a^{-1}   (blocks H_11 / a^2, H_12, a^2 H_22),
      a^2 lambda_max(H_22) <= lambda_max(H(T_a theta)) <= max(a^2, a^{-2}) lambda_max(H)   (lambda_max(H) >= 0),
  so lambda_max(H(T_a theta)) / a^2 -> lambda_max(H_22) = lambda_max(sum_n h_n h_n^T) as a -> inf: the same
  function sits at an arbitrarily sharp minimum (the paper's Theorem 4 makes this point for the spectral
  norm; the identity above is its two-line derivation).
- Gauss-Newton decomposition: H = J^T J + sum_n r_n . d^2 f(x_n) with r_n = f(x_n) - y_n; at an
  interpolating point (r = 0) H = J^T J, so rank H <= n k (k outputs) << #parameters: the Hessian at
  such a global minimum is degenerate (Poggio, Banburski & Liao, CBMM Memo 100 (2019), abstract).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
from torch.func import hessian, jacrev

from ..core.devices import dtype_name, dtype_of, gamma, unit_roundoff
from ..core.errors import expect
from ..core.kit import ClaimKit
from ..core.verdict import Verdict

DINH = "Dinh, Pascanu, Bengio & Bengio, ICML 2017, Sec. 4 (alpha-scale transformation), Thm 4"
GN_SOURCE = "Gauss-Newton decomposition of the squared-loss Hessian; Poggio, Banburski & Liao, CBMM Memo 100 (2019)"
ACTIVATIONS = {"relu": torch.relu, "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.1), "tanh": torch.tanh}


@dataclasses.dataclass(frozen=True)
class TwoLayer:
    """f(x) = W2 a(W1 x) on X with parameters flattened as theta = [vec W1, vec W2]."""

    W1: torch.Tensor
    W2: torch.Tensor
    X: torch.Tensor
    y: torch.Tensor
    act: Callable

    @classmethod
    def of(cls, W1, W2, X, y, activation) -> "TwoLayer":
        tensors = {"W1": W1, "W2": W2, "X": X, "y": y}
        for name, t in tensors.items():
            expect(isinstance(t, torch.Tensor) and t.is_floating_point(), expected=f"{name} as a floating torch "
                   "tensor", received=type(t).__name__, fix=f"torch.as_tensor({name}, dtype=torch.float64)")
        expect(len({(t.dtype, t.device) for t in tensors.values()}) == 1, expected="W1, W2, X, y on one device/dtype",
               received=", ".join(f"{n}: {t.device}/{t.dtype}" for n, t in tensors.items()), fix="call .to(...)")
        y = y.reshape(-1, 1) if y.ndim == 1 else y
        expect(W1.ndim == 2 and W2.ndim == 2 and X.ndim == 2 and X.shape[1] == W1.shape[1]
               and W2.shape[1] == W1.shape[0] and y.shape == (X.shape[0], W2.shape[0]),
               expected="W1 (m, d), W2 (k, m), X (n, d), y (n,) or (n, k)",
               received=f"W1 {tuple(W1.shape)}, W2 {tuple(W2.shape)}, X {tuple(X.shape)}, y {tuple(y.shape)}",
               fix="the weights of a bias-free Linear(d, m) -> activation -> Linear(m, k)")
        act = ACTIVATIONS.get(activation) if isinstance(activation, str) else activation
        expect(callable(act), expected=f"activation in {sorted(ACTIVATIONS)} or a callable",
               received=repr(activation), fix="activation='relu'")
        return cls(W1.detach(), W2.detach(), X.detach(), y.detach(), act)

    @property
    def theta(self) -> torch.Tensor:
        return torch.cat([self.W1.reshape(-1), self.W2.reshape(-1)])

    def split(self, theta):
        m1 = self.W1.numel()
        return theta[:m1].reshape(self.W1.shape), theta[m1:].reshape(self.W2.shape)

    def f(self, theta):
        W1, W2 = self.split(theta)
        return self.act(self.X @ W1.T) @ W2.T

    def loss(self, theta):
        return 0.5 * ((self.f(theta) - self.y) ** 2).sum()

    def abs_network(self):
        """f with every weight and input replaced by its absolute value and a'(.) by |a'(.)| (fixed at the
        pre-activations): the absolute sums that bound the roundoff of f and J."""
        slope = jacrev(lambda z: self.act(z).sum())(self.X @ self.W1.T).abs()
        X_abs = self.X.abs()

        def f_abs(theta):
            W1, W2 = self.split(theta)
            return (slope * (X_abs @ W1.T)) @ W2.T

        return f_abs

    def abs_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The absolute-value network's outputs (n, k) and Jacobian (n k, P) at |theta|."""
        f_abs = self.abs_network()
        with torch.no_grad():
            values = f_abs(self.theta.abs())
        return values, jacrev(f_abs)(self.theta.abs()).reshape(self.y.numel(), -1)

    def terms(self, K: int):
        """H, J, r, and the entrywise roundoff bound of H: 2 gamma_K (J_abs^T J_abs + sum |r||d^2 f|) plus
        sum_n rho_n |d^2 f_n|, rho_n = 2 gamma_K f_abs,n + u |y_n| (the rounding of the residual itself)."""
        theta = self.theta
        H = hessian(self.loss)(theta)
        J = jacrev(self.f)(theta).reshape(self.y.numel(), -1)
        second = hessian(self.f)(theta).reshape(self.y.numel(), theta.numel(), theta.numel())
        with torch.no_grad():
            f = self.f(theta)
        f_abs, J_abs = self.abs_terms()
        f_abs = f_abs.reshape(-1)
        r = (f - self.y).reshape(-1)
        allowed = 2 * gamma(K, H.dtype) * f_abs + unit_roundoff(H.dtype) * self.y.reshape(-1).abs()
        bound = (2 * gamma(K, H.dtype) * (J_abs.T @ J_abs + torch.einsum("n,nij->ij", r.abs(), second.abs()))
                 + torch.einsum("n,nij->ij", allowed, second.abs()))
        return H, J, r, second, bound, allowed


def _terms_count(model: TwoLayer) -> int:
    """K in gamma_K: the forward dot products (d, m), the sum over samples and outputs, and the
    backward pass (as many again)."""
    (m, d), k, n = model.W1.shape, model.W2.shape[0], model.X.shape[0]
    return 2 * (d + m) + n * k + 4


def _homogeneous(model: TwoLayer, factors) -> tuple[bool, float]:
    """a(c z) = c a(z) on the pre-activations for every factor c the rescaling applies to W1 (and c = 2),
    to the rounding of the two evaluations: the rescaled network stays on the data's own pre-activations
    times c, so a threshold it crosses there (a clamp, relu6) is seen."""
    z = model.X @ model.W1.T
    base = model.act(z)
    gap = 0.0
    for c in {2.0, *map(float, factors)}:
        scaled = model.act(c * z)
        if bool(torch.isfinite(scaled).all()):
            gap = max(gap, float(((scaled - c * base).abs() / (c * z.abs()).clamp_min(torch.finfo(z.dtype).tiny)).max()))
    return gap <= 4 * unit_roundoff(z.dtype), gap


def _ratio(residual: torch.Tensor, bound: torch.Tensor) -> float:
    """max residual / bound entrywise (0/0 = 0: entries that are exactly zero in both)."""
    ratio = torch.where(bound > 0, residual / bound.clamp_min(torch.finfo(bound.dtype).tiny),
                        torch.where(residual > 0, math.inf, 0.0))
    return float(ratio.max())


def _eigenvalues(H: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues (NaN when H is not finite)."""
    if not bool(torch.isfinite(H).all()):
        return torch.full((H.shape[0],), math.nan, dtype=torch.float64)
    return torch.linalg.eigvalsh(H.double())


def _lambda_max(H: torch.Tensor) -> float:
    return float(_eigenvalues(H)[-1])


flat_minima_kit = ClaimKit(
    id="flat_minima",
    statement="For f = W2 a(W1 x) with a positively 1-homogeneous activation, (a W1, W2 / a) leaves f unchanged and "
              "maps the squared-loss Hessian to T_a^{-1} H T_a^{-1}: a^2 lambda_max(H_22) <= lambda_max(H_a) <= "
              "max(a^2, a^-2) lambda_max(H), so equal functions sit at minima of any sharpness.",
    source=DINH,
    assumptions={"homogeneous": "activation positively 1-homogeneous on the pre-activations at every rescaling "
                                "factor c (a(c z) = c a(z))"},
    tolerance="2 gamma_K relative to the absolute sums of f and of each Hessian entry",
)


@flat_minima_kit.checker(samples=("X", "y"), finite=("W1", "W2"))
def check_flat_minima(W1: torch.Tensor, W2: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *,
                      activation="relu", alphas=(0.1, 10.0, 100.0), seed: int | None = None) -> Verdict:
    """Dinh et al.'s alpha-scale (a W1, W2 / a) of f(x) = W2 a(W1 x): f unchanged, the squared-loss Hessian
    transformed exactly as H_a = T_a^{-1} H T_a^{-1} (entrywise, to roundoff) and a^2 lambda_max(H_22) <=
    lambda_max(H_a) <= max(a^2, a^-2) lambda_max(H). Any point, not only minima; a non-homogeneous
    activation (tanh) is ``vacuous`` with the change of f reported."""
    model = TwoLayer.of(W1, W2, X, y, activation)
    pairs = [tuple(map(float, a)) if isinstance(a, (tuple, list)) else (float(a), 1 / float(a)) for a in alphas]
    expect(len(pairs) >= 1 and all(len(p) == 2 and min(p) > 0 for p in pairs), expected="alphas: numbers a > 0 "
           "(the map (a W1, W2 / a)) or pairs (a1, a2) of positive layer scales", received=repr(alphas),
           fix="alphas=(0.1, 10.0, 100.0)")
    dtype = model.X.dtype
    K = _terms_count(model)
    g = 2 * gamma(K, dtype)
    homogeneous, homogeneity_gap = _homogeneous(model, [a1 for a1, _ in pairs])
    H, _, _, _, bound, _ = model.terms(K)
    m1, P = model.W1.numel(), model.theta.numel()
    lam, lam22 = _lambda_max(H), _lambda_max(H[m1:, m1:])
    f0 = model.f(model.theta).detach()
    f_scale = model.abs_terms()[0].clamp_min(torch.finfo(dtype).tiny)
    rows, worst_f, worst_h, held_bounds, finite = [], 0.0, 0.0, True, bool(torch.isfinite(H).all())
    for a1, a2 in pairs:
        t_inv = torch.cat([torch.full((m1,), 1 / a1, dtype=torch.float64), torch.full((P - m1,), 1 / a2,
                                                                                    dtype=torch.float64)]).to(H)
        scaled = TwoLayer(model.W1 * a1, model.W2 * a2, model.X, model.y, model.act)
        H_a, *_ = scaled.terms(K)
        f_a = scaled.f(scaled.theta).detach()
        predicted = t_inv[:, None] * H * t_inv[None, :]
        bound_a = 2 * t_inv[:, None] * bound * t_inv[None, :]  # the errors of H_a and of T^-1 H T^-1
        f_res = float(((f_a - f0).abs() / f_scale).max()) / g
        h_res = _ratio((H_a - predicted).abs(), bound_a)
        lam_a = _lambda_max(H_a)
        eig_err = float(bound_a.norm()) + P * unit_roundoff(dtype) * float(H_a.norm())
        lower, upper = lam22 / a2 ** 2, max(a1 ** -2, a2 ** -2) * max(lam, 0.0)
        held_bounds &= lower <= lam_a + eig_err + P * unit_roundoff(dtype) * float(H.norm()) / a2 ** 2 \
            and (lam < 0 or lam_a <= upper + eig_err + upper * P * unit_roundoff(dtype))
        finite &= bool(torch.isfinite(H_a).all())
        worst_f, worst_h = max(worst_f, f_res), max(worst_h, h_res)
        rows.append({"alpha": a1, "alpha_W2": a2, "f_change": f_res, "hessian_residual": h_res, "lambda_max": lam_a,
                     "lower_bound": lower, "upper_bound": upper,
                     "lambda_max_over_lower_bound": lam_a / lower if lower > 0 else math.nan})
    statistic = max(worst_f, worst_h)
    held = statistic <= 1 and held_bounds
    silent = not bool((f_scale > torch.finfo(dtype).tiny).any())
    reasons = []
    if not homogeneous:
        reasons.append(f"the activation is not positively homogeneous at the rescaling factors (|a(cz) - c a(z)|/|cz| up "
                       f"to {homogeneity_gap:.3g}):"
                       f" the rescaling changes f by up to {worst_f:.3g} x its roundoff bound")
    elif statistic > 1:
        reasons.append(f"f or the Hessian law failed: f change {worst_f:.3g} x its roundoff bound, Hessian "
                       f"residual {worst_h:.3g} x its bound")
    if homogeneous and not held_bounds:
        reasons.append("lambda_max(H_a) outside [a^2 lambda_max(H_22), max(a^2, a^-2) lambda_max(H)]")
    if not finite:
        reasons.append("non-finite Hessian (overflow)")
    if silent:
        reasons.append("every hidden unit is dead on every sample (f = 0 identically): nothing to test")
    return flat_minima_kit.decide(
        assumptions={"homogeneous": homogeneous}, conclusion_held=held,
        inconclusive=not finite or silent, statistic=statistic, bound=0.0, tolerance=1.0,
        tolerance_basis=(f"statistic: the largest ratio of a change to its roundoff bound: |f_a - f| to 2 gamma_K |W2| |a'| "
                         f"|W1| |x|, K = {K} (2 x (d + m) + n k + 4: forward and backward dot products, the sum over "
                         "samples), and each |H_a - T^-1 H T^-1| entry to twice T^-1 [2 gamma_K (J_abs^T J_abs + sum |r| "
                         "|d^2 f|) + sum rho_n |d^2 f_n|] T^-1; eigenvalue bounds by Weyl's inequality on that error plus "
                         "P u ||H||"),
        device=str(model.X.device), dtype=dtype_name(dtype),
        details={"alphas": rows, "lambda_max": lam, "lambda_max_H22": lam22, "parameters": P,
                 "homogeneity_gap": homogeneity_gap,
                 "series": {"lambda_max(H_a) a2^2 (-> lambda_max(H_22))": {"x": [r["alpha"] for r in rows],
                                                       "y": [r["lambda_max"] * r["alpha_W2"] ** 2 for r in rows],
                                                       "xlabel": "rescaling alpha"}}},
        reason="; ".join(reasons))


gauss_newton_kit = ClaimKit(
    id="gauss_newton",
    statement="At an interpolating point of the squared loss, H = J^T J (the residual term sum_n r_n d^2 f_n "
              "vanishes), so rank H <= n k.",
    source=GN_SOURCE,
    assumptions={"interpolates": "interpolation: |f(x_n) - y_n| within the roundoff of f"},
    tolerance="2 gamma_K (J_abs^T J_abs + sum |r||d^2 f|) entrywise plus the residual interpolation allows",
)


@gauss_newton_kit.checker(samples=("X", "y"), finite=("W1", "W2"))
def check_gauss_newton(W1: torch.Tensor, W2: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *,
                       activation="relu", seed: int | None = None) -> Verdict:
    """At an interpolating point of the squared loss, the Hessian equals J^T J entrywise (to the roundoff
    of H, J and the residuals allowed by interpolation) and rank H <= n k. A point that does not
    interpolate is ``vacuous``; the residual term sum_n r_n d^2 f_n it leaves is reported."""
    model = TwoLayer.of(W1, W2, X, y, activation)
    dtype, K = model.X.dtype, _terms_count(model)
    H, J, r, second, tol, allowed = model.terms(K)
    GN = J.T @ J
    residual = (H - GN).abs()
    interpolates = bool((r.abs() <= allowed).all())
    ratio = _ratio(residual, tol)
    eig = _eigenvalues(H)
    P, nk = H.shape[0], model.y.numel()
    threshold = float(tol.norm()) + P * unit_roundoff(dtype) * float(H.norm())
    rank = int((eig.abs() > threshold).sum())
    residual_term = float(torch.einsum("n,nij->ij", r, second).norm())
    finite = bool(torch.isfinite(H).all() and torch.isfinite(J).all())
    held = bool((residual <= tol).all()) and rank <= nk
    reasons = []
    if not interpolates:
        reasons.append(f"not an interpolating point: max |f - y| = {float(r.abs().max()):.3g}, roundoff allows "
                       f"{float(allowed.max()):.3g}; H - J^T J = sum r_n d^2 f_n has norm {residual_term:.3g}")
    elif not held:
        reasons.append(f"H != J^T J at an interpolating point: entrywise ratio to roundoff {ratio:.3g}, rank {rank} vs "
                       f"n k = {nk}")
    if not finite:
        reasons.append("non-finite Hessian or Jacobian")
    return gauss_newton_kit.decide(
        assumptions={"interpolates": interpolates}, conclusion_held=held,
        inconclusive=not finite, statistic=float(residual.norm()), bound=0.0, tolerance=float(tol.norm()),
        tolerance_basis=(f"||H - J^T J||_F vs the Frobenius norm of the entrywise bound 2 gamma_K (J_abs^T J_abs + "
                         f"sum |r||d^2 f|) + sum_n rho_n |d^2 f_n|, K = {K}, rho_n = 2 gamma_K |W2| |a'| |W1| |x_n| + u|y_n| "
                         "(the residual interpolation allows); rank counts |eigenvalues| above that bound + P u ||H|| "
                         "(Weyl)"),
        device=str(model.X.device), dtype=dtype_name(dtype),
        details={"max_entry_ratio": ratio, "rank": rank, "n_times_k": nk, "parameters": P,
                 "max_abs_residual": float(r.abs().max()), "residual_term_norm": residual_term,
                 "relative_gap": float((H - GN).norm() / H.norm()) if float(H.norm()) > 0 else math.nan,
                 "eigenvalues": eig.tolist()},
        reason="; ".join(reasons))


assert_flat_minima = flat_minima_kit.assert_


assert_gauss_newton = gauss_newton_kit.assert_


# --- audit cases ---------------------------------------------------------------------------------

CONTROLS = {"flat_minima": {"tanh": "vacuous", "unbalanced": "violated"},
            "gauss_newton": {"noisy-labels": "vacuous", "tanh-noisy": "vacuous"}}


@dataclasses.dataclass(frozen=True)
class HessianCase:
    """A two-layer net at an interpolating point (teacher labels y = f(X)); rebuilt from these fields."""

    claim: str
    n: int = 4
    d: int = 3
    m: int = 6
    k: int = 1
    activation: str = "relu"
    seed: int = 0
    control: str | None = None

    def tensors(self, device, dtype):
        gen = torch.Generator().manual_seed(self.seed)
        W1, W2, X = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((self.m, self.d), (self.k, self.m),
                                                                                    (self.n, self.d)))
        W1, W2, X = (t.to(device, dtype_of(dtype)) for t in (W1 / math.sqrt(self.d), W2 / math.sqrt(self.m), X))
        act = ACTIVATIONS["tanh" if self.control in ("tanh", "tanh-noisy") else self.activation]
        y = act(X @ W1.T) @ W2.T
        if self.control in ("noisy-labels", "tanh-noisy"):
            y = y + 0.1 * torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y)
        return W1, W2, X, y

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        W1, W2, X, y = self.tensors(device, dtype)
        activation = "tanh" if self.control in ("tanh", "tanh-noisy") else self.activation
        if self.claim == "gauss_newton":
            return check_gauss_newton(W1, W2, X, y, activation=activation, seed=self.seed)
        if self.control == "unbalanced":  # layer scales with a1 a2 != 1: f changes, the claimed invariance fails
            return check_flat_minima(W1, W2, X, y, activation=activation, alphas=((2.0, 0.6),), seed=self.seed)
        return check_flat_minima(W1, W2, X, y, activation=activation, seed=self.seed)


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> HessianCase:
    """n in [2, 6] samples, d in [2, 5], hidden m in [n, 10], k in {1, 2} outputs, ReLU or LeakyReLU."""
    n = int(rng.integers(2, 7))
    return HessianCase(claim=claim, n=n, d=int(rng.integers(2, 6)), m=int(rng.integers(n, 11)),
                       k=int(rng.integers(1, 3)), activation=("relu", "leaky_relu")[int(rng.integers(2))],
                       seed=int(rng.integers(2**31)), control=control)


flat_minima_kit.dataclass_cases(random_case, CONTROLS["flat_minima"])
gauss_newton_kit.dataclass_cases(random_case, CONTROLS["gauss_newton"])
