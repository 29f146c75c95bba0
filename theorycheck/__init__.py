"""theorycheck: the theorems of deep-learning theory, put under test.

State a claim once; check it on any network, dataset or training run; get a Verdict saying whether
the claim holds, is violated, or says nothing (an assumption is not met), with the numbers.

The public names below are imported on first use (PEP 562), so ``theorycheck --help`` and the pytest
plugin start without importing torch; using any of them registers every claim first.
"""

import importlib

__version__ = "0.4.0"

_EXPORTS = {  # module -> the public names it defines
    ".harness.battery": ("ClaimCheck", "parametrize_with_claims"),
    ".claims.homogeneity": ("assert_homogeneity", "check_homogeneity"),
    ".claims.kkt": ("assert_kkt", "check_kkt"),
    ".claims.layer_balance": ("assert_layer_balance", "check_layer_balance"),
    ".claims.margin": ("assert_margin_monotone", "check_margin_monotone"),
    ".claims.min_norm": ("assert_early_stopping", "assert_min_norm", "check_early_stopping", "check_min_norm",
                         "least_squares_run"),
    ".claims.flat_minima": ("assert_flat_minima", "assert_gauss_newton", "check_flat_minima", "check_gauss_newton"),
    ".claims.weight_norm": ("assert_weight_norm", "check_weight_norm"),
    ".claims.validation_bound": ("assert_validation_bound", "check_validation_bound", "validation_runs"),
    ".claims.double_descent": ("assert_double_descent", "check_double_descent"),
    ".claims.random_labels": ("assert_random_labels", "check_random_labels"),
    ".claims.random_label_margin": ("assert_random_label_margin", "check_random_label_margin", "label_margin_pairs"),
    ".claims.ntk": ("assert_ntk", "check_ntk"),
    ".claims.ntk_movement": ("assert_ntk_movement", "check_ntk_movement"),
    ".claims.stability": ("assert_sgd_stability_convex", "assert_sgd_stability_nonconvex",
                          "assert_sgd_stability_strongly_convex", "check_sgd_stability_convex",
                          "check_sgd_stability_nonconvex", "check_sgd_stability_strongly_convex"),
    ".claims.stability_kernel": ("assert_cvloo_stability", "assert_erm_stability", "check_cvloo_stability",
                                 "check_erm_stability"),
    ".engines.coupled": ("CoupledRun", "coupled_sgd"),
    ".engines.dynamics": ("train",),
    ".engines.trajectory": ("Trajectory",),
    ".engines.ensemble": ("Ensemble", "EnsembleRun", "train_ensemble"),
    ".core.errors": ("ClaimViolation", "InvalidArgument"),
    ".core.kit": ("Case", "ClaimKit"),
    ".core.comparisons": ("comparison",),
    ".engines.recorder": ("BalanceTrajectory", "Recorder"),
    ".core.registry": ("CLAIMS", "AuditCase", "Claim"),
    ".engines.svm": ("hard_margin_svm",),
    ".engines.stability_constants": ("LossConstants", "linear_loss_constants", "tanh_network_constants"),
    ".core.verdict": ("STATUSES", "Verdict"),
}
importlib.import_module(".core.registry", __name__).load_on_first_use(
    lambda: importlib.import_module(".claims", __name__))  # the first look into CLAIMS registers every claim
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = list(_MODULE_OF)  # a new public name is one entry in _EXPORTS


def __getattr__(name: str):
    """A public name (imported once, then cached here) or a submodule such as ``theorycheck.core.devices``."""
    if name in _MODULE_OF:
        importlib.import_module(".claims", __name__)  # registers every claim
        value = globals()[name] = getattr(importlib.import_module(_MODULE_OF[name], __name__), name)
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
