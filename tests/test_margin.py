"""Unit tests and negative controls for the margin_monotone claim (Lyu & Li 2020, Thm 4.1/4.2)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.margin import FlowInstance, largest_drop
from theorycheck.generate.data import separable
from theorycheck.generate.models import NetworkSpec
from theorycheck.claims.margin import kit as margin_kit

LINEAR = NetworkSpec(family="linear", in_shape=(3,), widths=())
DEEP_LINEAR = NetworkSpec(family="linear", in_shape=(3,), widths=(3,))
LEAKY = NetworkSpec(in_shape=(3,), widths=(4,), activation="leaky_relu")
CNN = NetworkSpec(family="cnn", in_shape=(1, 3, 3), widths=(3,), pooling="avg")
RELU = NetworkSpec(in_shape=(3,), widths=(5,))
TARGET = math.log(1e-30)


def _run(spec, device="cpu", dtype="float64", *, control=None, loss="exp", seed=3, **train):
    instance = FlowInstance(spec=spec, seed=seed, n=8, loss=loss, control=control, log_loss_target=TARGET)
    model, X, y = instance.build(device, dtype)
    return tc.train(model, X, y, **{**instance.train_kwargs(), **train})


@pytest.mark.parametrize("spec, loss, seed", [(LINEAR, "exp", 3), (DEEP_LINEAR, "logistic", 3), (LEAKY, "exp", 3),
                                              (CNN, "logistic", 4)],
                         ids=["linear-exp", "deep-linear-logistic", "leaky-mlp-exp", "cnn-logistic"])
def test_gradient_flow_holds(spec, loss, seed, tc_device, tc_dtype):
    trajectory = _run(spec, tc_device, tc_dtype, loss=loss, seed=seed)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic <= verdict.tolerance
    assert verdict.details["log_loss_end"] <= TARGET and verdict.details["norm_growth"] > 1
    assert verdict.details["pointwise"]["held"] and verdict.dtype == tc_dtype
    assert verdict.details["integrated"]["decisive"] == trajectory.smooth
    assert set(verdict.details["series"]) == {"smoothed margin", "log loss", "alignment"}


def test_gd_on_a_smooth_network_holds_with_the_euler_heun_tolerance():
    trajectory = _run(LINEAR, method="gd", lr=0.2, steps=400)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status == "holds", verdict.summary()
    assert "Euler-Heun" in verdict.tolerance_basis and verdict.details["integrated"]["decisive"]


CONTROLS = {  # control, expected status, the assumption the verdict must name as not met
    "weight_decay": (dict(control="weight_decay"), margin_kit.assumptions["no_decay"]),
    "square_loss": (dict(control="square"), margin_kit.assumptions["loss"]),
    "inseparable": (dict(control="inseparable"), margin_kit.assumptions["t0"]),
    "gd_relu": (dict(control="gd_relu"), margin_kit.assumptions["dynamics"]),
    "sgd": (dict(method="sgd", lr=0.05, batch_size=3, steps=200), margin_kit.assumptions["dynamics"]),
}


@pytest.mark.parametrize("name", CONTROLS)
def test_negative_controls_are_vacuous(name):
    options, assumption = CONTROLS[name]
    trajectory = _run(RELU if name == "gd_relu" else LINEAR, **options)
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[assumption] is False
    assert f'"{assumption}"' in verdict.summary()
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] margin_monotone: vacuous"):
        tc.assert_margin_monotone(trajectory)


def test_weight_decay_control_reports_that_the_loss_did_not_vanish():
    verdict = tc.check_margin_monotone(_run(LINEAR, control="weight_decay"))
    assert "L did not go to 0" in verdict.reason


def test_evaluation_before_separation_is_vacuous():
    trajectory = _run(LINEAR)
    early = tc.check_margin_monotone(trajectory, since=-math.inf)
    assert early.status == "vacuous" and early.assumptions[margin_kit.assumptions["t0"]] is False
    stopped = _run(LINEAR, log_loss_target=math.log(8) - 0.5)  # stopped while L > l(0) = 1
    verdict = tc.check_margin_monotone(stopped)
    assert verdict.status == "vacuous" and verdict.assumptions[margin_kit.assumptions["t0"]] is False


def test_non_homogeneous_model_is_vacuous():
    trajectory = _run(NetworkSpec(in_shape=(3,), widths=(4,), activation="leaky_relu", bias=True))
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status == "vacuous" and verdict.assumptions[margin_kit.assumptions["homogeneous"]] is False


class _ReLUThenSoftened(torch.nn.Module):
    """relu for its first ``switch_after`` calls, then relu(z) + 0.1 tanh(z): a network that leaves the
    homogeneous class during a run (any threshold-type break, e.g. a clamp at 6, is already caught at the
    start by the checker's scalings up to a = 1e3)."""

    def __init__(self, switch_after: int):
        super().__init__()
        self.calls, self.switch_after = 0, switch_after

    def forward(self, z):
        self.calls += 1
        out = torch.relu(z)
        return out if self.calls <= self.switch_after else out + 0.1 * torch.tanh(z)


def test_leaving_the_homogeneous_region_during_the_run_is_vacuous():
    """Homogeneous at the start, not later in the run: the checks along the run catch it, and both claims
    report the assumption as not met."""
    data = separable(12, 3, margin=0.2, seed=0)
    torch.manual_seed(0)
    activation = _ReLUThenSoftened(switch_after=10**9)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6, bias=False), activation,
                                torch.nn.Linear(6, 1, bias=False)).double()
    assert tc.check_homogeneity(model, data.X).status == "holds"
    activation.switch_after = 2 * activation.calls + 10  # past train's own start check, early in the flow
    activation.calls = 0
    trajectory = tc.train(model, data.X, data.y, log_loss_target=-40.0)
    found = [c["homogeneous"] for c in trajectory.homogeneity_checks]
    assert found[-1] is not True and not trajectory.homogeneous  # train's start check ran before the switch
    assert "not along the run" in trajectory.homogeneity_reason
    for verdict in (tc.check_margin_monotone(trajectory), tc.check_kkt(model, data.X, data.y, trajectory=trajectory)):
        assert verdict.status == "vacuous" and verdict.assumptions[margin_kit.assumptions["homogeneous"]] is False, verdict.summary()


