"""Unit tests and negative controls for erm_stability (Bousquet & Elisseeff) and cvloo_stability (exact
leave-one-out of kernel ridge regression)."""

import math

import numpy as np
import pytest
import torch

import theorycheck as tc
from theorycheck.claims.stability_kernel import KernelCase, cvloo_stability_kit, erm_stability_kit, rescaled_refit
from theorycheck.generate.data import digits, random_labels, separable
from theorycheck.core.devices import dtype_of
from theorycheck.engines.kernels import kernel_matrix, kernel_ridge_refit, ridge_fit


def _data(n=20, d=3, seed=0, dtype="float64", device="cpu"):
    data = random_labels(n, d, seed=seed, dtype=dtype_of(dtype))
    return data.X.to(device), data.y.to(device)


@pytest.mark.parametrize("kernel, lam", [("rbf", 0.1), ("laplace", 0.01), ("linear", 0.3), ("laplace", 0.0)])
def test_exact_loo_matches_refits(kernel, lam, tc_device, tc_dtype):
    X, y = _data(16, 3, dtype=tc_dtype, device=tc_device)
    verdict = tc.check_cvloo_stability(X, y, lam=lam, kernel=kernel, bandwidth=2.0)
    assert verdict.status == "holds", verdict.summary()
    formula = [p for p in verdict.details["comparisons"] if p["name"].startswith("exact LOO")]
    assert len(formula) == 3  # one per size; the headline is the tightest part, formula or bound
    for part in formula:
        assert part["measured"] <= part["tolerance"] < 1e-2 if tc_dtype == "float32" else part["tolerance"] < 1e-6
    assert verdict.statistic <= verdict.bound + verdict.tolerance
    sizes = verdict.details["sizes"]
    assert [row["n"] for row in sizes] == [4, 8, 16]
    if lam > 0:
        assert all(row["cvloo_max"] <= row["bound"] for row in sizes)
        assert sizes[0]["bound"] == pytest.approx(4 * sizes[-1]["bound"])  # sigma^2 kappa^2/(2 lambda n): 1/n


def test_exact_loo_agrees_with_scikit_learn_kernel_ridge():
    """An independent implementation: sklearn's KernelRidge(alpha = n lambda) has the same coefficients."""
    from sklearn.kernel_ridge import KernelRidge

    X, y = _data(25, 4, seed=3)
    lam, h = 0.05, 1.5
    model = KernelRidge(alpha=25 * lam, kernel="rbf", gamma=1 / (2 * h ** 2)).fit(X.numpy(), y.numpy())
    fit = ridge_fit(kernel_matrix("rbf", X, X, bandwidth=h), y, 25 * lam)
    np.testing.assert_allclose(model.dual_coef_.reshape(-1), fit.alpha.numpy(), rtol=1e-9, atol=1e-12)

    def sklearn_refit(X_train, y_train):  # nlambda of the full sample held fixed
        return torch.as_tensor(KernelRidge(alpha=25 * lam, kernel="rbf", gamma=1 / (2 * h ** 2))
                               .fit(X_train.numpy(), y_train.numpy()).dual_coef_.reshape(-1))

    verdict = tc.check_cvloo_stability(X, y, lam=lam, bandwidth=h, sizes=[25], refit=sklearn_refit)
    assert verdict.status == "holds", verdict.summary()


# --- negative controls ---------------------------------------------------------------------------

def test_refit_that_rescales_lambda_is_detected(tc_device, tc_dtype):
    X, y = _data(16, 3, dtype=tc_dtype, device=tc_device)
    verdict = tc.check_cvloo_stability(X, y, lam=0.1, bandwidth=2.0, refit=rescaled_refit("rbf", lam=0.1, bandwidth=2.0))
    assert verdict.status == "violated", verdict.summary()
    assert verdict.statistic > 10 * verdict.tolerance  # float64: > 1e9 x; float32: ~ 90 x
    assert "n lambda fixed" in verdict.reason
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] cvloo_stability: violated"):
        tc.assert_cvloo_stability(X, y, lam=0.1, bandwidth=2.0, refit=rescaled_refit("rbf", lam=0.1, bandwidth=2.0))


