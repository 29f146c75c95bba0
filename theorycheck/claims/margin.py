"""Claim ``margin_monotone``: once a homogeneous network separates the data under gradient flow on an
exponential-type loss, its smoothed normalized margin never decreases.

Lyu & Li, "Gradient Descent Maximizes the Margin of Homogeneous Neural Networks", ICLR 2020:
Thm 4.1 (gradient flow): if f is L-homogeneous and L(theta(t0)) < l(0) for the summed loss, then
gamma~ = l^{-1}(L) / ||theta||^L is non-decreasing for t > t0, L -> 0 and ||theta|| -> infinity.
Thm 4.2 (gradient descent): the same up to a (1 - O(1/log(1/L))) factor, for C^2 networks and small
steps. Theory III (Poggio, Liao & Banburski, Nat. Commun. 2020) states the margin growth for ReLU nets.

The check reads a :class:`~theorycheck.engines.trajectory.Trajectory`, in two forms. Pointwise: at every record
after t0, d gamma~/dt = <grad gamma~, -grad L> >= 0 (the inequality the theorem's proof rests on),
within the roundoff of that inner product. Integrated: because the theorem holds for the flow started
at ANY point past t0, each numerical step may lower gamma~ only by its departure from the flow through
that point, at most ||grad gamma~|| x (the step's local error estimate); between two records the
allowed drop is the sum of those terms plus a roundoff bound at both ends. The integrated form decides
only for C^2 networks, where the estimates are reliable (at ReLU kinks the flow slides and the
integrator chatters).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from ..generate.data import separable, with_contradiction
from ..core.devices import dtype_of
from ..engines.trajectory import Trajectory
from ..core.errors import expect
from ..generate.models import NetworkSpec, build_network
from ..core.kit import Case, ClaimKit
from ..core.verdict import Verdict

RUN_ASSUMPTIONS = {  # Lyu & Li's assumptions on a run, shared with the kkt claim
    "homogeneous": "f positively homogeneous of the stated degree L jointly in the trained parameters theta, frozen "
                   "ones fixed (measured on X along the run)",
    "loss": "exponential-type loss (exp or logistic)",
    "no_decay": "no weight decay",
    "t0": "summed loss below l(0) at t0 (data separated)",
    "dynamics": "gradient flow, or full-batch GD on a C^2 network"}
SERIES_POINTS = 200


def run_assumptions(trajectory: Trajectory, separated: bool) -> tuple[dict[str, bool], list[str]]:
    """The assumptions of Lyu & Li's Thm 4.1/4.2 observed on a run, with a reason for each one not met or
    undecided (None: homogeneity that the run's checks could not decide)."""
    if trajectory.method == "flow":
        dynamics, why = True, ""
    elif trajectory.method == "gd":
        dynamics, why = trajectory.smooth, f"GD needs a C^2 network (Thm 4.2): {trajectory.smooth_reason}"
    else:
        dynamics, why = False, "SGD is not covered by Thm 4.1/4.2 (and has no flow error estimate)"
    homogeneous = trajectory.homogeneous if trajectory.homogeneity_decided else None
    assumptions = {"homogeneous": homogeneous, "loss": trajectory.exponential_type,
                   "no_decay": trajectory.weight_decay == 0, "t0": separated, "dynamics": dynamics}
    reasons = {"homogeneous": trajectory.homogeneity_reason,
               "loss": f"loss {trajectory.loss!r} has no exponential tail",
               "no_decay": f"weight decay {trajectory.weight_decay:g}",
               "t0": f"the summed loss never went below l(0) = {trajectory.loss_at_zero:.4g}",
               "dynamics": why}
    return assumptions, [reasons[name] for name, held in assumptions.items() if held is not True]


def separation_index(trajectory: Trajectory) -> int | None:
    """The first record with L < l(0) (Lyu & Li's t0), or None."""
    below = np.flatnonzero(trajectory.records["log_loss"] < math.log(trajectory.loss_at_zero))
    return int(below[0]) if len(below) else None


def start_index(trajectory: Trajectory, since: float | None) -> tuple[int, bool]:
    """(first record checked, whether the loss there is below l(0)). ``since``: a log t, or None for t0."""
    t0 = separation_index(trajectory)
    if since is None:
        return (t0, True) if t0 is not None else (0, False)
    after = np.flatnonzero(trajectory.records["log_t"] >= since)
    index = int(after[0]) if len(after) else len(trajectory) - 1
    return index, bool(trajectory.records["log_loss"][index] < math.log(trajectory.loss_at_zero))


def largest_drop(values: np.ndarray, drift: np.ndarray, roundoff: np.ndarray) -> tuple[float, float, int, int]:
    """The pair i < j maximizing the excess drop values[i] - values[j] - allowance(i, j), where
    allowance(i, j) = sum(drift[i+1..j]) + roundoff[i] + roundoff[j]. Returns (drop, allowance, i, j).

    excess(i, j) = (values[i] + C[i] - roundoff[i]) - (values[j] + C[j] + roundoff[j]) with C the
    cumulative drift, so one pass with a running maximum finds the worst pair.
    """
    cumulative = np.concatenate([[0.0], np.cumsum(drift[1:])])
    lead = values + cumulative - roundoff
    tail = values + cumulative + roundoff
    best_excess, pair = -math.inf, (0, 1)
    running_i = 0
    for j in range(1, len(values)):
        if lead[j - 1] > lead[running_i]:
            running_i = j - 1
        if lead[running_i] - tail[j] > best_excess:
            best_excess, pair = lead[running_i] - tail[j], (running_i, j)
    i, j = pair
    return float(values[i] - values[j]), float(cumulative[j] - cumulative[i] + roundoff[i] + roundoff[j]), i, j


def _series(trajectory: Trajectory, start: int) -> dict:
    r = trajectory.records
    keep = np.unique(np.linspace(start, len(trajectory) - 1, SERIES_POINTS).astype(int))
    keep = keep[np.isfinite(r["log_t"][keep])]
    x = (r["log_t"][keep] / math.log(10)).tolist()
    return {"smoothed margin": {"x": x, "y": {"smoothed": r["smoothed_margin"][keep].tolist(),
                                              "normalized": r["normalized_margin"][keep].tolist()},
                                "xlabel": "log10 t", "ylabel": "margin / ||theta||^L"},
            "log loss": {"x": x, "y": r["log_loss"][keep].tolist(), "xlabel": "log10 t", "ylabel": "log L"},
            "alignment": {"x": x, "y": r["alignment"][keep].tolist(), "xlabel": "log10 t",
                          "ylabel": "cos(theta, -grad L)"}}


kit = ClaimKit(
    id="margin_monotone",
    statement="For an L-homogeneous network trained by gradient flow on an exponential-type loss, once the summed "
              "loss is below l(0) the smoothed margin l^{-1}(L) / ||theta||^L never decreases (and L -> 0, "
              "||theta|| -> infinity).",
    source="Lyu & Li, ICLR 2020, Thm 4.1 (flow) and Thm 4.2 (GD, C^2); Poggio, Liao & Banburski, Nat. Commun. 2020",
    assumptions=RUN_ASSUMPTIONS,
    tolerance="per record interval: sum of ||grad gamma~|| x the integrator's local error estimates, plus roundoff",
)


@kit.checker(unbounded=("since",))
def check_margin_monotone(trajectory: Trajectory, *, since: float | None = None, seed: int | None = None) -> Verdict:
    """Check that the smoothed margin of ``trajectory`` never decreases after t0 (Lyu & Li Thm 4.1/4.2).

    ``since``: check from the first record with log t >= since instead of from t0 (the first record with
    summed loss below l(0)); a start before separation is reported as the assumption not met.
    """
    expect(isinstance(trajectory, Trajectory), expected="a Trajectory from theorycheck.train(...)",
           received=type(trajectory).__name__, fix="trajectory = tc.train(model, X, y)")
    r = trajectory.records
    start, separated = start_index(trajectory, since)
    assumptions, unmet = run_assumptions(trajectory, separated)
    values = r["smoothed_margin"][start:]
    drift = np.nan_to_num(r["margin_drift"][start:], nan=0.0)
    roundoff = np.nan_to_num(r["margin_roundoff"][start:], nan=0.0)
    finite = trajectory.finite and trajectory.stop_reason != "non_finite"
    long_enough = len(values) >= 2
    common = dict(device=trajectory.device, dtype=trajectory.dtype,
                  seed=seed if seed is not None else trajectory.seed)
    if not (finite and long_enough):
        reason = ("non-finite smoothed margin or state (overflow?)" if not finite
                  else "fewer than two records after t0: run too short to decide")
        return kit.decide(assumptions=assumptions, inconclusive=True, tolerance_basis="no comparison possible",
                          reason="; ".join([reason] + unmet),
                          details={"start_record": start, "records": len(trajectory)}, **common)
    drop, allowance, i, j = largest_drop(values, drift, roundoff)
    held_drop = drop <= allowance
    # the theorem in differential form at every recorded state: <grad gamma~, -grad L> >= 0 (up to roundoff)
    rates = r["margin_rate"][start:]
    rate_roundoff = np.nan_to_num(r["margin_rate_roundoff"][start:], nan=0.0)
    k = int(np.argmin(rates + rate_roundoff))
    held_rate = bool(rates[k] + rate_roundoff[k] >= 0)
    # the integrated check decides only where the local error estimates are reliable: a C^2 network
    decisive = trajectory.smooth
    held = held_rate and (held_drop or not decisive)
    t_rows = r["log_t"][start:]
    details = {
        "start_record": start, "records_checked": len(values),
        "integrated": {"drop": drop, "allowed": allowance, "held": held_drop, "decisive": decisive,
                       "worst_pair_log_t": [float(t_rows[i]), float(t_rows[j])]},
        "pointwise": {"worst_rate": float(rates[k]), "roundoff": float(rate_roundoff[k]), "held": held_rate,
                      "log_t": float(t_rows[k]), "min_rate_cosine": float(np.min(
                          rates / np.maximum(np.abs(rates), 1e-300)))},
        "smoothed_margin_start": float(values[0]), "smoothed_margin_end": float(values[-1]),
        "normalized_margin_end": float(r["normalized_margin"][-1]), "alignment_end": float(r["alignment"][-1]),
        "log_loss_start": float(r["log_loss"][start]), "log_loss_end": float(r["log_loss"][-1]),
        "norm_growth": float(r["norm"][-1] / r["norm"][start]), "stop_reason": trajectory.stop_reason,
        "integrator": trajectory.integrator, "rtol": trajectory.rtol, "error_estimate": trajectory.error_estimate,
        "degree": trajectory.degree, "method": trajectory.method, "loss": trajectory.loss,
        "loss_reached_target": trajectory.stop_reason == "log_loss_target",
        "series": _series(trajectory, start),
    }
    reasons = list(unmet)
    if not held_rate:
        reasons.insert(0, f"d gamma~/dt = <grad gamma~, -grad L> is {rates[k]:.3e} < 0 at log t = {t_rows[k]:.4g} "
                          f"(roundoff {rate_roundoff[k]:.1e})")
    if not held_drop:
        reasons.insert(0, f"smoothed margin fell by {drop:.3e} between log t = {t_rows[i]:.4g} and {t_rows[j]:.4g}, "
                          f"more than the allowed {allowance:.3e}"
                       + ("" if decisive else " (not decisive: at ReLU-type kinks the flow slides and the local "
                                              "error estimates are not reliable bounds)"))
    rises = trajectory.loss_rises
    details["loss_rises"] = {"records": len(rises), "first_log_t": float(r["log_t"][rises[0]]) if len(rises) else None,
                             "flow_steps": trajectory.log_loss_rises,
                             "largest_step_rise": trajectory.largest_log_loss_rise}
    if len(rises) and trajectory.method != "sgd":
        reasons.append(f"log L rose beyond roundoff between {len(rises)} pairs of records (first at log t = "
                       f"{r['log_t'][rises[0]]:.4g}): the integrator does not resolve the flow there"
                       + ("" if trajectory.smooth else " (steps chatter across kinks" + (
                           f" at rtol {trajectory.rtol:g})" if trajectory.rtol else ")")))
    elif trajectory.resolves_flow is False:
        reasons.append(f"{trajectory.log_loss_rises} accepted flow steps raised log J (by up to "
                       f"{trajectory.largest_log_loss_rise:.3g}) between records: the integrator does not resolve "
                       "the flow there")
    if trajectory.weight_decay > 0 and trajectory.stop_reason != "log_loss_target":
        reasons.append(f"L did not go to 0 (run ended '{trajectory.stop_reason}' at log L = {r['log_loss'][-1]:.4g}, "
                       f"||theta|| = {r['norm'][-1]:.4g})")
    estimate = ("Rosenbrock embedded estimate" if trajectory.method == "flow" else
                "Euler-Heun estimate of each GD step's departure from the flow" if trajectory.method == "gd"
                else "none for SGD: taken as 0")
    if decisive and (held_rate or not held_drop):  # show the check that failed, else the integrated one
        statistic, tolerance = drop, allowance
        basis = (f"integrated: sum over the steps between the two records of ||grad gamma~|| x local error estimate "
                 f"({estimate}) + roundoff of gamma~ at both records (gamma_K |f|(|theta|, |x|)); also pointwise "
                 f"<grad gamma~, -grad L> >= -roundoff at every record")
    else:
        statistic, tolerance = -float(rates[k]), float(rate_roundoff[k])
        basis = ("pointwise: -<grad gamma~, -grad L> at the worst record against its roundoff (3 gamma_{K+P} "
                 "||grad gamma~|| ||grad L||); the integrated drop is reported in details"
                 + ("" if decisive else " and not decisive for a network with kinks"))
    return kit.decide(assumptions=assumptions, conclusion_held=held, statistic=statistic, bound=0.0,
                      tolerance=tolerance, tolerance_basis=basis, details=details, reason="; ".join(reasons), **common)


assert_margin_monotone = kit.assert_


# --- generated instances (shared with the kkt claim and the benchmarks) ------------------------------

CONTROLS = ("weight_decay", "square", "inseparable", "before_separation", "gd_relu")
AUDIT_LOG_LOSS_TARGET = math.log(1e-30)


@dataclasses.dataclass(frozen=True)
class FlowInstance:
    """A small homogeneous network, separable data and a training setup, rebuilt from these fields alone.

    The initial weights are rescaled (all by one factor) so that max_n |f(x_n)| = 1: the flow then
    leaves the saddle at 0 quickly, and homogeneity makes the rescaling harmless for the theorems.
    ``control`` breaks one assumption: weight decay, square loss, a contradicting duplicate
    (never separable), evaluation from t = 0 (before separation), or GD on a ReLU network.
    """

    spec: NetworkSpec
    seed: int
    weight_seed: int | None = None  # default: seed
    n: int = 10
    data_margin: float = 0.1
    loss: str = "exp"
    control: str | None = None
    log_loss_target: float = AUDIT_LOG_LOSS_TARGET

    @property
    def since(self) -> float | None:
        return -math.inf if self.control == "before_separation" else None

    @property
    def size(self) -> int:
        return sum(p.numel() for p in build_network(self.spec).parameters())

    def build(self, device="cpu", dtype="float64"):
        """(model, X, y) on ``device`` / ``dtype``."""
        torch_dtype = dtype_of(dtype)
        data = separable(self.n, int(np.prod(self.spec.in_shape)), margin=self.data_margin, seed=self.seed,
                         dtype=torch_dtype)
        if self.control == "inseparable":
            data = with_contradiction(data)
        X = data.X.reshape(len(data.y), *self.spec.in_shape).to(device)
        y = data.y.to(device)
        model = build_network(self.spec, seed=self.seed if self.weight_seed is None else self.weight_seed,
                              device=device, dtype=torch_dtype)
        with torch.no_grad():
            largest = float(model(X).abs().max())
            scale = largest ** (-1.0 / sum(self.spec.degrees())) if largest > 0 else 1.0  # 0: dead at the start
            for parameter in model.parameters():
                parameter.mul_(scale)
        return model, X, y

    def train_kwargs(self) -> dict:
        kwargs = {"loss": "square" if self.control == "square" else self.loss, "seed": self.seed,
                  "log_loss_target": self.log_loss_target, "steps": 4000}
        if self.control in ("weight_decay", "inseparable", "square"):
            kwargs.update(steps=150)
        if self.control == "weight_decay":
            kwargs.update(weight_decay=1e-2)
        if self.control == "gd_relu":
            kwargs.update(method="gd", lr=0.05, steps=300)
        return kwargs

    def trajectory(self, device="cpu", dtype="float64") -> Trajectory:
        return trained(self, device, dtype)[1]


@functools.lru_cache(maxsize=64)
def trained(instance: FlowInstance, device: str, dtype: str):
    """(model at the end of the run, X, y, Trajectory); cached so that both claims' audits share runs."""
    from ..engines.dynamics import train

    model, X, y = instance.build(device, dtype)
    trajectory = train(model, X, y, **instance.train_kwargs())
    return (model, X, y), trajectory


AUDIT_FAMILIES = ("linear", "mlp-leaky_relu", "cnn-relu", "cnn-leaky_relu")


def random_instance(rng: np.random.Generator, *, control: str | None = None,
                    families: tuple[str, ...] = AUDIT_FAMILIES, **overrides) -> FlowInstance:
    """A random small instance from ``families`` ("linear": 0-2 hidden layers; "mlp-<activation>":
    1-2 hidden layers of width 3-6; "cnn-<activation>": one conv layer of 2-4 channels with optional
    pooling; ReLU^p with p = 3 and one hidden layer), separable data, exp or logistic loss.

    The default families are those whose flow reaches separation on separable data in practice: narrow
    ReLU networks often do not (a sample on which every unit switches off has zero gradient forever).
    """
    from ..generate.sampling import random_spec

    family, _, activation = families[int(rng.integers(len(families)))].partition("-")
    if control == "gd_relu":
        family, activation = "mlp", "relu"
    activation = activation or "relu"
    depth = 1 if (activation == "relu_p" or family == "cnn") else int(rng.integers(0 if family == "linear" else 1, 3))
    spec = random_spec(rng, family=family, depth=depth, width=int(rng.integers(3, 7)), activation=activation,
                       in_dim=int(rng.integers(2, 6)),
                       pooling="none" if family != "cnn" else ("none", "avg", "max")[int(rng.integers(3))])
    spec = dataclasses.replace(spec, power=3.0, widths=tuple(max(w, 2) for w in spec.widths))
    fields = dict(spec=spec, seed=int(rng.integers(2**31)), n=int(rng.integers(6, 11)),
                  data_margin=float(rng.uniform(0.05, 0.3)), loss=("exp", "logistic")[int(rng.integers(2))],
                  control=control)
    fields.update(overrides)
    return FlowInstance(**fields)


MAX_DRAWS = 4  # an audit draw whose flow does not separate is drawn again, at most this many draws in all


@functools.lru_cache(maxsize=64)
def admitted(instance: FlowInstance, redraw_seed: int, device: str, dtype: str
             ) -> tuple[FlowInstance, tuple[dict, ...]]:
    """The instance to check for the audit draw ``instance``, and the draws rejected on the way.

    Whether the flow reaches t0 (L < l(0)) is known only after the run: a narrow ReLU network can switch off
    for good on a sample and stop at a stationary point short of separation (audit float64 instance-37 at 80
    examples, a 2-channel ReLU CNN). Thm 4.1 assumes t0, so such a draw is replaced by
    ``random_instance(default_rng([redraw_seed, k]))``, k = 0, 1, ..., until a run meets every assumption
    (t0 and decided homogeneity), at most :data:`MAX_DRAWS` draws (the last one is checked as it is). The
    selection is on the theorem's assumptions only, never on its conclusion."""
    rejected = []
    for k in range(MAX_DRAWS - 1):
        trajectory = trained(instance, device, dtype)[1]
        unmet = run_assumptions(trajectory, separation_index(trajectory) is not None)[1]
        if not unmet:
            break
        rejected.append({"instance": repr(instance), "why": "; ".join(unmet), "stop_reason": trajectory.stop_reason})
        instance = random_instance(np.random.default_rng([redraw_seed, k]))
    return instance, tuple(rejected)


def with_redraws(verdict: Verdict, rejected: tuple[dict, ...]) -> Verdict:
    """The verdict with the rejected draws recorded in its details (``redrawn``), where there were any."""
    return dataclasses.replace(verdict, details={**verdict.details, "redrawn": list(rejected)}) if rejected else verdict


def instance_line(instance: FlowInstance, device: str, dtype: str, call: str, redraw_seed: int | None = None) -> str:
    """A Python line rebuilding the instance (with ``redraw_seed``: the one :func:`admitted` checks), training
    it and printing ``call`` (uses ``t``, ``m``, ``X``, ``y``)."""
    drawn = (f"i = {instance!r}" if redraw_seed is None else
             f"i = admitted({instance!r}, {redraw_seed}, {device!r}, {dtype!r})[0]")
    return (f"import math, theorycheck as tc; from theorycheck.generate.models import NetworkSpec; "
            f"from theorycheck.claims.margin import FlowInstance, admitted; "
            f"{drawn}; m, X, y = i.build({device!r}, {dtype!r}); t = tc.train(m, X, y, **i.train_kwargs()); "
            f"print({call}.summary())")


def _flow_case(rng, device: str, dtype: str, control: str | None = None) -> Case:
    """A gradient-flow run on a random small homogeneous network and separable data (with ``control``: weight
    decay, square loss, inseparable data, evaluation before separation or GD on a ReLU network). An instance
    whose flow misses an assumption of the theorem is drawn again (:func:`admitted`); a control never is."""
    drawn = random_instance(rng, control=control)
    redraw_seed = None if control else int(rng.integers(2**63))

    def run():
        instance, rejected = (drawn, ()) if control else admitted(drawn, redraw_seed, device, dtype)
        verdict = check_margin_monotone(instance.trajectory(device, dtype), since=instance.since, seed=instance.seed)
        return with_redraws(verdict, rejected)

    since = "-math.inf" if drawn.since else "None"
    return Case(run=run, size=drawn.size, reproduce=instance_line(
        drawn, device, dtype, f"tc.check_margin_monotone(t, since={since})", redraw_seed))


kit.instances(_flow_case)
for _control in CONTROLS:
    kit.control(_control, expect="vacuous")(functools.partial(_flow_case, control=_control))
