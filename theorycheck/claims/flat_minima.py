"""Claims ``flat_minima`` and ``gauss_newton``: sharpness is not invariant under the rescalings that
leave a ReLU network unchanged, and at an interpolating squared-loss minimum the Hessian is J^T J.

Any module f(theta; x) (biases and depth allowed), squared loss L = 1/2 sum_n ||f(x_n) - y_n||^2 or a loss of
the outputs given.
- Dinh, Pascanu, Bengio & Bengio, ICML 2017 ("Sharp minima can generalize for deep nets"), the
  alpha-scale transformation: layer k's weight and bias times a, layer k+1's weight divided by a (a > 0).
  Through a positively 1-homogeneous activation (ReLU, LeakyReLU) f o T_a = f, so L o T_a = L and, T_a being
  linear and diagonal, T_a H(T_a theta) T_a = H(theta):
      H(T_a theta) = T_a^{-1} H(theta) T_a^{-1},
      a^2 lambda_max(H_BB) <= lambda_max(H(T_a theta)) <= max_i t_i^{-2} lambda_max(H)   (lambda_max(H) >= 0),
  B the block of layer k+1's weight: the same function sits at an arbitrarily sharp minimum (the paper's
  Theorem 4 makes this point for the spectral norm; the identity above is its two-line derivation).
  The invariance f o T_a = f is the assumption, measured on the data at every factor a the check applies.
- Gauss-Newton decomposition: H = J^T J + sum_n r_n . d^2 f(x_n) with r_n = f(x_n) - y_n; at an
  interpolating point (r = 0) H = J^T J, so rank H <= n k (k outputs) << #parameters: the Hessian at
  such a global minimum is degenerate (Poggio, Banburski & Liao, CBMM Memo 100 (2019), abstract). For any
  loss of the outputs, H = J^T D J + sum_n g_n . d^2 f_n (g = dL/df, D = d^2 L/df^2): J^T D J where g = 0.
Both bounds are per sample: how the forward treats the batch is measured first
(:mod:`theorycheck.engines.batch_behaviour`): a random forward (dropout in training mode) is vacuous, samples
coupled by batch statistics are undecided unless everything holds within the bound, and entries below
tiny / u (underflow) inconclusive.
Hessians by torch.func on a float64 copy of the module (:mod:`theorycheck.engines.hessian`); above
``FULL_LIMIT`` parameters (or with ``probes=``) the identities are tested on random probe vectors by
Hessian-vector products.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch

from ..core.devices import dtype_name, dtype_of
from ..core.errors import expect
from ..core.inputs import as_batch, model_device_dtype, require_module
from ..core.kit import ClaimKit
from ..core.threads import one_thread_when_small
from ..core.verdict import Verdict
from ..engines.batch_behaviour import BatchBehaviour, measure_batch_behaviour
from ..engines.hessian import LossLandscape
from ..engines.homogeneity import measurement_work

DINH = "Dinh, Pascanu, Bengio & Bengio, ICML 2017, Sec. 4 (alpha-scale transformation), Thm 4"
GN_SOURCE = "Gauss-Newton decomposition of the squared-loss Hessian; Poggio, Banburski & Liao, CBMM Memo 100 (2019)"
FULL_LIMIT = 1500  # parameters up to which the full P x P Hessian is formed (else probe vectors)


class Activation(torch.nn.Module):
    """A callable as a module (an activation given as a function)."""

    def __init__(self, function: Callable):
        super().__init__()
        self.function = function

    def forward(self, z):
        return self.function(z)


ACTIVATIONS = {"relu": torch.nn.ReLU, "leaky_relu": lambda: torch.nn.LeakyReLU(0.1), "tanh": torch.nn.Tanh}


def two_layer_network(W1: torch.Tensor, W2: torch.Tensor, activation="relu") -> torch.nn.Module:
    """f(x) = W2 a(W1 x) as a bias-free ``nn.Sequential`` holding copies of W1 (m, d) and W2 (k, m);
    ``activation``: a name in :data:`ACTIVATIONS`, a module or a callable."""
    for name, t in (("W1", W1), ("W2", W2)):
        expect(isinstance(t, torch.Tensor) and t.is_floating_point() and t.ndim == 2, expected=f"{name} as a "
               "floating 2-d torch tensor", received=f"{type(t).__name__} {tuple(getattr(t, 'shape', ()))}",
               fix=f"torch.as_tensor({name}, dtype=torch.float64)")
    expect(W2.shape[1] == W1.shape[0] and (W1.dtype, W1.device) == (W2.dtype, W2.device),
           expected="W1 (m, d), W2 (k, m) on one device/dtype", received=f"W1 {tuple(W1.shape)} {W1.dtype}, "
           f"W2 {tuple(W2.shape)} {W2.dtype}", fix="the weights of Linear(d, m) -> activation -> Linear(m, k)")
    if isinstance(activation, str):
        expect(activation in ACTIVATIONS, expected=f"activation in {sorted(ACTIVATIONS)}, a module or a callable",
               received=repr(activation), fix="activation='relu'")
        act = ACTIVATIONS[activation]()
    else:
        expect(callable(activation), expected="activation: a name, a module or a callable",
               received=repr(activation), fix="activation='relu'")
        act = activation if isinstance(activation, torch.nn.Module) else Activation(activation)
    first, second = (torch.nn.Linear(W.shape[1], W.shape[0], bias=False) for W in (W1, W2))
    net = torch.nn.Sequential(first, act, second).to(W1.device, W1.dtype)
    with torch.no_grad():
        first.weight.copy_(W1)
        second.weight.copy_(W2)
    return net


def _problem(model, X, y, loss) -> LossLandscape:
    require_module(model)
    device, dtype = model_device_dtype(model)
    X = as_batch(X, model, "X")
    expect(isinstance(y, torch.Tensor) and (y.is_floating_point() or loss is not None) and y.shape[0] == X.shape[0],
           expected=f"y as a tensor with {X.shape[0]} rows (one target per sample; floating for the squared loss)",
           received=f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}", fix="y = torch.as_tensor(targets, ...)")
    expect(loss is None or callable(loss), expected="loss: None (squared) or a callable loss(outputs, y) -> per-sample "
           "losses", received=type(loss).__name__, fix="loss=lambda out, y: torch.nn.functional.cross_entropy(out, y, "
           "reduction='none')")
    problem = LossLandscape(model, X.to(device), y.to(device), dtype, loss)
    expect(problem.P > 0, expected="a module with trainable parameters", received="none",
           fix="requires_grad_(True) on the parameters the Hessian is taken in")
    return problem


DETERMINISTIC = ("f a deterministic function of the parameters on X (two evaluations agree; no dropout in training "
                 "mode: call model.eval())")


def _random_verdict(kit: ClaimKit, behaviour: BatchBehaviour, model) -> Verdict:
    """A random forward: the Hessian of one evaluation is not defined (vacuous), nothing is differentiated."""
    return kit.decide(assumptions={"deterministic": False}, dtype=dtype_name(model_device_dtype(model)[1]),
                      details={"batch_behaviour": dataclasses.asdict(behaviour)}, reason=behaviour.reason())


def _probes(problem: LossLandscape, probes: int | None, seed) -> torch.Tensor | None:
    """None: form full matrices; else a (P, p) block of standard normal probe vectors (seeded)."""
    if probes is None and problem.P <= FULL_LIMIT:
        return None
    p = 8 if probes is None else int(probes)
    expect(p >= 1, expected="probes >= 1 (probe vectors for Hessian-vector products) or None", received=repr(probes),
           fix="probes=8")
    gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
    return torch.randn(problem.P, p, generator=gen, dtype=torch.float64).to(problem.X.device)


def _ratio(residual: torch.Tensor, bound: torch.Tensor) -> float:
    """max residual / bound entrywise (0/0 = 0: entries that are exactly zero in both)."""
    ratio = torch.where(bound > 0, residual / bound.clamp_min(torch.finfo(bound.dtype).tiny),
                        torch.where(residual > 0, math.inf, 0.0))
    return float(ratio.max()) if ratio.numel() else 0.0


def _eigenvalues(H: torch.Tensor) -> torch.Tensor:
    """Ascending eigenvalues (NaN when H is not finite)."""
    if not bool(torch.isfinite(H).all()):
        return torch.full((H.shape[0],), math.nan, dtype=torch.float64)
    return torch.linalg.eigvalsh(H.double())


def _lambda_max(H: torch.Tensor) -> float:
    return float(_eigenvalues(H)[-1]) if H.numel() else math.nan


def _finite(*tensors: torch.Tensor) -> bool:
    """Finite and clear of underflow: no entry in (0, tiny / u), where a product may have lost digits to the
    subnormal range (or to 0) and Higham's bounds no longer hold (a bound of 0 against a residual of 1e-320)."""
    def clear(t):
        floor = torch.finfo(t.dtype).tiny / torch.finfo(t.dtype).eps
        return bool(torch.isfinite(t).all()) and not bool(((t != 0) & (t.abs() < floor)).any())
    return all(clear(t) for t in tensors)


