"""theorycheck: the theorems of deep-learning theory, put under test.

State a claim once; check it on any network, dataset or training run; get a Verdict saying whether
the claim holds, is violated, or says nothing (an assumption is not met), with the numbers.
"""

from . import claims as _claims  # noqa: F401  (registers every claim)
from .claims.homogeneity import assert_homogeneity, check_homogeneity
from .claims.layer_balance import assert_layer_balance, check_layer_balance
from .errors import ClaimViolation, InvalidArgument
from .recorder import BalanceTrajectory, Recorder
from .registry import CLAIMS, AuditCase, Claim
from .verdict import STATUSES, Verdict

__version__ = "0.1.0"

__all__ = [
    "CLAIMS", "STATUSES", "AuditCase", "Claim", "ClaimViolation", "InvalidArgument", "Verdict",
    "assert_homogeneity", "check_homogeneity",
    "BalanceTrajectory", "Recorder", "assert_layer_balance", "check_layer_balance",
]
