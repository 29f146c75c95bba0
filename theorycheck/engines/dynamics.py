"""Gradient flow, gradient descent and SGD on a user's binary classifier, recorded for the margin
and KKT claims (Lyu & Li, ICLR 2020; Soudry et al., JMLR 2018).

Gradient flow theta' = -grad J(theta), J = sum_n l(q_n) + (weight_decay / 2) ||theta||^2, is
integrated in a reparameterized clock s: d theta / ds = -c(theta) grad log J(theta) with
c = ||theta||^2 / (L sqrt(1 + log^2 J)). A positive speed factor does not change the path
(dt/ds = c / J recovers the original time t); the clock makes ||theta|| grow by about one e-fold
per unit of s once the data are separated, so losses of e^-700 and below take a few hundred steps.

Integrator: the linearly implicit Rosenbrock pair of Shampine & Reichelt (SIAM J. Sci. Comput.
18:1, 1997; MATLAB's ode23s): order 2, an embedded order-3 error estimate, L-stable, and a
W-formula (order 2 with an approximate Jacobian). The Jacobian used is the generalized Gauss-Newton
part of -c Hess(log J) (A = per-sample gradients of the margins; the margins' own curvature is left
out), which carries the stiff directions; it is inverted through an (N+1) x (N+1) system (Woodbury).
Error control (what is guaranteed): every accepted step has estimated local error
||err_k|| <= rtol ||theta_k|| (default rtol 1e-5 for C^2 networks, 1e-2 for networks with kinks), and
the estimates are recorded: the Trajectory carries, per record interval, their sum (the standard
global-error estimate, sum of local errors) and their first-order effect on the smoothed margin,
sum_k ||grad gamma~(theta_k)|| ||err_k||, which the margin claim uses as its tolerance. For C^2
networks the embedded estimate is asymptotically correct (measured: at or above the true local error).
Networks with kinks (ReLU, leaky ReLU, max-pooling) have a discontinuous field: the exact flow can
slide along a kink (a Filippov solution) while any explicit or linearly implicit step chatters across
it with a first-order error that no step size removes. There a step whose stages see different
activation patterns records the first-order bound h (max_ab ||F_a - F_b|| + ||k2 - F_1||), but kinks
crossed between the sampled stages are missed: at kinks the recorded errors are estimates, not
bounds, and the claims say so (the margin claim then decides on the theorem's pointwise form).

Everything is computed in log space: log l(q_n) per sample (:mod:`theorycheck.engines.losses`), log J by
log-sum-exp, and weights p_n = exp(log l(q_n) - log J); the loss is never formed, so 1e-300 and
far below work in float64.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch
from torch import nn

from ..core.devices import dtype_name, gamma, unit_roundoff
from ..core.errors import expect
from ..core.inputs import as_batch, as_labels
from ..core.threads import one_thread_when_small
from .flat_network import FlatNetwork, KinkPattern, twice_differentiable
from .joint_homogeneity import measure_joint_homogeneity, run_degree
from .losses import Loss, get_loss
from .trajectory import COLUMNS, Snapshot, Trajectory

METHODS = ("flow", "gd", "sgd")
DEFAULT_LOG_LOSS_TARGET = -700.0  # flow stops at L <= e^-700 ~ 1e-304 (below the smallest normal float64)
# local error per step relative to ||theta||: C^2 networks get a tight default; networks with kinks (ReLU,
# max-pooling) cross kinks with first-order steps whose error no step size makes small (sliding modes
# chatter), so their default accepts 1e-3 and the recorded estimates carry the price.
DEFAULT_RTOL = {(True, torch.float64): 1e-5, (True, torch.float32): 1e-4,
                (False, torch.float64): 1e-2, (False, torch.float32): 1e-2}
SNAPSHOT_LEVELS = tuple(2.0**k for k in range(0, 16))  # log(1/L) levels at which parameters are kept

@dataclasses.dataclass
class _State:
    """Everything the integrator and the recorder need at one theta (log-space quantities)."""

    theta: torch.Tensor
    q: torch.Tensor
    A: torch.Tensor | None
    log_loss: float  # log L, L = sum_n l(q_n)
    log_objective: float  # log J, J = L + (wd/2) ||theta||^2
    grad_log_loss: torch.Tensor  # grad log L
    grad_log_objective: torch.Tensor  # grad log J
    weights: torch.Tensor  # p_n = l(q_n) / J
    bend: torch.Tensor  # p_n (d log l/dq)^2 + p_n d^2 log l/dq^2 = l''(q_n) / J (0 where l(q_n) = 0)
    slope: torch.Tensor  # |d log l / dq| where l(q_n) > 0: the sensitivity of log L to q_n (roundoff)

    @property
    def norm(self) -> float:
        return float(self.theta.norm())


class _Problem:
    """Loss, weight decay and degree around a FlatNetwork; evaluates states and the flow field."""

    def __init__(self, net: FlatNetwork, loss: Loss, weight_decay: float, degree: float):
        self.net, self.loss, self.weight_decay, self.degree = net, loss, weight_decay, degree

    def state(self, theta: torch.Tensor, *, jacobian: bool) -> _State:
        if jacobian:
            q, A = self.net.margin_jacobian(theta)
            q_detached = q
        else:
            theta_var = theta.detach().requires_grad_(True)
            q_var = self.net.margins(theta_var)
            q_detached, A = q_var.detach(), None
        log_terms = self.loss.log(q_detached)
        log_loss = torch.logsumexp(log_terms, 0)
        weights_loss = torch.exp(log_terms - log_loss)
        alive = weights_loss > 0
        slope = torch.where(alive, self.loss.dlog(q_detached), torch.zeros_like(q_detached))
        curvature = torch.where(alive, self.loss.d2log(q_detached), torch.zeros_like(q_detached))
        if A is not None:
            grad_log_loss = A.T @ (weights_loss * slope)
        else:
            (grad_log_loss,) = torch.autograd.grad(q_var, theta_var, weights_loss * slope)
        log_objective = log_loss
        if self.weight_decay > 0:
            log_reg = math.log(self.weight_decay / 2) + 2 * torch.log(theta.norm())
            log_objective = torch.logaddexp(log_loss, log_reg)
        share = torch.exp(log_loss - log_objective)
        grad_log_objective = share * grad_log_loss
        if self.weight_decay > 0:
            grad_log_objective = grad_log_objective + self.weight_decay * torch.exp(-log_objective) * theta
        return _State(theta=theta.detach(), q=q_detached, A=A, log_loss=float(log_loss),
                      log_objective=float(log_objective), grad_log_loss=grad_log_loss.detach(),
                      grad_log_objective=grad_log_objective.detach(), weights=weights_loss * share,
                      bend=weights_loss * share * (slope**2 + curvature),
                      slope=slope.abs())

    def speed(self, state: _State) -> float:
        """c(theta) = ||theta||^2 / (L sqrt(1 + log^2 J)): the clock factor ds = dt J / c."""
        return state.norm**2 / (self.degree * math.sqrt(1 + state.log_objective**2))

    def field(self, state: _State) -> torch.Tensor:
        """d theta / ds = -c grad log J."""
        return -self.speed(state) * state.grad_log_objective

    def linear_solver(self, state: _State, scale: float):
        """r -> W^{-1} r for W = I - scale * Jac with the Gauss-Newton part of the flow's Jacobian,
        Jac = -c (A^T diag(l''/J) A + (wd / J) I - g g^T), g = grad log J (the Hessian of log J without the
        margins' own curvature), through Woodbury: an (N+1) x (N+1) factorization instead of P x P."""
        c = self.speed(state)
        beta = 1.0 + (scale * c * self.weight_decay * math.exp(-state.log_objective) if self.weight_decay else 0.0)
        alpha = scale * c / beta
        rows = torch.cat([state.A, state.grad_log_objective.unsqueeze(0)])
        middle = torch.cat([state.bend, -torch.ones(1, dtype=rows.dtype, device=rows.device)])
        K = torch.eye(len(middle), dtype=rows.dtype, device=rows.device) + alpha * middle[:, None] * (rows @ rows.T)
        lu = torch.linalg.lu_factor(K)

        def solve(r: torch.Tensor) -> torch.Tensor:
            inner = torch.linalg.lu_solve(*lu, (middle * (rows @ r)).unsqueeze(1)).squeeze(1)
            return (r - alpha * (rows.T @ inner)) / beta

        return solve


class _Log:
    """Collects records on the time grid, the error accounting between them, and snapshots."""

    def __init__(self, problem: _Problem, points_per_decade: float, keep_snapshots: bool):
        self.problem, self.per_decade, self.keep = problem, float(points_per_decade), keep_snapshots
        self.rows: list[dict[str, float]] = []
        self.layer_norms: list[list[float]] = []
        self.snapshots: list[Snapshot] = []
        self.next_grid = -math.inf
        self.next_level = 0
        self.error = 0.0
        self.rises, self.largest_rise = 0, 0.0  # accepted steps that raised log J (see note_change)
        self.drift = 0.0
        net = problem.net
        self.terms = net.dot_product_terms()
        self.numerator = problem.loss.margin_numerator

    def smoothed_margin(self, state: _State) -> tuple[float, torch.Tensor, float]:
        """gamma~ = l^{-1}(L) / ||theta||^L, its gradient, and the gradient's roundoff scale (sum of the norms
        of its two terms)."""
        L, rho = self.problem.degree, state.norm
        log_loss = torch.tensor(state.log_loss, dtype=torch.float64)
        value = float(self.numerator(log_loss)) / rho**L
        slope = float(self.problem.loss.margin_numerator_slope(log_loss))
        first, second = (slope / rho**L) * state.grad_log_loss, (L * value / rho**2) * state.theta
        return value, first - second, float(first.norm() + second.norm())

    def note_change(self, before: float, after: float, noise: float) -> None:
        """An accepted step's change of log J: the exact flow lowers J, so a rise beyond ``noise`` (1 + |log J|)
        (sqrt(u): the level the flow's stationarity test treats as no change) is a step not resolving the flow."""
        rise = after - before
        if rise > noise * (1 + abs(before)):
            self.rises += 1
            self.largest_rise = max(self.largest_rise, rise)

    def add_step(self, state: _State, error: float) -> None:
        """Account one accepted step ending at ``state`` with local error estimate ``error``."""
        self.error += error
        if math.isfinite(error) and error > 0:
            self.drift += float(self.smoothed_margin(state)[1].norm()) * error

    def due(self, log_t: float, log_loss: float) -> bool:
        return log_t >= self.next_grid or (self.keep and self.next_level < len(SNAPSHOT_LEVELS)
                                             and -log_loss >= SNAPSHOT_LEVELS[self.next_level])

    def record(self, state: _State, *, step: int, clock: float, log_t: float, snapshot: bool = False) -> None:
        problem, L, rho = self.problem, self.problem.degree, state.norm
        smoothed, gradient, gradient_scale = self.smoothed_margin(state)
        # Lyu & Li's key inequality in differential form: d gamma~/dt = <grad gamma~, -grad L> >= 0 after t0;
        # recorded along -grad log L (same sign); roundoff: gamma_{K+P} on each factor and the dot product
        flow = -state.grad_log_loss
        rate = float(gradient @ flow)
        rate_roundoff = 3 * gamma(self.terms + state.theta.numel(), state.theta.dtype) * gradient_scale * float(
            flow.norm())
        g = state.grad_log_loss
        alignment = float(-(state.theta @ g) / (rho * g.norm())) if float(g.norm()) > 0 and rho > 0 else math.nan
        dtype = state.theta.dtype
        # roundoff: q_n to gamma_K |f|(|theta|, |x|); log L inherits max |slope| x that; ||theta|| to gamma_P
        q_error = gamma(self.terms, dtype) * float((problem.net.absolute_outputs(state.theta)
                                                    * state.slope).max())
        log_loss_error = q_error + gamma(len(state.q), dtype) * abs(state.log_loss)
        roundoff = (log_loss_error / rho**L + L * abs(smoothed) * gamma(state.theta.numel(), dtype)
                    if math.isfinite(smoothed) else math.nan)
        min_margin = float(state.q.min())
        self.rows.append({"step": step, "clock": clock, "log_t": log_t, "log_loss": state.log_loss,
                          "log_objective": state.log_objective, "norm": rho, "min_margin": min_margin,
                          "normalized_margin": min_margin / rho**L, "smoothed_margin": smoothed,
                          "alignment": alignment, "error": self.error, "margin_drift": self.drift,
                          "margin_roundoff": roundoff, "margin_rate": rate, "margin_rate_roundoff": rate_roundoff})
        self.layer_norms.append([float(t.norm()) for t in state.theta.split(problem.net.sizes)])
        self.error = self.drift = 0.0
        if math.isfinite(log_t) and log_t >= self.next_grid:
            self.next_grid = (math.floor(log_t / math.log(10) * self.per_decade) + 1) / self.per_decade * math.log(10)
        crossed = False
        while self.next_level < len(SNAPSHOT_LEVELS) and -state.log_loss >= SNAPSHOT_LEVELS[self.next_level]:
            self.next_level += 1
            crossed = True
        if self.keep and (crossed or snapshot):
            self.snapshots.append(Snapshot(len(self.rows) - 1, state.log_loss,
                                           state.theta.detach().cpu().numpy().astype(np.float64)))

    def columns(self) -> dict[str, np.ndarray]:
        out = {name: np.array([row[name] for row in self.rows], dtype=np.float64) for name in COLUMNS}
        out["layer_norms"] = np.array(self.layer_norms, dtype=np.float64)
        return out


def _log_mean_exp_interval(a: float, b: float) -> float:
    """log of the logarithmic mean of e^a and e^b: log of (1/h) int e^{v(s)} ds for v linear from a to b."""
    lo, hi = min(a, b), max(a, b)
    gap = hi - lo
    if gap < 1e-8:
        return 0.5 * (a + b)
    return hi + math.log(-math.expm1(-gap) / gap)


# --- integrators ---------------------------------------------------------------------------------

_D = 1 / (2 + math.sqrt(2))
_SEPARATION_HORIZON = math.log(1e10)  # a flow still above l(0) at t = 1e10 has stalled short of separation
_E32 = 6 + math.sqrt(2)


def _flow(problem: _Problem, theta: torch.Tensor, log: _Log, *, rtol: float, target: float, max_steps: int,
          kinks: KinkPattern):
    """Integrate d theta / ds = -c grad log J with the Shampine-Reichelt Rosenbrock pair.

    Step sizes follow the embedded estimate; a step raising log J by more than (1 + |log J|) / 4 is
    rejected (the exact flow lowers J; chattering steps over kinks raise it to first order, a larger rise
    is a step thrown off the path). The recorded error of a step whose stages see different
    activation patterns (it crossed a kink, where the field jumps and the embedded estimate is not
    reliable) is the first-order bound h (max_ab ||F_a - F_b|| + ||k2 - F_1||) over the stage fields
    F_0, F_1, F_2: any Filippov solution through theta moves with an average velocity in their hull.
    """
    state = problem.state(theta, jacobian=True)
    pattern = kinks(state.theta)
    stationary = math.sqrt(unit_roundoff(theta.dtype))
    field = problem.field(state)
    h = 0.01 * state.norm / max(float(field.norm()), 1e-300)
    log_t, clock, steps, rejected, evaluations, failures, quiet = -math.inf, 0.0, 0, 0, 1, 0, 0
    log.record(state, step=0, clock=0.0, log_t=log_t)
    # a start without a field (a network dead on every sample) is a stationary point: no step to size
    reason = "stationary" if state.norm * float(state.grad_log_objective.norm()) <= stationary else "max_steps"
    while reason == "max_steps" and steps < max_steps:
        solve = problem.linear_solver(state, h * _D)
        k1 = solve(field)
        mid = problem.state(state.theta + 0.5 * h * k1, jacobian=True)
        f1 = problem.field(mid)
        k2 = solve(f1 - k1) + k1
        new = problem.state(state.theta + h * k2, jacobian=True)
        evaluations += 2
        f2 = problem.field(new)
        k3 = solve(f2 - _E32 * (k2 - f1) - 2 * (k1 - field))
        error = float((h / 6 * (k1 - 2 * k2 + k3)).norm())
        ratio = error / (rtol * max(state.norm, new.norm))
        finite = math.isfinite(ratio) and math.isfinite(new.log_objective) and bool(torch.isfinite(new.theta).all())
        # the exact flow lowers J; chattering steps over kinks raise log J to first order; a rise by a quarter of
        # 1 + |log J| is a step thrown out of the flow's path (e.g. back across the separation boundary)
        if finite and new.log_objective > state.log_objective + (1 + abs(state.log_objective)) / 4:
            ratio = max(ratio, 2.0)
        if finite and ratio <= 1:
            new_pattern = kinks(new.theta)
            crossed = not kinks.known or (pattern is not None and not (
                torch.equal(pattern, new_pattern) and torch.equal(pattern, kinks(mid.theta))))
            if crossed:
                spread = max(float((field - f1).norm()), float((field - f2).norm()), float((f1 - f2).norm()))
                error = max(error, h * (spread + float((k2 - f1).norm())))
            pattern = new_pattern
            # original time: dt/ds = c / J, integrated with log-linear interpolation of c / J over the step
            log_rate0 = math.log(problem.speed(state)) - state.log_objective
            log_rate1 = math.log(problem.speed(new)) - new.log_objective
            log_t = float(np.logaddexp(log_t, math.log(h) + _log_mean_exp_interval(log_rate0, log_rate1)))
            clock += h
            steps += 1
            log.add_step(new, error)
            log.note_change(state.log_objective, new.log_objective, stationary)
            previous_log_objective = state.log_objective
            state, field, failures = new, f2, 0
            if state.log_loss <= target:
                reason = "log_loss_target"
                break
            still = (float((h * k2).norm()) <= stationary * state.norm
                     and abs(state.log_objective - previous_log_objective) <= stationary * (1 + abs(state.log_objective)))
            quiet = quiet + 1 if still else 0
            if state.norm * float(state.grad_log_objective.norm()) <= stationary or quiet >= 3:
                reason = "stationary"
                break
            if log_t > _SEPARATION_HORIZON and state.log_loss >= math.log(problem.loss.at_zero):
                reason = "not_separated"
                break
            if log.due(log_t, state.log_loss):
                log.record(state, step=steps, clock=clock, log_t=log_t)
        else:
            rejected += 1
            failures += 1
            if failures > 60:
                reason = "step_size_underflow" if finite else "non_finite"
                break
        factor = 0.8 * ratio ** (-1 / 3) if finite and ratio > 0 else (5.0 if finite else 0.2)
        h *= min(5.0 if failures == 0 else 1.0, max(0.2, factor))
    log.record(state, step=steps, clock=clock, log_t=log_t, snapshot=True)
    return state, reason, steps, rejected, evaluations


def _discrete(problem: _Problem, theta: torch.Tensor, log: _Log, *, lr: float, steps_max: int, target: float,
              batch_size: int | None, seed: int | None):
    """Plain GD (batch_size None) or SGD: theta <- theta - lr (grad L_batch + wd theta).

    SGD samples batches without replacement within each epoch and scales the batch sum by N / b, an
    unbiased estimate of grad L for the summed loss. GD's error estimate against the flow from the
    same point is the Euler-Heun difference (lr/2) ||g(theta_{k+1}) - g(theta_k)||.
    """
    net, N = problem.net, len(problem.net.y)
    state = problem.state(theta, jacobian=False)
    log.record(state, step=0, clock=0.0, log_t=-math.inf)
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    order: list[int] = []
    reason, steps, evaluations = "max_steps", 0, 1

    def full_gradient(s: _State) -> torch.Tensor:
        return (math.exp(s.log_objective) if s.log_objective < 709 else math.inf) * s.grad_log_objective

    gradient = full_gradient(state)
    while steps < steps_max:
        if batch_size is None:
            update = gradient
        else:
            if len(order) < batch_size:
                order += torch.randperm(N, generator=generator).tolist()
            index = torch.tensor(order[:batch_size], device=theta.device)
            del order[:batch_size]
            theta_var = state.theta.detach().requires_grad_(True)
            q = net.margins(theta_var, index)
            batch_loss = torch.exp(problem.loss.log(q)).sum() * (N / batch_size)
            (update,) = torch.autograd.grad(batch_loss, theta_var)
            update = update + problem.weight_decay * state.theta
        new = problem.state(state.theta - lr * update, jacobian=False)
        evaluations += 1
        steps += 1
        if not (math.isfinite(new.log_objective) and bool(torch.isfinite(new.theta).all())):
            reason = "non_finite"
            break
        new_gradient = full_gradient(new)
        error = 0.5 * lr * float((new_gradient - gradient).norm()) if batch_size is None else math.nan
        log.add_step(new, error)
        state, gradient = new, new_gradient
        log_t = math.log(lr * steps)
        if state.log_loss <= target:
            reason = "log_loss_target"
            break
        if steps < steps_max and log.due(log_t, state.log_loss):
            log.record(state, step=steps, clock=lr * steps, log_t=log_t)
    log.record(state, step=steps, clock=lr * steps, log_t=math.log(lr * max(steps, 1)), snapshot=True)
    return state, reason, steps, 0, evaluations


# --- the entry point ------------------------------------------------------------------------------

def _work(model, X, *args, **kwargs) -> tuple[float, object]:
    """(parameters x samples, device) of a run; anything else than a module and a tensor: no thread change (the
    run's own checks then name what was expected)."""
    if not (isinstance(model, nn.Module) and isinstance(X, torch.Tensor) and X.ndim >= 1):
        return math.inf, "cpu"
    return sum(p.numel() for p in model.parameters()) * len(X), X.device


@one_thread_when_small(_work)
def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "exp", method: str = "flow",
          lr: float | None = None, weight_decay: float = 0.0, batch_size: int | None = None,
          steps: int | None = None, log_loss_target: float = DEFAULT_LOG_LOSS_TARGET, rtol: float | None = None,
          points_per_decade: float = 4.0, degree: float | None = None, snapshots: bool = True,
          seed: int | None = None) -> Trajectory:
    """Train ``model`` (a scalar-output binary classifier) on (X, y) and return its Trajectory.

    ``method``: ``"flow"`` (gradient flow, adaptive Rosenbrock; see the module docstring), ``"gd"``
    (full-batch steps of size ``lr``) or ``"sgd"`` (mini-batches of ``batch_size``). The summed loss
    ``loss`` (``"exp"``, ``"logistic"``, ``"square"``) plus ``weight_decay``/2 ||theta||^2 is minimized.
    Stopping: log L <= ``log_loss_target`` (default -700, L ~ 1e-304), or ``steps`` accepted steps
    (flow default 20000, GD/SGD default 10000), or (flow) a stationary point, a summed loss still
    above l(0) at t = 1e10 (stalled short of separation), or no admissible step.
    ``degree``: the degree L of f in the trained parameters theta (those with requires_grad; frozen ones stay
    fixed and do not count). Default: the declared per-layer degrees ``model.homogeneity_degrees`` (one per weight
    layer, trainable or frozen, as :func:`theorycheck.check_homogeneity` takes them) summed over the trained
    layers, else the degree measured by scaling theta. Joint homogeneity f(c theta) = c^L f(theta), all Lyu & Li
    need, is measured (:mod:`theorycheck.engines.joint_homogeneity`) on all of X at the start, at every snapshot
    and at the end (``homogeneity_checks``); ``homogeneous`` means every identity held in all of them. The model's
    parameters are left at the final state. Parameters are kept (``snapshots``) when log(1/L) first reaches 1, 2, 4, ... and at the end.
    A run of fewer than SMALL_WORK parameters x samples uses one intra-op thread (theorycheck.core.threads).
    """
    X = as_batch(X, model)
    y = as_labels(y, X)
    expect(method in METHODS, expected=f"method in {METHODS}", received=repr(method),
           fix="'flow' for gradient flow, 'gd' or 'sgd' with lr=...")
    loss_fn = get_loss(loss)
    expect(weight_decay >= 0 and math.isfinite(weight_decay), expected="weight_decay >= 0",
           received=repr(weight_decay), fix="weight_decay=0.0 for the margin theorems")
    if method != "flow":
        expect(lr is not None and lr > 0 and math.isfinite(lr), expected=f"a step size lr > 0 for method={method!r}",
               received=f"lr={lr!r}", fix="e.g. lr=0.1")
    if method == "sgd":
        expect(batch_size is not None and 1 <= batch_size <= len(y), expected=f"1 <= batch_size <= {len(y)}",
               received=f"batch_size={batch_size!r}", fix="e.g. batch_size=len(y) // 4")
    net = FlatNetwork(model, X, y)
    with torch.no_grad():
        out = net.outputs(net.flatten(), X[:2])  # buffers are copies: batch-norm statistics stay as they are
    expect(out.numel() == len(X[:2]), expected="a model with one output per sample (binary classifier, labels +-1)",
           received=f"{out.numel() // len(X[:2])} outputs per sample", fix="use a final layer with out_features=1")
    if degree is not None:
        expect(float(degree) > 0 and math.isfinite(float(degree)), expected="a positive homogeneity degree",
               received=repr(degree), fix="pass degree=L for an L-homogeneous model")
    degree, homogeneity = run_degree(model, X, degree)
    homogeneous, homogeneity_reason = homogeneity.homogeneous is True, homogeneity.summary()
    decided = homogeneity.homogeneous is not None
    smooth, smooth_reason = twice_differentiable(model, X)
    problem = _Problem(net, loss_fn, float(weight_decay), float(degree))
    dtype = X.dtype
    rtol = DEFAULT_RTOL[smooth, dtype] if rtol is None else float(rtol)
    expect(method != "flow" or 0 < rtol < 1, expected="0 < rtol < 1", received=repr(rtol), fix="e.g. rtol=1e-4")
    log = _Log(problem, points_per_decade, snapshots)
    theta = net.flatten()
    rho = float(theta.norm())
    scale = min(rho**degree, rho**2)
    expect(scale >= np.finfo(np.float64).tiny and math.isfinite(rho**degree), expected="parameters whose norm^L "
           "and norm^2 are positive normal numbers (the clock c = ||theta||^2 / ... and the normalized margins "
           "divide by them)", received=f"||theta|| = {rho:g}, L = {degree:g}",
           fix="start from the model's default initialization, or scale the weights into the float range")
    started = time.perf_counter()
    if method == "flow":
        final, reason, n_steps, rejected, evaluations = _flow(
            problem, theta, log, rtol=rtol, target=log_loss_target, max_steps=20000 if steps is None else steps,
            kinks=KinkPattern(net, smooth))
        integrator = ("Rosenbrock 2(3) (Shampine & Reichelt 1997, ode23s) on d theta/ds = -c grad log J, "
                      "c = ||theta||^2 / (L sqrt(1 + log^2 J)); local error <= rtol ||theta|| per step")
        if log.rises:
            integrator += (f"; NOT resolving the flow: log J rose in {log.rises} of {n_steps} accepted steps (by up "
                           f"to {log.largest_rise:.3g}; the exact flow lowers it), steps chattering across kinks at "
                           f"rtol {rtol:g}: the records approximate the flow, they are not it")
    else:
        final, reason, n_steps, rejected, evaluations = _discrete(
            problem, theta, log, lr=float(lr), steps_max=10000 if steps is None else steps,
            target=log_loss_target, batch_size=batch_size if method == "sgd" else None, seed=seed)
        integrator = ("gradient descent; error vs the flow: Euler-Heun estimate" if method == "gd"
                      else "stochastic gradient descent (no flow error estimate)")
    checks = _homogeneity_along(model, net, X, log.snapshots, final, degree) if homogeneous or not decided else ()
    failed = [c for c in checks if c["homogeneous"] is False]
    undecided = [c for c in checks if c["homogeneous"] is None]
    if failed:
        homogeneous, decided = False, True
        homogeneity_reason = (f"homogeneous at the start but not along the run: {len(failed)} of {len(checks)} "
                              f"checked states (first at log L = {failed[0]['log_loss']:.4g}): {failed[0]['summary']}")
    elif undecided and decided:
        homogeneous, decided = False, False
        homogeneity_reason = (f"homogeneity undecided along the run: {len(undecided)} of {len(checks)} checked "
                              f"states (first at log L = {undecided[0]['log_loss']:.4g}): {undecided[0]['summary']}")
    net.write(final.theta)
    return Trajectory(
        method=method, loss=loss_fn.name, lr=None if method == "flow" else float(lr),
        weight_decay=float(weight_decay), batch_size=batch_size if method == "sgd" else None, degree=float(degree),
        homogeneous=homogeneous, homogeneity_reason=homogeneity_reason,
        smooth=smooth, smooth_reason=smooth_reason, loss_at_zero=loss_fn.at_zero,
        exponential_type=loss_fn.exponential_type, n_samples=len(y), n_parameters=int(theta.numel()),
        layer_names=tuple(net.names), records=log.columns(), snapshots=tuple(log.snapshots), stop_reason=reason,
        integrator=integrator, rtol=rtol if method == "flow" else None, log_loss_target=float(log_loss_target),
        steps=n_steps, rejected=rejected, evaluations=evaluations, seconds=time.perf_counter() - started,
        device=str(X.device), dtype=dtype_name(dtype), seed=seed,
        homogeneity_checks=tuple({k: c[k] for k in ("log_loss", "homogeneous")} for c in checks),
        homogeneity_decided=decided, log_loss_rises=log.rises, largest_log_loss_rise=log.largest_rise)


def _homogeneity_along(model: nn.Module, net: FlatNetwork, X: torch.Tensor, snapshots, final: _State,
                       degree: float) -> list[dict]:
    """Joint homogeneity of degree ``degree`` in the trained parameters, measured on all of X at every snapshot and
    at the final state (the model is left at the final state by the caller): a network homogeneous only in a
    region (ReLU6, Hardtanh) can leave it as ||theta|| grows."""
    states = [(s.log_loss, torch.as_tensor(s.theta, dtype=X.dtype, device=X.device)) for s in snapshots]
    if not snapshots:
        states.append((final.log_loss, final.theta))
    checks = []
    for log_loss, theta in states:
        net.write(theta)
        measured = measure_joint_homogeneity(model, X, degree=degree)
        checks.append({"log_loss": float(log_loss), "homogeneous": measured.homogeneous, "summary": measured.summary()})
    return checks
