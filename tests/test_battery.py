"""parametrize_with_claims: the claim battery as pytest params in a user's own suite."""

import pytest
import torch
from torch import nn

import theorycheck as tc
from theorycheck.harness.battery import claim_checks
from theorycheck.generate.data import separable


class BiasFree(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 1, bias=False))

    def forward(self, x):
        return self.net(x)


def with_biases():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


@tc.parametrize_with_claims(BiasFree, seeds=(0, 1))
def test_battery_holds_for_a_bias_free_family(check):
    verdict = check()
    assert verdict.status == "holds" and verdict.seed == check.seed


@tc.parametrize_with_claims(with_biases, claims=["homogeneity"],
                            expected_failures={"homogeneity": "our net has biases"})
def test_battery_expected_failure(check):
    check()


def test_ids_marks_and_reasons():
    mark = tc.parametrize_with_claims(with_biases, claims=["homogeneity"], devices=("cpu", "cuda"),
                                      expected_failures={"homogeneity": "our net has biases"})
    argname, params = mark.args
    assert argname == "check"
    assert [p.id for p in params] == ["check_homogeneity(with_biases,seed=0)-cpu-float64",
                                      "check_homogeneity(with_biases,seed=0)-cuda-float64"]
    cpu_marks, cuda_marks = ({m.name: m for m in p.marks} for p in params)
    assert cpu_marks["xfail"].kwargs == {"reason": "our net has biases", "raises": tc.ClaimViolation, "strict": True}
    assert {"cuda", "skipif", "xfail"} <= set(cuda_marks)
    lambda_ids = [p.id for p in tc.parametrize_with_claims(lambda: BiasFree(), claims="homogeneity").args[1]]
    assert lambda_ids == ["check_homogeneity(model_factory,seed=0)-cpu-float64"]


def test_failure_message_carries_the_numbers():
    [check] = claim_checks(with_biases, claims=["homogeneity"])
    with pytest.raises(tc.ClaimViolation, match=r"\[theorycheck\] homogeneity: vacuous; statistic .* \"no bias parameters\""):
        check()
    assert check.verdict().status == "vacuous"  # .verdict() never raises on a false claim


@pytest.mark.parametrize("data", [
    torch.randn(5, 4, generator=torch.Generator().manual_seed(0)),
    lambda seed: torch.randn(5, 4, generator=torch.Generator().manual_seed(seed)),
    lambda seed: separable(6, 4, seed=seed),
])
def test_data_forms(data):
    [check] = claim_checks(BiasFree, claims=["homogeneity"], data=data, dtypes=("float32",))
    verdict = check()
    assert verdict.dtype == "float32" and verdict.details["batch"] in (5, 6)


@pytest.mark.parametrize("call, message", [
    (lambda: tc.parametrize_with_claims(BiasFree, claims=["nope"]), "['nope'] not among them"),
    (lambda: tc.parametrize_with_claims(BiasFree, claims=["homogeneity"], expected_failures={"kkt": "x"}),
     "expected_failures keyed by the claims checked"),
    (lambda: tc.parametrize_with_claims(BiasFree(), claims=["homogeneity"]), "model_factory as a callable"),
    (lambda: tc.parametrize_with_claims(BiasFree, devices=("tpu",)), "devices from cpu, cuda"),
    (lambda: tc.parametrize_with_claims(BiasFree, dtypes=("float16",)), "expected a dtype"),
    (lambda: claim_checks(lambda: nn.Conv2d(1, 2, 3, bias=False), claims=["homogeneity"])[0](),
     "whose first weight layer is a Linear"),
    (lambda: claim_checks(lambda: "not a module", claims=["homogeneity"])[0](), "return a torch.nn.Module"),
])
def test_bad_input(call, message):
    with pytest.raises(tc.InvalidArgument, match="Fix:") as info:
        call()
    assert message in str(info.value)


def test_pytest_is_imported_lazily():
    """No module of the library imports pytest at import time, except the plugin itself."""
    import ast
    from pathlib import Path

    for path in Path(tc.__file__).parent.rglob("*.py"):
        if path.name == "plugin.py":
            continue
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "pytest" for n in names), f"{path} imports pytest at module level"


def test_in_a_user_suite(pytester):
    pytester.makepyfile(test_family='''
import torch.nn as nn
import theorycheck as tc

def make_net():
    return nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1))

@tc.parametrize_with_claims(make_net, claims=["homogeneity"], expected_failures={"homogeneity": "our net has biases"})
def test_family(check):
    check()
''')
    result = pytester.runpytest_subprocess("-rx", "-v", "-p", "no:xdist")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*test_family?check_homogeneity(make_net,seed=0)-cpu-float64? XFAIL*",
                                 "*our net has biases*"])