def test_scikit_learn_refit_with_per_sample_alpha_is_detected():
    """The realistic slip: refitting with alpha = len(X_train) * lambda, i.e. (n - 1) lambda."""
    from sklearn.kernel_ridge import KernelRidge

    X, y = _data(20, 3, seed=4)

    def refit(X_train, y_train):
        return torch.as_tensor(KernelRidge(alpha=len(X_train) * 0.05, kernel="rbf", gamma=0.5)
                               .fit(X_train.numpy(), y_train.numpy()).dual_coef_.reshape(-1))

    verdict = tc.check_cvloo_stability(X, y, lam=0.05, bandwidth=1.0, sizes=[20], refit=refit)
    assert verdict.status == "violated", verdict.summary()


def test_interpolation_with_duplicate_points_is_vacuous():
    X, y = _data(12, 3)
    X[1] = X[0]
    verdict = tc.check_cvloo_stability(X, y, lam=0.0, kernel="laplace")
    assert verdict.status == "vacuous" and verdict.assumptions[cvloo_stability_kit.assumptions["pd"]] is False
    assert "duplicate points" in verdict.reason


@pytest.mark.parametrize("claim", ["cvloo_stability", "erm_stability"])
def test_indefinite_kernel_is_vacuous(claim):
    X, y = _data(12, 3)
    check = tc.check_cvloo_stability if claim == "cvloo_stability" else tc.check_erm_stability
    verdict = check(X, y, lam=0.01, kernel="sigmoid", bandwidth=0.5)
    assert verdict.status == "vacuous" and "not a reproducing kernel" in verdict.reason


def test_erm_bound_holds_and_replacement_doubles_it(tc_device, tc_dtype):
    X, y = _data(21, 3, dtype=tc_dtype, device=tc_device)
    removal = tc.check_erm_stability(X[:20], y[:20], lam=0.1, bandwidth=2.0)
    replace = tc.check_erm_stability(X[:20], y[:20], lam=0.1, bandwidth=2.0, replacement=(X[20:], y[20:]))
    stability = {}  # the theorem's part; the headline is the tightest part (here the proof inequality)
    for name, verdict in (("removal", removal), ("replace", replace)):
        assert verdict.status == "holds", verdict.summary()
        stability[name] = verdict.details["comparisons"][0]
        assert stability[name]["name"].startswith("certified sup")
        assert stability[name]["measured"] <= stability[name]["bound"]
        assert verdict.statistic <= verdict.bound + verdict.tolerance
        assert verdict.details["proof_inequality"]["held"]
    assert stability["replace"]["bound"] == pytest.approx(2 * stability["removal"]["bound"])
    sigma = 2 * 1.0 * (1 + 1 / math.sqrt(0.1))  # B = 1 (labels +-1), kappa = 1 (rbf)
    assert removal.details["sigma"] == pytest.approx(sigma)
    assert stability["removal"]["bound"] == pytest.approx(sigma ** 2 / (2 * 0.1 * 20))
    # the certified sup dominates the loss change measured at every probe point
    assert all(c >= p - 1e-12 for c, p in zip(removal.details["certified_sup"], removal.details["probe_sup"]))


def test_erm_refit_that_forgets_n_is_violated():
    X, y = _data(20, 3, seed=2)
    verdict = tc.check_erm_stability(X, y, lam=0.2, bandwidth=2.0, refit=kernel_ridge_refit("rbf", ridge=0.2, bandwidth=2.0))
    assert verdict.status == "violated", verdict.summary()
    assert "proof inequality fails" in verdict.reason


def test_erm_without_regularization_is_vacuous():
    X, y = _data(12, 3)
    verdict = tc.check_erm_stability(X, y, lam=0.0, kernel="laplace")
    assert verdict.status == "vacuous" and verdict.assumptions["lambda > 0"] is False


def test_kernel_matrix_of_duplicates_stays_positive_semidefinite():
    """Distances by differences, not by the matmul expansion (which loses sqrt(eps) on near-duplicates)."""
    X = separable(40, 2, seed=0).X
    X = torch.cat([X, X[:5]])
    eig = torch.linalg.eigvalsh(kernel_matrix("laplace", X, X, bandwidth=0.7))
    assert float(eig[0]) > -1e-13