def _rescaling_pair(problem: LossLandscape, layers) -> tuple[str, str, torch.Tensor, torch.Tensor]:
    """The two layers (k, k + 1) of the alpha-scale and their masks over theta: layer k's weight and bias,
    layer k + 1's weight. Default: the first two submodules owning a trainable weight."""
    owners = [name.rsplit(".", 1)[0] if "." in name else "" for name in problem.names if name.endswith("weight")]
    owners = list(dict.fromkeys(owners))
    if layers is None:
        expect(len(owners) >= 2, expected="a module with two weight layers (the alpha-scale moves scale between them)",
               received=f"weight layers {owners}", fix="layers=(name_k, name_k+1) of two submodules with weights")
        layers = owners[:2]
    expect(isinstance(layers, (tuple, list)) and len(layers) == 2 and all(l in owners for l in layers)
           and layers[0] != layers[1], expected=f"layers: two distinct submodule names among {owners}",
           received=repr(layers), fix=f"layers=({owners[0]!r}, {owners[-1]!r})" if owners else "a module with weights")
    first, second = problem.blocks(layers[0]), problem.blocks(layers[1], kinds=("weight",))
    return layers[0], layers[1], first, second


def _scaling(problem: LossLandscape, first, second, a1: float, a2: float) -> torch.Tensor:
    t = torch.ones(problem.P, dtype=torch.float64, device=problem.X.device)
    t[first], t[second] = a1, a2
    return t


