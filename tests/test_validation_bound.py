"""Unit tests and negative controls for validation_bound (Hoeffding + union bound over a family chosen
independently of the validation set; exact binomial test of the violation frequency)."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

import theorycheck as tc
from theorycheck.claims.validation_bound import (ALPHA, ValidationCase, _critical_count, epsilon, exact_union_tail,
                                                  power_against, repeats_for_power, repeats_without_power,
                                                  validation_experiment)


def test_epsilon_is_hoeffding_with_a_union_bound():
    """K exp(-2 m eps^2) = delta per tail: the width solves the union bound exactly."""
    eps = epsilon(20, 200, 0.05, sided="one")
    assert 20 * math.exp(-2 * 200 * eps ** 2) == pytest.approx(0.05, rel=1e-12)
    assert 2 * 20 * math.exp(-2 * 200 * epsilon(20, 200, 0.05) ** 2) == pytest.approx(0.05, rel=1e-12)
    assert epsilon(20, 200, 0.05, C=4.0) == pytest.approx(4 * epsilon(20, 200, 0.05))


def test_exact_tail_against_direct_sums():
    """P(Binomial(m, R)/m < R - eps) summed term by term, and Hoeffding's exp(-2 m eps^2) above it."""
    m, R, eps = 50, 0.3, 0.11
    direct = sum(binom.pmf(k, m, R) for k in range(m + 1) if k / m < R - eps or k / m > R + eps)
    assert exact_union_tail(np.array([R]), m, eps) == pytest.approx(direct, rel=1e-12)
    assert direct <= 2 * math.exp(-2 * m * eps ** 2)


@pytest.mark.parametrize("sided", ["two", "one"])
def test_independent_family_holds(sided):
    true, val = validation_experiment(np.linspace(0.05, 0.5, 20), m=200, repeats=4000, seed=1, per_sample=True)
    verdict = tc.check_validation_bound(true, val, delta=0.05, sided=sided)
    assert verdict.status == "holds", verdict.summary()
    assert verdict.statistic < 0.05 / 4 and verdict.details["exact_union_tail"] < 0.05 / 4  # Hoeffding is loose
    assert verdict.details["p_value"] > 0.99 and verdict.details["loss_range"] == [0.0, 1.0]


def test_honest_count_of_the_whole_pool_restores_the_bound():
    true, val = validation_experiment(np.full(1000, 0.5), m=200, repeats=1100, seed=2)  # every model counted: K = M
    verdict = tc.check_validation_bound(true, val, delta=0.05, m=200, loss_range=(0, 1), zero_one=True)
    assert verdict.status == "holds", verdict.summary()


# --- negative controls ---------------------------------------------------------------------------

def test_family_chosen_on_the_validation_set_is_violated():
    """The SEED-CLAIMS c6 control: the 20 best of 5000 risk-1/2 models on the same set, bound with K = 20."""
    true, val = validation_experiment(np.full(20, 0.5), m=200, repeats=1000, seed=1, select_from=5000)
    verdict = tc.check_validation_bound(true, val, delta=0.05, m=200, loss_range=(0, 1), sided="one")
    assert verdict.status == "violated", verdict.summary()
    assert verdict.statistic > 0.5 and verdict.details["p_value"] < 1e-100
    assert "chosen on the validation set" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] validation_bound: violated"):
        tc.assert_validation_bound(true, val, delta=0.05, m=200, loss_range=(0, 1), sided="one")


def test_loss_outside_the_declared_range_is_vacuous():
    true, val = validation_experiment(np.linspace(0.1, 0.4, 10), m=100, repeats=1100, seed=3, per_sample=True, scale=4.0)
    verdict = tc.check_validation_bound(true * 4, val, delta=0.05, C=1.0)
    assert verdict.status == "vacuous" and "outside [0, C = 1]" in verdict.reason
    assert tc.check_validation_bound(true * 4, val, delta=0.05, C=4.0).status == "holds"


def test_too_few_repetitions_and_nan_are_inconclusive():
    true, val = validation_experiment(np.full(5, 0.2), m=100, repeats=2, seed=0)
    verdict = tc.check_validation_bound(true, val, delta=0.05, m=100, loss_range=(0, 1))
    assert verdict.status == "inconclusive" and "run more" in verdict.reason
    true, val = validation_experiment(np.full(5, 0.2), m=100, repeats=500, seed=0)
    val[3, 1] = np.nan
    assert tc.check_validation_bound(true, val, delta=0.05, m=100, loss_range=(0, 1)).status == "inconclusive"