def test_cvloo_decays_on_digits():
    data = digits(64, seed=0)
    verdict = tc.check_cvloo_stability(data.X, data.y, lam=0.05, bandwidth=4.0, sizes=[8, 16, 32, 64])
    assert verdict.status == "holds", verdict.summary()
    assert verdict.details["decay_slope"] < 0


@pytest.mark.parametrize("call, message", [
    (lambda X, y: tc.check_cvloo_stability(X.numpy(), y, lam=0.1), "floating torch tensors"),
    (lambda X, y: tc.check_cvloo_stability(X, y[:-1], lam=0.1), "one sample count across ['X', 'y'] for 'cvloo_stability'"),
    (lambda X, y: tc.check_cvloo_stability(X, y, lam=-1.0), "lambda >= 0"),
    (lambda X, y: tc.check_cvloo_stability(X, y, lam=0.1, sizes=[2]), "sizes in [3,"),
    (lambda X, y: tc.check_cvloo_stability(X, y, lam=0.1, kernel="poly"), "a kernel in"),
    (lambda X, y: tc.check_erm_stability(X, y, lam=0.1, indices=[99]), "indices in [0, 10)"),
])
def test_bad_input_names_expected_received_fix(call, message):
    X, y = _data(10, 2)
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        call(X, y)
    assert message in str(info.value)


@pytest.mark.parametrize("claim", ["erm_stability", "cvloo_stability"])
def test_audit_cases_reproduce(claim):
    import contextlib
    import io

    cases = list(tc.CLAIMS[claim].audit_cases(n=3, seed=2, device="cpu", dtype="float64"))
    for case in cases:
        verdict = case.run()
        assert verdict.status in case.expected, verdict.summary()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(cases[-1].reproduce, {})  # noqa: S102  (the reproduce line is ours)
    assert out.getvalue().strip() == cases[-1].run().summary()
    assert isinstance(eval(cases[0].reproduce.split("print(")[1].split(".verdict")[0], {"KernelCase": KernelCase}),
                      KernelCase)


@pytest.mark.parametrize("claim", ["erm_stability", "cvloo_stability"])
def test_all_zero_targets_hold_trivially(claim, tc_device, tc_dtype):
    """y = 0: f_S = f' = 0 exactly, every loss change is 0 and the bound holds (no division by zero)."""
    X, _ = _data(12, 3, dtype=tc_dtype, device=tc_device)
    check = tc.check_erm_stability if claim == "erm_stability" else tc.check_cvloo_stability
    verdict = check(X, torch.zeros(12, dtype=X.dtype, device=X.device), lam=0.1, kernel="rbf", bandwidth=1.0)
    assert verdict.status == "holds" and verdict.statistic == 0, verdict.summary()


@pytest.mark.parametrize("claim", ["erm_stability", "cvloo_stability"])
def test_duplicates_and_tiny_samples_never_crash(claim, tc_device, tc_dtype):
    X, y = _data(6, 2, dtype=tc_dtype, device=tc_device)
    X[1], y[1] = X[0], y[0]
    check = tc.check_erm_stability if claim == "erm_stability" else tc.check_cvloo_stability
    assert check(X, y, lam=0.1, kernel="rbf").status == "holds"  # lambda > 0: A stays positive definite
    assert check(X, y, lam=0.0, kernel="laplace").status == "vacuous"  # duplicate rows: K singular, or lambda = 0
    assert check(X[:3], y[:3], lam=0.1, kernel="rbf").status == "holds"  # the smallest sample of each check
    zeros = torch.zeros_like(X)  # every input equal (a zero linear kernel): exact zeros, holds
    assert check(zeros, y, lam=0.1, kernel="linear").status == "holds"
    with pytest.raises(tc.InvalidArgument, match="expected .* but got .* Fix"):
        check(X[:1], y[:1], lam=0.1, kernel="rbf")  # one sample: nothing to leave out


# --- positive definite by construction, singular to working precision: never an unmet assumption ----------

