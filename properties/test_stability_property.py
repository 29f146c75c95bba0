"""Properties: SGD is uniformly stable on every generated convex problem (logistic, squared hinge, Huber
on separable / random-label / digits data; the pathwise bound on every run and step, the Monte Carlo
expectation below the HRS bound), on strongly convex ones, and on small tanh networks; expansive steps
are reported as not meeting the theorem. Kernel ridge regression's exact leave-one-out residuals match
refits to roundoff, and its Bousquet-Elisseeff bound holds."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.core.kit import case_line
from theorycheck.claims.stability_cases import CHANGES, CONVEX_LOSSES, SGDCase
from theorycheck.claims.stability_kernel import KernelCase

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)


@st.composite
def sgd_cases(draw, claim: str, *, step_scale=st.floats(0.1, 1.0)) -> SGDCase:
    """A small coupled-SGD instance of ``claim`` (n <= 12 examples, 2n steps, 32 index sequences)."""
    n = draw(st.integers(4, 12))
    fields = dict(claim=claim, n=n, steps=2 * n, runs=32, d=draw(st.integers(1, 5)),
                  data=draw(st.sampled_from(("separable", "random", "digits"))), change=draw(st.sampled_from(CHANGES)),
                  step_scale=draw(step_scale), seed=draw(st.integers(0, 2**16)))
    if claim == "sgd_stability_nonconvex":
        fields.update(loss="tanh", hidden=draw(st.integers(1, 5)), radius=draw(st.floats(0.3, 2.0)),
                      step_scale=draw(st.floats(0.1, 2.0)))
    else:
        loss = draw(st.sampled_from(CONVEX_LOSSES))
        fields.update(loss=loss, radius=draw(st.floats(0.3, 3.0)) if loss == "squared_hinge" else None)
        if claim == "sgd_stability_strongly_convex":
            fields.update(weight_decay=draw(st.floats(0.01, 0.5)))
    return SGDCase(**fields)


def _holds(case: SGDCase, device: str, dtype: str) -> None:
    verdict = case.verdict(device=device, dtype=dtype)
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case_line(case)}.verdict(device={device!r}, dtype={dtype!r})"
    expectation = verdict.details["expectation"]
    if expectation["evaluated"]:
        assert expectation["lower"] <= expectation["bound"]


@given(case=sgd_cases("sgd_stability_convex"))
def test_sgd_is_stable_on_convex_problems(case, tc_device, tc_dtype):
    _holds(case, tc_device, tc_dtype)


@given(case=sgd_cases("sgd_stability_strongly_convex"))
def test_sgd_is_stable_on_strongly_convex_problems(case, tc_device, tc_dtype):
    _holds(case, tc_device, tc_dtype)


@given(case=sgd_cases("sgd_stability_nonconvex"))
def test_sgd_is_stable_on_small_tanh_networks(case, tc_device, tc_dtype):
    _holds(case, tc_device, tc_dtype)


@given(case=sgd_cases("sgd_stability_convex", step_scale=st.floats(2.5, 5.0)))
def test_expansive_steps_are_reported(case, tc_device, tc_dtype):
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status in ("vacuous", "inconclusive"), verdict.summary()
    assert verdict.status == "inconclusive" or not verdict.assumptions["step sizes alpha_t <= 2/beta"]


@st.composite
def kernel_cases(draw, claim: str) -> KernelCase:
    interpolate = claim == "cvloo_stability" and draw(st.booleans())  # on Gaussian inputs: distinct points
    return KernelCase(claim=claim, kernel="laplace" if interpolate else draw(st.sampled_from(("rbf", "laplace", "linear"))),
                      data="random" if interpolate else draw(st.sampled_from(("separable", "random", "digits"))),
                      n=draw(st.integers(6, 24)),
                      d=draw(st.integers(1, 5)), lam=0.0 if interpolate else draw(st.floats(1e-3, 1.0)),
                      bandwidth=draw(st.floats(0.5, 4.0)), change=draw(st.sampled_from(("remove", "replace"))),
                      seed=draw(st.integers(0, 2**16)))


@given(case=kernel_cases("cvloo_stability"))
def test_exact_leave_one_out_matches_refits(case, tc_device, tc_dtype):
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    if verdict.status != "holds":  # interpolation on nearly coincident points can be singular to working precision
        assert verdict.status in ("vacuous", "inconclusive") and case.lam == 0, verdict.summary()
        return
    assert all(p["measured"] <= p["tolerance"] for p in verdict.details["comparisons"] if p["name"].startswith("exact LOO"))


@given(case=kernel_cases("erm_stability"))
def test_kernel_ridge_regression_is_uniformly_stable(case, tc_device, tc_dtype):
    verdict = case.verdict(device=tc_device, dtype=tc_dtype)
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case_line(case)}.verdict()"
    assert tc.CLAIMS["erm_stability"].checker is tc.check_erm_stability