def _alpha_pairs(alphas) -> list[tuple[float, float]]:
    try:
        pairs = [tuple(map(float, a)) if isinstance(a, (tuple, list)) else (float(a), 1 / float(a)) for a in alphas]
    except (TypeError, ValueError, ZeroDivisionError):
        pairs = []
    expect(len(pairs) >= 1 and all(len(p) == 2 and min(p) > 0 and max(p) < math.inf for p in pairs),
           expected="alphas: numbers a > 0 (the map (a W_k, a b_k, W_k+1 / a)) or pairs (a1, a2) of positive layer "
           "scales", received=repr(alphas), fix="alphas=(0.1, 10.0, 100.0)")
    return pairs


flat_minima_kit = ClaimKit(
    id="flat_minima",
    statement="For a network whose layers k, k+1 meet through a positively 1-homogeneous activation, the alpha-scale "
              "(a W_k, a b_k, W_k+1 / a) leaves f unchanged and maps the squared-loss Hessian to T_a^{-1} H T_a^{-1}: "
              "a^2 lambda_max(H_BB) <= lambda_max(H_a) <= max_i t_i^-2 lambda_max(H) (B: W_k+1's block), so equal "
              "functions sit at minima of any sharpness.",
    source=DINH,
    assumptions={"deterministic": DETERMINISTIC,
                 "invariant": "f unchanged on X by the alpha-scale (a W_k, a b_k, W_k+1 / a) at every factor a the "
                              "check applies, to the roundoff of f (a positively 1-homogeneous activation between "
                              "the two layers)"},
    tolerance="gamma_K relative to the absolute network's f and 2 gamma_K to its Hessian terms (float64 copy)",
)


