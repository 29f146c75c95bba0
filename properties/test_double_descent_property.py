"""Property: for any n, signal and noise level, min-norm least-squares risks match the exact finite-n
expectation (Chebyshev, false alarm <= 1e-3) and, where the exact risk has one peak (sigma >= r), peak
at p = n; optimally tuned ridge never holds."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from theorycheck.claims.double_descent import DoubleDescentCase

pytestmark = pytest.mark.theorycheck  # the plugin's Hypothesis profile applies (ci by default)

cases = dict(n=st.integers(12, 24), r2=st.floats(0.25, 4.0), sigma2=st.floats(0.05, 2.0), seed=st.integers(0, 2**16))


@given(n=st.integers(12, 24), r2=st.floats(0.25, 4.0), noise_over_signal=st.floats(1.0, 4.0), seed=st.integers(0, 2**16))
def test_min_norm_peaks_at_n(n, r2, noise_over_signal, seed):
    case = DoubleDescentCase(n=n, draws=60, r2=r2, sigma2=r2 * noise_over_signal, seed=seed)
    verdict = case.verdict()
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case}"


@given(**cases)
def test_optimal_ridge_never_holds(n, r2, sigma2, seed):
    case = DoubleDescentCase(n=n, draws=60, r2=r2, sigma2=sigma2, seed=seed, control="optimal-ridge")
    verdict = case.verdict()
    expected = "violated" if sigma2 >= r2 else "vacuous"  # sigma < r: the peak location is not implied
    assert verdict.status == expected, f"{verdict.summary()}\nreproduce: {case}"


@given(**cases)
def test_a_high_signal_to_noise_ratio_is_vacuous_not_holds(n, r2, sigma2, seed):
    verdict = DoubleDescentCase(n=n, draws=60, r2=r2, sigma2=min(sigma2, 0.99 * r2), seed=seed).verdict()
    assert verdict.status == "vacuous" and "sigma^2 >= r^2" in str(verdict.failed_assumptions)
