"""The record of a training run: :class:`Trajectory`, its columns and its parameter snapshots."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core.errors import expect
from ..core.inputs import check_record_shapes
from ..core.verdict import to_jsonable

COLUMNS = ("step", "clock", "log_t", "log_loss", "log_objective", "norm", "min_margin", "normalized_margin",
           "smoothed_margin", "alignment", "error", "margin_drift", "margin_roundoff", "margin_rate",
           "margin_rate_roundoff")


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Parameters kept at one record (``record`` indexes the Trajectory's columns)."""

    record: int
    log_loss: float
    theta: np.ndarray


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A training run recorded on a log-spaced grid of gradient-flow time t (GD/SGD: t = lr x step).

    ``records`` maps each name in :data:`COLUMNS` to a float64 array (one entry per record) and
    ``layer_norms`` to an array (records x parameters, in ``layer_names`` order). Per record:
    ``log_loss`` = log L (summed loss), ``log_objective`` = log(L + wd/2 ||theta||^2), ``norm`` =
    ||theta||, ``min_margin`` = min q_n, ``normalized_margin`` = min q_n / ||theta||^L,
    ``smoothed_margin`` = l^{-1}(L) / ||theta||^L, ``alignment`` = cos(theta, -grad L);
    ``error``: local error estimates summed over the steps since the previous record (parameter norm;
    flow: the Rosenbrock estimate; GD: the Euler-Heun difference, the step's departure from the flow;
    SGD: nan); ``margin_drift``: sum over those steps of ||grad gamma~|| x error (first-order effect on
    the smoothed margin); ``margin_roundoff``: a roundoff bound on the recorded smoothed margin.
    """

    method: str
    loss: str
    lr: float | None
    weight_decay: float
    batch_size: int | None
    degree: float
    homogeneous: bool
    homogeneity_reason: str
    smooth: bool
    smooth_reason: str
    loss_at_zero: float
    exponential_type: bool
    n_samples: int
    n_parameters: int
    layer_names: tuple[str, ...]
    records: Mapping[str, np.ndarray]
    snapshots: tuple[Snapshot, ...]
    stop_reason: str
    integrator: str
    rtol: float | None
    log_loss_target: float | None
    steps: int
    rejected: int
    evaluations: int
    seconds: float
    device: str = "cpu"
    dtype: str = "float64"
    seed: int | None = None
    homogeneity_checks: tuple = ()  # ({"log_loss", "homogeneous": True/None/False} on X at each snapshot)
    # False when a homogeneity check of the run was inconclusive (none failed): homogeneity is then undecided,
    # neither met nor unmet (a network that outputs 0 on every sample gives nothing to test)
    homogeneity_decided: bool = True
    # accepted flow steps that raised log J beyond sqrt(u) (1 + |log J|), and the largest rise: the exact flow
    # lowers J, so these steps (chattering across kinks) do not resolve it; 0 for a resolved run and for GD/SGD
    log_loss_rises: int = 0
    largest_log_loss_rise: float = 0.0

    def __post_init__(self):
        missing = [c for c in COLUMNS if c not in self.records]
        expect(not missing, expected=f"a Trajectory with the record columns {COLUMNS}", received=f"no {missing}",
               fix="pass the Trajectory that train() returned")
        rows = len(np.asarray(self.records["log_loss"]))
        check_record_shapes("Trajectory.records", {
            **{f"[{c!r}]": (np.asarray(self.records[c]), ("records",)) for c in COLUMNS},
            "['layer_norms']": (self.records.get("layer_norms"), ("records", len(self.layer_names)))}, records=rows)
        expect(rows >= 1, expected="a Trajectory with at least one record", received="none",
               fix="train for at least one step")

    def __len__(self) -> int:
        return len(self.records["log_loss"])

    MAY_BE_UNDEFINED = ("alignment",)  # cos(theta, -grad L) is 0/0 where the gradient vanishes (a dead network)

    @property
    def finite(self) -> bool:
        """Every record finite, but for what is undefined by construction: log t = -inf where t = 0, the error
        estimates of SGD (none), and an alignment that is NaN (0/0, never infinite)."""
        def ok(name, values):
            values = np.asarray(values)
            if name == "log_t":  # -inf where t = 0
                return not (np.isnan(values) | (values == np.inf)).any()
            if name in ("error", "margin_drift") and self.method == "sgd":
                return True
            return (~np.isinf(values)).all() if name in self.MAY_BE_UNDEFINED else np.isfinite(values).all()

        return all(ok(name, values) for name, values in self.records.items())

    @property
    def loss_rises(self) -> np.ndarray:
        """Records k at which log L exceeds its value at record k - 1 by more than the roundoff of both: the exact
        flow (and GD with a small step) lowers L, so a rise is a step the integrator did not resolve (at kinks the
        steps chatter). The roundoff of log L at a record is its smoothed margin's roundoff times ||theta||^L."""
        r = self.records
        log_loss = np.asarray(r["log_loss"])
        bound = np.nan_to_num(np.asarray(r["margin_roundoff"]) * np.asarray(r["norm"]) ** self.degree, nan=np.inf)
        rise = np.diff(log_loss) > bound[1:] + bound[:-1]
        return np.flatnonzero(rise) + 1

    @property
    def resolves_flow(self) -> bool | None:
        """Whether every accepted flow step lowered log J as the exact flow does (None: not a flow run)."""
        return None if self.method != "flow" else self.log_loss_rises == 0

    @property
    def error_estimate(self) -> float:
        """Sum of the local error estimates over the run (parameter norm): the global-error estimate."""
        return float(np.nansum(self.records["error"]))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("records", "snapshots")}
        data["records"] = {k: np.asarray(v).tolist() for k, v in self.records.items()}
        data["snapshots"] = [{"record": s.record, "log_loss": s.log_loss, "theta": s.theta.tolist()}
                             for s in self.snapshots]
        return to_jsonable(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Trajectory":
        values = dict(data)
        values["records"] = {k: np.asarray(v, dtype=np.float64) for k, v in data["records"].items()}
        values["snapshots"] = tuple(Snapshot(int(s["record"]), float(s["log_loss"]), np.asarray(s["theta"]))
                                    for s in data["snapshots"])
        values["layer_names"] = tuple(data["layer_names"])
        values["homogeneity_checks"] = tuple(dict(c) for c in data.get("homogeneity_checks", ()))
        for name in ("lr", "loss_at_zero", "degree", "rtol", "log_loss_target", "weight_decay", "seconds"):
            if isinstance(values.get(name), str):
                values[name] = float(values[name])
        return cls(**values)