@flat_minima_kit.checker(samples=("X", "y"), indices=("y",))
@one_thread_when_small(measurement_work)
def check_flat_minima(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss=None, layers=None,
                      alphas=(0.1, 10.0, 100.0), probes: int | None = None, seed: int | None = None) -> Verdict:
    """Dinh et al.'s alpha-scale on ``model``: layer ``layers[0]``'s weight and bias times a1, layer
    ``layers[1]``'s weight times a2 (a2 = 1/a1 for a number a in ``alphas``; default layers: the first two
    submodules with weights). The invariance f o T = f at (a1, 1/a1) is the assumption, measured on X; the
    conclusion: f unchanged at (a1, a2), the Hessian of the loss (``loss(outputs, y)``: per-sample losses,
    default 1/2 ||f - y||^2) transformed exactly (H_a = T^-1 H T^-1
    entrywise, to roundoff) and a2^-2 lambda_max(H_BB) <= lambda_max(H_a) <= max t^-2 lambda_max(H). Above
    ``FULL_LIMIT`` parameters, or with ``probes=p``, the Hessian law is tested on p random vectors by
    Hessian-vector products and the eigenvalue bounds are not computed. A tanh between the layers is
    ``vacuous`` with the change of f reported."""
    problem = _problem(model, X, y, loss)
    pairs = _alpha_pairs(alphas)
    name_k, name_k1, first, second = _rescaling_pair(problem, layers)
    behaviour = measure_batch_behaviour(problem.model, problem.X)
    if behaviour.random:
        return _random_verdict(flat_minima_kit, behaviour, model)
    V = _probes(problem, probes, seed)
    theta, u, g, P = problem.theta, problem.u, problem.g, problem.P
    with torch.no_grad():
        f0, f_abs0 = problem.outputs(theta), problem.abs_outputs(theta.abs()).abs()
    if V is None:
        H, bound = problem.hessian(theta), problem.bound(theta)
        lam, lam_BB = _lambda_max(H), _lambda_max(H[second][:, second])
        silent = not bool((problem.jacobian(theta)[:, first | second] != 0).any())
        finite = _finite(H, bound)
    else:
        lam = lam_BB = math.nan
        silent = not bool((problem.gauss_newton_vp(theta, V * (first | second)[:, None]) != 0).any())
        finite = True
    rows, invariance, worst_f, worst_h, held_bounds = [], 0.0, 0.0, 0.0, True
    for a1, a2 in pairs:
        t_inv = 1 / _scaling(problem, first, second, a1, a2)
        theta_a = theta / t_inv
        with torch.no_grad():
            balanced = theta * _scaling(problem, first, second, a1, 1 / a1)
            f_bal, f_abs_bal = problem.outputs(balanced), problem.abs_outputs(balanced.abs()).abs()
            f_a, f_abs_a = problem.outputs(theta_a), problem.abs_outputs(theta_a.abs()).abs()
        invariance = max(invariance, _ratio((f_bal - f0).abs(), g * (f_abs0 + f_abs_bal)))
        f_res = _ratio((f_a - f0).abs(), g * (f_abs0 + f_abs_a))
        row = {"alpha": a1, "alpha_W2": a2, "f_change": f_res}
        if V is None:
            H_a = problem.hessian(theta_a)
            tol = problem.bound(theta_a) + t_inv[:, None] * bound * t_inv[None, :]  # errors of H_a and of H
            h_res = _ratio((H_a - t_inv[:, None] * H * t_inv[None, :]).abs(), tol)
            lam_a = _lambda_max(H_a)
            eig_err = float(tol.norm()) + P * u * float(H_a.norm())
            lower, upper = lam_BB / a2 ** 2, float((t_inv ** 2).max()) * max(lam, 0.0)
            held_bounds &= lower <= lam_a + eig_err and (lam < 0 or lam_a <= upper + eig_err + upper * P * u)
            finite &= _finite(H_a, tol)
            row.update({"lambda_max": lam_a, "lower_bound": lower, "upper_bound": upper,
                        "lambda_max_over_lower_bound": lam_a / lower if lower > 0 else math.nan})
        else:
            HV_a = problem.hvp(theta_a, V)
            predicted = t_inv[:, None] * problem.hvp(theta, t_inv[:, None] * V)
            tol = problem.bound_vp(theta_a, V.abs()) + t_inv[:, None] * problem.bound_vp(theta, t_inv[:, None] * V.abs())
            h_res = _ratio((HV_a - predicted).abs(), tol)
            finite &= _finite(HV_a, predicted, tol)
        finite &= _finite(f_a, f_abs_a)
        row["hessian_residual"] = h_res
        worst_f, worst_h = max(worst_f, f_res), max(worst_h, h_res)
        rows.append(row)
    statistic = max(worst_f, worst_h)
    invariant = invariance <= 1
    held = statistic <= 1 and held_bounds
    reasons = []
    if not invariant:
        reasons.append(f"f is not invariant under the alpha-scale of ({name_k!r}, {name_k1!r}) (not positively "
                       f"homogeneous at the rescaling factors, a path around {name_k1!r}, or randomness such as dropout "
                       f"in training mode): f changes by up to {invariance:.3g} x its roundoff bound")
    elif statistic > 1:
        reasons.append(f"f or the Hessian law failed: f change {worst_f:.3g} x its roundoff bound, Hessian "
                       f"residual {worst_h:.3g} x its bound")
    if invariant and not held_bounds:
        reasons.append("lambda_max(H_a) outside [a2^-2 lambda_max(H_BB), max t^-2 lambda_max(H)]")
    if not finite:
        reasons.append("non-finite Hessian (overflow), or entries below tiny / u (underflow: rescale the data)")
    if silent:
        reasons.append(f"f does not depend on the parameters of {name_k!r} and {name_k1!r} on X (every hidden unit "
                       "between them and the output dead): nothing to test")
    coupled, coupling = behaviour.coupling(invariant and held)
    reasons += coupling
    return flat_minima_kit.decide(
        assumptions={"deterministic": True, "invariant": None if coupled and not invariant else invariant},
        conclusion_held=held, inconclusive=not finite or silent, undecided=coupled,
        statistic=statistic, bound=0.0, tolerance=1.0,
        tolerance_basis=(f"statistic: the largest ratio of a change to its roundoff bound (float64 copy of the model): "
                         f"|f_a - f| to gamma_K (f_abs + f_abs,a), K = {problem.K} (2 x (fan-ins + tensors) + n k + 4), "
                         "f_abs = f(|theta|; |x|) the absolute network; each |H_a - T^-1 H T^-1| entry to the bound of "
                         "H_a plus T^-1 (bound of H) T^-1, bound = 2 gamma_K (J_abs^T J_abs + sum |r_n| d^2 f_abs,n) + "
                         "sum rho_n d^2 f_abs,n" + ("; eigenvalue bounds by Weyl's inequality on that error plus P u ||H||"
                                                    if V is None else f"; tested on {V.shape[1]} probe vectors H v")),
        dtype=dtype_name(model_device_dtype(model)[1]),
        details={"alphas": rows, "layers": [name_k, name_k1], "lambda_max": lam, "lambda_max_H22": lam_BB,
                 "parameters": P, "invariance_gap": invariance, "probes": None if V is None else V.shape[1],
                 "batch_behaviour": dataclasses.asdict(behaviour),
                 "series": {"lambda_max(H_a) a2^2 (-> lambda_max(H_BB))": {
                     "x": [r["alpha"] for r in rows], "y": [r.get("lambda_max", math.nan) * r["alpha_W2"] ** 2
                                                            for r in rows], "xlabel": "rescaling alpha"}}},
        reason="; ".join(reasons))