def _clustered(n, dtype, spread=1e-6, seed=1):
    """Distinct points packed within ``spread`` of each other: a Gaussian Gram matrix of them is positive definite
    (distinct points) but singular to working precision."""
    rng = np.random.default_rng(seed)
    X = torch.as_tensor(rng.standard_normal((1, 3)) + spread * rng.standard_normal((n, 3)), dtype=dtype)
    y = torch.as_tensor(rng.standard_normal(n), dtype=dtype)
    assert torch.unique(X, dim=0).shape[0] == n
    return X, y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kernel, lam", [("rbf", 1e-13), ("laplace", 1e-13), ("rbf", 0.0), ("laplace", 0.0)])
def test_positive_definite_by_construction_is_never_vacuous(kernel, lam, dtype):
    """lambda > 0 tiny, or lambda = 0 with a Gaussian/Laplace Gram on distinct points: A is positive definite as an
    exact problem; its numerical singularity makes roundoff unboundable (inconclusive), not the theorem silent."""
    X, y = _clustered(12, dtype)
    verdict = tc.check_cvloo_stability(X, y, lam=lam, kernel=kernel)
    assert verdict.status in ("holds", "inconclusive"), verdict.summary()
    assert verdict.assumptions[cvloo_stability_kit.assumptions["pd"]] is True
    if lam == 0 and kernel == "rbf":  # the Gaussian Gram of points 1e-6 apart: cond ~ 1e70, nothing resolvable
        assert verdict.status == "inconclusive" and "roundoff" in verdict.reason, verdict.summary()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_exactly_singular_problems_stay_vacuous(dtype):
    """lambda = 0 with a linear kernel on more points than dimensions (rank K <= d), or a repeated point: the
    exact A is singular, an unmet assumption."""
    X, y = _clustered(8, dtype, spread=1.0)
    verdict = tc.check_cvloo_stability(X, y, lam=0.0, kernel="linear")
    assert verdict.status == "vacuous" and "rank K <= d" in verdict.reason, verdict.summary()
    X[3] = X[5]
    verdict = tc.check_cvloo_stability(X, y, lam=0.0, kernel="rbf")
    assert verdict.status == "vacuous" and "duplicate points" in verdict.reason, verdict.summary()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiny_lambda_erm_is_not_vacuous(dtype):
    X, y = _clustered(10, dtype)
    verdict = tc.check_erm_stability(X, y, lam=1e-13)
    assert verdict.status in ("holds", "inconclusive"), verdict.summary()


# --- definiteness on every point the verdict ranges over: the probes too ----------------------------------

def _shifted_kernel(radius):
    """A user's kernel: Gaussian, minus 2 on pairs of points both beyond ``radius`` (a bug that shows only
    there). On points inside the radius it is the Gaussian kernel (PSD); with a probe beyond it k(p, p) = -1."""

    def kernel(A, B):
        far_a = (A.reshape(A.shape[0], -1).norm(dim=1) > radius).to(A.dtype)
        far_b = (B.reshape(B.shape[0], -1).norm(dim=1) > radius).to(B.dtype)
        return torch.exp(-torch.cdist(A, B) ** 2 / 2) - 2 * far_a[:, None] * far_b[None, :]

    return kernel


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_indefinite_only_with_the_probes_is_vacuous(dtype):
    X, y = _data(14, 3, seed=3, dtype=dtype)
    radius = float(X.norm(dim=1).max()) * 1.01
    kernel = _shifted_kernel(radius)
    probes = torch.cat([X[:4], 3 * radius * X[4:5] / X[4].norm()])
    probe_y = y[:5]
    inside = tc.check_erm_stability(X, y, lam=0.1, kernel=kernel, X_test=X[:4], y_test=y[:4])
    assert inside.status == "holds", inside.summary()
    verdict = tc.check_erm_stability(X, y, lam=0.1, kernel=kernel, X_test=probes, y_test=probe_y)
    assert verdict.status == "vacuous", verdict.summary()
    assert verdict.assumptions[erm_stability_kit.assumptions["psd"]] is False
    assert "not a reproducing kernel" in verdict.reason