@pytest.mark.parametrize("delta", [0.0101, 0.0146, 0.0316, 0.0317, 0.05, 0.1, 0.2])
def test_too_few_repeats_control_is_the_edge_of_power(delta):
    """The control's repetitions cannot reject at level alpha (inconclusive), one more can: with delta < alpha^(1/2)
    two repetitions already can (an unseen audit seed drew delta = 0.0146, where a fixed 2 gave 'holds')."""
    repeats = repeats_without_power(delta)
    assert _critical_count(repeats, delta, ALPHA) is None and _critical_count(repeats + 1, delta, ALPHA) is not None
    assert delta**repeats >= ALPHA > delta ** (repeats + 1)
    case = ValidationCase(K=13, m=213, repeats=1554, delta=delta, seed=1142273325, control="too-few-repeats")
    verdict = case.verdict()
    assert verdict.status == "inconclusive" and "run more" in verdict.reason
    assert verdict.details["repeats"] == repeats


@pytest.mark.parametrize("kwargs, message", [
    (dict(delta=1.5), "0 < delta < 1"), (dict(delta=0.05, sided="both"), "sided in"),
    (dict(delta=0.05), "m and loss_range"), (dict(delta=0.05, m=10, loss_range=(0, 1), true=np.ones(3)), "true_risks")])
def test_bad_input_raises(kwargs, message):
    true = kwargs.pop("true", np.full(4, 0.3))
    with pytest.raises(tc.InvalidArgument, match=message):
        tc.check_validation_bound(true, np.full((10, 4), 0.3), **kwargs)
    with pytest.raises(tc.InvalidArgument, match="val_losses of shape"):
        tc.check_validation_bound(true, np.zeros(4), delta=0.05)


def test_audit_cases_meet_their_expectations():
    for case in tc.CLAIMS["validation_bound"].audit_cases(n=3, seed=1, device="cpu", dtype="float64"):
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
        assert "ValidationCase(" in case.reproduce
    assert ValidationCase(control="reuse").verdict().status == "violated"


# --- power: 'holds' only when the test could have seen a violation rate 2 delta --------------------

def test_power_against_is_the_exact_binomial_probability_of_rejecting():
    repeats, delta = 700, 0.05
    critical = _critical_count(repeats, delta, ALPHA)
    direct = sum(binom.pmf(k, repeats, 2 * delta) for k in range(critical, repeats + 1))
    assert power_against(repeats, delta) == pytest.approx(direct, rel=1e-9)
    assert binom.sf(critical - 1, repeats, delta) < ALPHA <= binom.sf(critical - 2, repeats, delta)  # the level
    needed = repeats_for_power(delta)
    assert power_against(needed, delta) >= 1 - ALPHA > power_against(needed - 60, delta)


def test_not_rejecting_without_power_is_inconclusive_not_holds():
    """300 repetitions at delta = 0.05 reject a rate 0.1 with probability ~0.6 only: failing to reject says
    nothing; with the repetitions repeats_for_power names it holds, stating level and power."""
    true, val = validation_experiment(np.linspace(0.05, 0.5, 20), m=200, repeats=300, seed=5)
    weak = tc.check_validation_bound(true, val, delta=0.05, m=200, loss_range=(0, 1), zero_one=True)
    assert weak.status == "inconclusive" and "power" in weak.reason, weak.summary()
    assert weak.details["violations"] < weak.details["critical_count"] and weak.details["power"] < 0.999
    needed = repeats_for_power(0.05)
    assert str(needed) in weak.reason
    true, val = validation_experiment(np.linspace(0.05, 0.5, 20), m=200, repeats=needed, seed=5)
    strong = tc.check_validation_bound(true, val, delta=0.05, m=200, loss_range=(0, 1), zero_one=True)
    assert strong.status == "holds" and strong.details["power"] >= 0.999 and strong.details["level"] == ALPHA
    assert "power" in strong.tolerance_basis


def test_a_violation_rate_of_twice_delta_is_violated():
    """One model whose declared risk is off: P(R_val < R_declared - eps) = binom.cdf(k, m, r) >= 2 delta."""
    m, delta, r = 200, 0.05, 0.3
    eps = epsilon(1, m, delta, sided="one")
    k = int(binom.ppf(2 * delta, m, r))
    assert 2 * delta <= binom.cdf(k, m, r) < 2.5 * delta
    _, val = validation_experiment(np.array([r]), m=m, repeats=repeats_for_power(delta), seed=11)
    verdict = tc.check_validation_bound(np.array([(k + 0.5) / m + eps]), val, delta=delta, m=m, loss_range=(0, 1),
                                        sided="one")
    assert verdict.status == "violated", verdict.summary()