gauss_newton_kit = ClaimKit(
    id="gauss_newton",
    statement="At an interpolating point of the squared loss, H = J^T J (the residual term sum_n r_n d^2 f_n "
              "vanishes), so rank H <= n k; for any loss of the outputs, at a point where every dL/df_n = 0, "
              "H = J^T D J with D = d^2 L / df^2.",
    source=GN_SOURCE,
    assumptions={"deterministic": DETERMINISTIC,
                 "interpolates": "interpolation: every output gradient dL/df_n (f(x_n) - y_n for the squared loss) "
                                 "within what the roundoff of f leaves"},
    tolerance="2 gamma_K (J_abs^T J_abs + sum |r| d^2 f_abs) entrywise plus the residual interpolation allows "
              "(float64 copy), plus the error stated for a Hessian you give",
)


def _user_hessian(hessian, problem: LossLandscape, dtype, device):
    """The Hessian to judge as a function V -> H V (float64), and the full matrix when one was given."""
    P = problem.P
    if isinstance(hessian, torch.Tensor):
        expect(hessian.shape == (P, P) and hessian.is_floating_point(), expected=f"hessian of shape ({P}, {P}) "
               "(theta: the trainable parameters in named_parameters() order, flattened)",
               received=f"{hessian.dtype} {tuple(hessian.shape)}", fix="torch.func.hessian of your loss in theta")
        H = hessian.detach().to(problem.X.device, torch.float64)
        return (lambda V: H @ V), H
    expect(callable(hessian), expected="hessian: None (autograd), a (P, P) tensor or a callable v -> H v",
           received=type(hessian).__name__, fix="hessian=lambda v: my_hvp(v)")

    def apply(V):
        columns = []
        for v in V.T:
            out = hessian(v.to(device, dtype))
            expect(isinstance(out, torch.Tensor) and out.shape == (P,), expected=f"hessian(v) -> a tensor of shape "
                   f"({P},)", received=f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
                   fix="return H @ v for the flat vector v")
            columns.append(out.detach().to(problem.X.device, torch.float64))
        return torch.stack(columns, dim=1)

    return apply, None