def test_a_clamp_at_6_is_caught_at_the_start_of_the_run():
    data = separable(12, 3, margin=0.2, seed=0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 6, bias=False), torch.nn.Hardtanh(0.0, 6.0),
                                torch.nn.Linear(6, 1, bias=False)).double()
    with torch.no_grad():  # every pre-activation well below 6 on the data
        shrink = 1 / math.sqrt(float(model(data.X).abs().max()))
        for p in model.parameters():
            p.mul_(shrink)
    assert tc.check_homogeneity(model, data.X).status != "holds"


def _tampered(trajectory, column, change):
    records = dict(trajectory.records)
    records[column] = change(np.array(records[column]))
    return dataclasses.replace(trajectory, records=records)


def test_a_decreasing_smoothed_margin_is_violated():
    """The check can fail: the same run with its smoothed margin reversed after t0."""
    trajectory = _run(LINEAR)
    start = tc.check_margin_monotone(trajectory).details["start_record"]

    def reverse(values):
        values[start:] = values[start:][::-1]
        return values

    verdict = tc.check_margin_monotone(_tampered(trajectory, "smoothed_margin", reverse))
    assert verdict.status == "violated" and "smoothed margin fell by" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match=r"margin_monotone: violated; statistic .* smoothed margin fell"):
        tc.assert_margin_monotone(_tampered(trajectory, "smoothed_margin", reverse))


def test_a_negative_margin_rate_is_violated_even_on_a_network_with_kinks():
    trajectory = _run(LEAKY)
    verdict = tc.check_margin_monotone(_tampered(trajectory, "margin_rate", lambda r: r - 2 * np.abs(r).max()))
    assert verdict.status == "violated" and "d gamma~/dt" in verdict.reason


def test_too_short_a_run_is_inconclusive():
    trajectory = _run(LINEAR)
    records = {k: np.asarray(v)[:1] for k, v in trajectory.records.items()}
    records["log_loss"] = np.array([-1.0])
    verdict = tc.check_margin_monotone(dataclasses.replace(trajectory, records=records))
    assert verdict.status == "inconclusive" and "too short" in verdict.reason


def test_largest_drop_finds_the_worst_pair_against_accumulated_allowances():
    values = np.array([1.0, 2.0, 1.5, 3.0, 2.9, 4.0])
    assert largest_drop(values, np.zeros(6), np.zeros(6)) == (0.5, 0.0, 1, 2)
    drift = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0])  # the 2 -> 1.5 drop is covered by its allowance
    drop, allowed, i, j = largest_drop(values, drift, np.zeros(6))
    assert (i, j) == (3, 4) and drop == pytest.approx(0.1) and allowed == 0.0
    assert largest_drop(np.arange(5.0), np.zeros(5), np.zeros(5))[0] < 0  # increasing: no drop