@pytest.mark.slow
def test_level_and_power_measured():
    """benchmarks/validation_power.py at 200 instances: no false alarm on correct instances, detection of a
    rate >= 2 delta at least 0.99 (the required power is 0.999)."""
    import contextlib
    import io
    import runpy

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runpy.run_path("benchmarks/validation_power.py", run_name="bench").get("main")(200)
    lines = out.getvalue().splitlines()
    assert float(lines[0].split("false-alarm rate ")[1].split()[0]) <= 0.01
    assert float(lines[1].rsplit("rate ", 1)[1].split()[0]) <= 0.01  # the boundary null: rate just below delta
    assert float(lines[2].rsplit("rate ", 1)[1].split()[0]) >= 0.99


def test_the_critical_count_next_to_the_inverse_survival_function_is_the_full_scans():
    """The count found beside scipy's isf equals the smallest rejecting count of a scan over every count."""
    from theorycheck.claims.validation_bound import _critical_count

    rng = np.random.default_rng(0)
    for _ in range(300):
        n, delta, alpha = int(rng.integers(1, 4000)), float(rng.uniform(0.001, 0.6)), float(10 ** rng.uniform(-6, -1))
        counts = np.arange(n + 1)
        rejecting = counts[binom.sf(counts - 1, n, delta) < alpha]
        assert _critical_count(n, delta, alpha) == (int(rejecting[0]) if rejecting.size else None), (n, delta, alpha)


def test_a_declared_loss_range_the_risks_contradict_is_vacuous():
    """Risks given as (repeats, K) means with a declared range: means beyond it show losses beyond it, so the
    declared range (and the Hoeffding width it sets) is not the losses' range."""
    from theorycheck.claims.validation_bound import repeats_for_power, validation_experiment

    true, val = validation_experiment(np.full(5, 0.3), m=200, repeats=repeats_for_power(0.05), seed=1)
    assert tc.check_validation_bound(true, val, delta=0.05, m=200, loss_range=(0.0, 1.0)).status == "holds"
    contradicted = tc.check_validation_bound(3 * true, 3 * val, delta=0.05, m=200, loss_range=(0.0, 1.0))
    assert contradicted.status == "vacuous" and "outside [0, C = 1]" in contradicted.reason, contradicted.summary()


# --- your own family and data --------------------------------------------------------------------

def _sample(shift=0.0):
    """A user's distribution: x ~ N(0, I_3), y = sign(x_0 + 0.5 noise) (the torch.Generator given decides)."""
    def sample(size, generator):
        X = torch.randn(size, 3, generator=generator, dtype=torch.float64) + shift
        return X, torch.sign(X[:, 0] + 0.5 * torch.randn(size, generator=generator, dtype=torch.float64))
    return sample


def _models(dtype):
    torch.manual_seed(0)
    return [torch.nn.Sequential(torch.nn.Linear(3, 1).to(dtype), torch.nn.Flatten(0)) for _ in range(3)]


def _zero_one(predictions, y):
    return (torch.sign(predictions).to(y.dtype) != y).double()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_your_models_and_data_hold(dtype):
    models = _models(dtype)
    cast = lambda size, gen: tuple(t.to(dtype) for t in _sample()(size, gen))  # noqa: E731
    runs = tc.validation_runs(models, cast, _zero_one, m=100, repeats=200, reference=100_000)
    verdict = tc.check_validation_bound(runs["true_risks"], runs["val_losses"], delta=0.2,
                                        risk_error=runs["risk_error"])
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["risk_error"] < 0.01 and "2 alpha" in verdict.tolerance_basis


def test_your_unbounded_loss_is_vacuous_and_a_coarse_reference_undecided():
    models = _models(torch.float64)
    squared = lambda predictions, y: (predictions - y) ** 2  # noqa: E731
    runs = tc.validation_runs(models, _sample(), squared, m=100, repeats=200, reference=20_000)
    out = tc.check_validation_bound(runs["true_risks"], runs["val_losses"], delta=0.2, risk_error=runs["risk_error"])
    assert out.status == "vacuous" and "outside [0, C" in out.reason, out.summary()
    coarse = tc.validation_runs(models, _sample(), _zero_one, m=100, repeats=200, reference=50)
    blurred = tc.check_validation_bound(coarse["true_risks"], coarse["val_losses"], delta=0.2,
                                        risk_error=coarse["risk_error"])
    assert blurred.status == "inconclusive" and "risk_error" in blurred.reason, blurred.summary()
    with pytest.raises(tc.InvalidArgument, match="per-sample losses"):
        tc.validation_runs(models, _sample(), lambda p, y: p.mean(), m=10, repeats=2, reference=10)