@gauss_newton_kit.checker(samples=("X", "y"), indices=("y",), unbounded=("hessian_error",))
@one_thread_when_small(measurement_work)
def check_gauss_newton(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss=None, hessian=None,
                       hessian_error: float = 0.0, probes: int | None = None, seed: int | None = None) -> Verdict:
    """At an interpolating point of the squared loss 1/2 sum ||f(x_n) - y_n||^2 of ``model``, the Hessian
    equals J^T J entrywise (to the roundoff of H, J and the residuals interpolation allows) and rank H <= n k.
    ``loss(outputs, y)``: another loss (per-sample losses): at a point where every output gradient dL/df_n
    vanishes the Hessian is J^T D J, D = d^2 L / df^2 (the generalized Gauss-Newton matrix).
    ``hessian``: the Hessian to judge, default autograd's (torch.func on a float64 copy); yours as a (P, P)
    tensor or a callable v -> H v in theta = the trainable parameters in ``named_parameters()`` order,
    ``hessian_error`` its entrywise error (absolute). A callable, more than ``FULL_LIMIT`` parameters or
    ``probes=p`` test H v = J^T J v on p random vectors instead (no rank). A point that does not interpolate is
    ``vacuous``; the residual term sum_n r_n d^2 f_n it leaves is reported."""
    problem = _problem(model, X, y, loss)
    device, dtype = model_device_dtype(model)
    behaviour = measure_batch_behaviour(problem.model, problem.X)
    if behaviour.random:
        return _random_verdict(gauss_newton_kit, behaviour, model)
    expect(hessian_error >= 0 and math.isfinite(hessian_error), expected="hessian_error >= 0 (finite)",
           received=repr(hessian_error), fix="hessian_error=0.0")
    if hessian is not None and not isinstance(hessian, torch.Tensor) and probes is None:
        probes = 8
    theta, P, nk, u = problem.theta, problem.P, problem.nk, problem.u
    V = _probes(problem, probes, seed)
    apply, H_given = (None, None) if hessian is None else _user_hessian(hessian, problem, dtype, device)
    r, allowed = problem.residuals(theta), problem.allowed_residual(theta)
    interpolates = bool((r.abs() <= allowed).all())
    details = {"parameters": P, "n_times_k": nk, "max_abs_residual": float(r.abs().max()),
               "batch_behaviour": dataclasses.asdict(behaviour),
               "hessian": "autograd" if hessian is None else "given", "hessian_error": hessian_error}
    if V is None:
        H = problem.hessian(theta) if H_given is None else H_given
        tol = problem.bound(theta) + hessian_error
        residual = (H - problem.gauss_newton(theta)).abs()
        eig = _eigenvalues(H)
        threshold = float(tol.norm()) + P * u * float(H.norm())
        rank = int((eig.abs() > threshold).sum())
        residual_term = float(problem.residual_term(theta).norm())
        finite = _finite(H, residual, tol)
        held = bool((residual <= tol).all()) and rank <= nk
        details.update({"rank": rank, "residual_term_norm": residual_term, "eigenvalues": eig.tolist(),
                        "relative_gap": float(residual.norm() / H.norm()) if float(H.norm()) > 0 else math.nan})
        what = f"rank {rank} vs n k = {nk}"
    else:
        HV = problem.hvp(theta, V) if apply is None else apply(V)
        tol = problem.bound_vp(theta, V.abs()) + hessian_error * V.abs().sum(0, keepdim=True)
        residual = (HV - problem.gauss_newton_vp(theta, V)).abs()
        finite = _finite(HV, residual, tol)
        held = bool((residual <= tol).all())
        details["probes"] = V.shape[1]
        what = f"on {V.shape[1]} probe vectors"
    ratio = _ratio(residual, tol)
    details["max_entry_ratio"] = ratio
    reasons = []
    if not interpolates:
        reasons.append(f"not an interpolating point: max |dL/df| = {float(r.abs().max()):.3g} (|f - y| for the squared loss), roundoff allows "
                       f"{float(allowed.max()):.3g}; H - J^T D J = sum g_n d^2 f_n"
                       + (f" has norm {details['residual_term_norm']:.3g}" if "residual_term_norm" in details else ""))
    elif not held:
        reasons.append(f"H != J^T D J (J^T J for the squared loss) at an interpolating point: entrywise ratio to roundoff {ratio:.3g}, {what}")
    if not finite:
        reasons.append("non-finite Hessian or Jacobian (overflow), or entries below tiny / u (underflow: rescale "
                       "the data)")
    coupled, coupling = behaviour.coupling(interpolates and held)
    reasons += coupling
    return gauss_newton_kit.decide(
        assumptions={"deterministic": True, "interpolates": None if coupled and not interpolates else interpolates},
        conclusion_held=held, inconclusive=not finite, undecided=coupled,
        statistic=float(residual.norm()), bound=0.0, tolerance=float(tol.norm()),
        tolerance_basis=(f"||H - J^T J||_F (or of (H - J^T J) V on probes) vs the norm of the entrywise bound 2 gamma_K "
                         f"(J_abs^T J_abs + sum |r_n| d^2 f_abs,n) + sum_n rho_n d^2 f_abs,n, K = {problem.K}, "
                         "f_abs = f(|theta|; |x|), rho_n = 2 gamma_K f_abs,n + u|y_n| (the residual interpolation "
                         f"allows, in the model's dtype), float64 copy of the model, plus hessian_error = {hessian_error:g}; rank counts "
                         "|eigenvalues| above that bound + P u ||H|| (Weyl)"),
        dtype=dtype_name(dtype), details=details, reason="; ".join(reasons))


