"""theorycheck: the theorems of deep-learning theory, put under test.

State a claim once; check it on any network, dataset or training run; get a Verdict saying whether
the claim holds, is violated, or says nothing (an assumption is not met), with the numbers.
"""

from . import claims as _claims  # noqa: F401  (registers every claim)
from .battery import ClaimCheck, parametrize_with_claims
from .claims.homogeneity import assert_homogeneity, check_homogeneity
from .claims.kkt import assert_kkt, check_kkt
from .claims.min_norm import assert_early_stopping, assert_min_norm, check_early_stopping, check_min_norm, least_squares_run
from .claims.flat_minima import assert_flat_minima, assert_gauss_newton, check_flat_minima, check_gauss_newton
from .claims.weight_norm import assert_weight_norm, check_weight_norm
from .claims.validation_bound import assert_validation_bound, check_validation_bound
from .claims.double_descent import assert_double_descent, check_double_descent
from .claims.layer_balance import assert_layer_balance, check_layer_balance
from .claims.margin import assert_margin_monotone, check_margin_monotone
from .claims.stability import (assert_sgd_stability_convex, assert_sgd_stability_nonconvex,
                               assert_sgd_stability_strongly_convex, check_sgd_stability_convex,
                               check_sgd_stability_nonconvex, check_sgd_stability_strongly_convex)
from .claims.stability_kernel import (assert_cvloo_stability, assert_erm_stability, check_cvloo_stability,
                                      check_erm_stability)
from .coupled import CoupledRun, coupled_sgd
from .dynamics import Trajectory, train
from .errors import ClaimViolation, InvalidArgument
from .recorder import BalanceTrajectory, Recorder
from .registry import CLAIMS, AuditCase, Claim
from .svm import hard_margin_svm
from .stability_constants import LossConstants, linear_loss_constants, tanh_network_constants
from .verdict import STATUSES, Verdict

__version__ = "0.1.0"

__all__ = [
    "CLAIMS", "STATUSES", "AuditCase", "Claim", "ClaimViolation", "InvalidArgument", "Verdict",
    "assert_homogeneity", "check_homogeneity",
    "BalanceTrajectory", "Recorder", "assert_layer_balance", "check_layer_balance",
    "CoupledRun", "LossConstants", "coupled_sgd", "linear_loss_constants", "tanh_network_constants",
    "assert_sgd_stability_convex", "assert_sgd_stability_nonconvex", "assert_sgd_stability_strongly_convex",
    "check_sgd_stability_convex", "check_sgd_stability_nonconvex", "check_sgd_stability_strongly_convex",
    "assert_cvloo_stability", "assert_erm_stability", "check_cvloo_stability", "check_erm_stability",
    "ClaimCheck", "parametrize_with_claims",
    "Trajectory", "train", "assert_margin_monotone", "check_margin_monotone", "assert_kkt", "check_kkt",
    "hard_margin_svm",
]
