"""Property: for any n, signal and noise level, min-norm least-squares risks match the exact finite-n
expectation (Chebyshev, false alarm <= 1e-3) and peak at p = n; optimally tuned ridge never does."""

from hypothesis import given
from hypothesis import strategies as st

from theorycheck.claims.double_descent import DoubleDescentCase

cases = dict(n=st.integers(12, 24), r2=st.floats(0.25, 4.0), sigma2=st.floats(0.05, 2.0), seed=st.integers(0, 2**16))


@given(**cases)
def test_min_norm_peaks_at_n(n, r2, sigma2, seed):
    case = DoubleDescentCase(n=n, draws=60, r2=r2, sigma2=sigma2, seed=seed)
    verdict = case.verdict()
    assert verdict.status == "holds", f"{verdict.summary()}\nreproduce: {case}"


@given(**cases)
def test_optimal_ridge_is_violated(n, r2, sigma2, seed):
    case = DoubleDescentCase(n=n, draws=60, r2=r2, sigma2=sigma2, seed=seed, control="optimal-ridge")
    verdict = case.verdict()
    assert verdict.status == "violated", f"{verdict.summary()}\nreproduce: {case}"