assert_flat_minima = flat_minima_kit.assert_


assert_gauss_newton = gauss_newton_kit.assert_


# --- audit cases ---------------------------------------------------------------------------------

CONTROLS = {"flat_minima": {"tanh": "vacuous", "unbalanced": "violated"},
            "gauss_newton": {"noisy-labels": "vacuous", "tanh-noisy": "vacuous"}}


@dataclasses.dataclass(frozen=True)
class HessianCase:
    """An MLP d -> m (-> m) -> k at an interpolating point (teacher labels y = f(X)); rebuilt from these fields."""

    claim: str
    n: int = 4
    d: int = 3
    m: int = 6
    k: int = 1
    activation: str = "relu"
    seed: int = 0
    control: str | None = None
    hidden: int = 1
    bias: bool = False

    def network(self, device, dtype) -> torch.nn.Module:
        gen = torch.Generator().manual_seed(self.seed)
        widths = [self.d] + [self.m] * self.hidden + [self.k]
        act = "tanh" if self.control in ("tanh", "tanh-noisy") else self.activation
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layer = torch.nn.Linear(a, b, bias=self.bias).double()
            with torch.no_grad():
                layer.weight.copy_(torch.randn(b, a, generator=gen, dtype=torch.float64) / math.sqrt(a))
                if self.bias:
                    layer.bias.copy_(0.1 * torch.randn(b, generator=gen, dtype=torch.float64))
            layers += [layer] + ([ACTIVATIONS[act]()] if i < len(widths) - 2 else [])
        return torch.nn.Sequential(*layers).to(device, dtype_of(dtype))

    def data(self, model, device, dtype):
        gen = torch.Generator().manual_seed(self.seed + 1)
        X = torch.randn(self.n, self.d, generator=gen, dtype=torch.float64).to(device, dtype_of(dtype))
        with torch.no_grad():
            y = model(X)
        if self.control in ("noisy-labels", "tanh-noisy"):
            y = y + 0.1 * torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y)
        return X, y

    def verdict(self, device="cpu", dtype="float64") -> Verdict:
        model = self.network(device, dtype)
        X, y = self.data(model, device, dtype)
        if self.claim == "gauss_newton":
            return check_gauss_newton(model, X, y, seed=self.seed)
        if self.control == "unbalanced":  # layer scales with a1 a2 != 1: f changes, the claimed invariance fails
            return check_flat_minima(model, X, y, alphas=((2.0, 0.6),), seed=self.seed)
        return check_flat_minima(model, X, y, seed=self.seed)


def random_case(claim: str, rng: np.random.Generator, control: str | None = None) -> HessianCase:
    """n in [2, 6] samples, d in [2, 5], hidden width m in [n, 10] (one or two hidden layers, biases or
    none), k in {1, 2} outputs, ReLU or LeakyReLU."""
    n = int(rng.integers(2, 7))
    return HessianCase(claim=claim, n=n, d=int(rng.integers(2, 6)), m=int(rng.integers(n, 11)),
                       k=int(rng.integers(1, 3)), activation=("relu", "leaky_relu")[int(rng.integers(2))],
                       seed=int(rng.integers(2**31)), control=control, hidden=int(rng.integers(1, 3)),
                       bias=bool(rng.integers(2)))


flat_minima_kit.dataclass_cases(random_case, CONTROLS["flat_minima"])
gauss_newton_kit.dataclass_cases(random_case, CONTROLS["gauss_newton"])