def test_bad_input_names_expected_received_fix():
    with pytest.raises(tc.InvalidArgument, match="expected a Trajectory .* Fix:"):
        tc.check_margin_monotone({"records": {}})


def test_verdict_round_trips_through_json():
    import json

    verdict = tc.check_margin_monotone(_run(LINEAR))
    data = json.loads(json.dumps(verdict.to_dict()))
    assert tc.Verdict.from_dict(data).to_dict() == data


DEAD_CNN = NetworkSpec(family="cnn", in_shape=(1, 3, 3), widths=(1, 1), pooling="max")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_network_dead_on_every_sample_is_stationary_and_its_homogeneity_undecided(dtype):
    """Found by a derandomized run of the property tests: f = 0 on every sample at the start (seed 0) left the
    float32 flow without a step size (non-finite) and its homogeneity was reported as not met."""
    instance = FlowInstance(spec=DEAD_CNN, seed=0, n=4, data_margin=0.25, loss="exp", log_loss_target=TARGET)
    model, X, y = instance.build("cpu", dtype)
    assert not model(X).any()
    trajectory = tc.train(model, X, y, **instance.train_kwargs())
    assert trajectory.stop_reason == "stationary" and trajectory.steps == 0
    assert not trajectory.homogeneous and not trajectory.homogeneity_decided
    verdict = tc.check_margin_monotone(trajectory)
    assert verdict.status == "vacuous" and verdict.failed_assumptions == [margin_kit.assumptions["t0"]], verdict.summary()
    assert "nothing to test" in verdict.reason


def test_undecided_homogeneity_on_a_separated_run_is_inconclusive_not_vacuous():
    instance = FlowInstance(spec=LINEAR, seed=3, n=8, log_loss_target=TARGET)
    model, X, y = instance.build()
    trajectory = tc.train(model, X, y, **instance.train_kwargs())  # leaves the model at the run's end
    assert trajectory.homogeneity_decided and tc.check_margin_monotone(trajectory).status == "holds"
    undecided = dataclasses.replace(trajectory, homogeneous=False, homogeneity_decided=False,
                                    homogeneity_reason="homogeneity undecided along the run: 1 of 1 checked states")
    verdict = tc.check_margin_monotone(undecided)
    assert verdict.status == "inconclusive" and not verdict.failed_assumptions, verdict.summary()
    assert margin_kit.assumptions["homogeneous"] not in verdict.assumptions and "undecided" in verdict.reason
    assert verdict.details["undecided_assumptions"] == [margin_kit.assumptions["homogeneous"]]
    kkt = tc.check_kkt(model, X, y, trajectory=undecided)
    assert kkt.status == "inconclusive" and not kkt.failed_assumptions, kkt.summary()



def test_an_audit_draw_whose_flow_never_separates_is_drawn_again_and_the_reason_recorded():
    """A run that never reaches t0 is not an instance of Thm 4.1 (the audit's float64 instance-37 at 80
    examples: a 2-channel ReLU CNN stopping at a stationary point; here, cheaper, data with a contradiction)."""
    from theorycheck.claims.margin import admitted, with_redraws

    never = FlowInstance(spec=LINEAR, seed=3, n=8, control="inseparable", log_loss_target=TARGET)
    assert tc.check_margin_monotone(never.trajectory()).status == "vacuous"
    instance, rejected = admitted(never, 7, "cpu", "float64")
    assert instance.control is None and [r["instance"] for r in rejected] == [repr(never)]
    assert "never went below l(0)" in rejected[0]["why"] and rejected[0]["stop_reason"] == "max_steps"
    verdict = with_redraws(tc.check_margin_monotone(instance.trajectory()), rejected)
    assert verdict.status == "holds" and verdict.details["redrawn"] == list(rejected)
    kept = FlowInstance(spec=LINEAR, seed=3, n=8, log_loss_target=TARGET)
    assert admitted(kept, 7, "cpu", "float64") == (kept, ())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_flow_the_integrator_does_not_resolve_is_said_so(dtype):
    """The exact flow lowers L: records where log L rises beyond roundoff are steps the integrator did not resolve
    (a leaky-ReLU flow chatters across kinks at the default rtol); a linear flow has none."""
    kinked = tc.check_margin_monotone(_run(LEAKY, dtype=dtype, log_loss_target=-10.0))
    assert kinked.details["loss_rises"]["records"] > 0 and "does not resolve the flow" in kinked.reason
    assert "chatter across kinks" in kinked.reason
    linear = tc.check_margin_monotone(_run(LINEAR, dtype=dtype, log_loss_target=-10.0))
    assert linear.details["loss_rises"]["records"] == 0 and "does not resolve" not in linear.reason
