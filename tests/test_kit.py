"""The claim kit: declared assumptions only, the deciding comparison in the headline, seeded named cases."""

import dataclasses
import math
import sys

import numpy as np

import pytest

import theorycheck as tc
from theorycheck.core import registry
from theorycheck.core.comparisons import deciding
from theorycheck.core.kit import KITS, Case, ClaimKit, case_seed, comparison


@pytest.fixture
def kit():
    kit = ClaimKit(id="kit_probe", statement="x <= 1", source="tests", tolerance="0",
                   assumptions={"finite": "x is finite", "small": "x below 10"})

    @kit.checker
    def check_kit_probe(x: float, y: float = 0.0):
        return kit.decide(assumptions={"finite": math.isfinite(x), "small": x < 10},
                          comparisons=[comparison("x", measured=x, bound=1.0, tolerance=0.0, basis="exact"),
                                       comparison("y", measured=y, bound=1.0, tolerance=0.5, basis="half")])

    @kit.instances
    def instances(rng, device, dtype):
        value = float(rng.uniform(0, 1))
        return Case(run=lambda: check_kit_probe(value), size=1)

    @kit.control("too_big", expect="violated")
    def too_big(rng, device, dtype):
        value = float(rng.uniform(2, 3))
        return Case(run=lambda: check_kit_probe(value))

    yield kit
    registry._CLAIMS.pop(kit.id)
    KITS.pop(kit.id)


def test_the_deciding_comparison_is_the_failing_one_else_the_tightest(kit):
    holds = kit.check(0.2, 1.3)
    assert holds.status == "holds" and holds.statistic == 1.3 and holds.tolerance == 0.5
    assert holds.tolerance_basis == "y: half" and len(holds.details["comparisons"]) == 2
    violated = kit.check(0.2, 1.6)
    assert violated.status == "violated" and violated.statistic == 1.6
    assert violated.statistic > violated.bound + violated.tolerance
    assert [c["held"] for c in violated.details["comparisons"]] == [True, False]
    with pytest.raises(tc.InvalidArgument, match="expected at least one comparison"):
        deciding([])


def test_undeclared_assumptions_are_refused_with_a_suggestion(kit):
    with pytest.raises(tc.InvalidArgument, match=r"got \['smal'\] \('smal': did you mean 'small'\?\)"):
        kit.decide(assumptions={"smal": True}, comparisons=[comparison("x", 0.0, 1.0, 0.0, "exact")])
    with pytest.raises(tc.InvalidArgument, match="expected comparisons"):
        kit.decide(assumptions={"finite": True})
    nothing = kit.decide(assumptions={"finite": True}, inconclusive=True)
    assert nothing.status == "inconclusive" and math.isnan(nothing.statistic)


@pytest.fixture
def throwaway_kit():
    """A kit whose checker is registered for one test only."""
    made = []

    def make(claim_id="probe_kit", **assumptions):
        made.append(ClaimKit(id=claim_id, statement="x <= 1", source="tests", tolerance="0",
                             assumptions=assumptions or {"finite": "x is finite"}))
        return made[-1]

    yield make
    for kit in made:
        registry._CLAIMS.pop(kit.id, None)
        KITS.pop(kit.id, None)


def test_a_checker_must_return_a_verdict_decided_by_its_own_kit(throwaway_kit):
    """The kit is the only road to a verdict: a verdict built around it, another claim's verdict or anything
    else returned by a checker is an InvalidArgument naming the claim."""
    from theorycheck.core.verdict import _decide

    kit, other = throwaway_kit("probe_kit"), throwaway_kit("other_kit")

    @kit.checker
    def check_probe(x: float, how: str = "kit"):
        if how == "around":
            return _decide(claim=kit.id, assumptions={"x is finite": True}, conclusion_held=x <= 1, statistic=x,
                           bound=1.0, tolerance=0.0, tolerance_basis="exact")
        if how == "other":
            return other.decide(assumptions={}, comparisons=[comparison("x", x, 1.0, 0.0, "exact")])
        if how == "dict":
            return {"status": "holds"}
        return kit.decide(assumptions={"finite": True}, comparisons=[comparison("x", x, 1.0, 0.0, "exact")])

    assert check_probe(0.5).status == "holds"
    for how, got in [("around", "not decided by its kit"), ("other", "a Verdict of 'other_kit'"), ("dict", "dict")]:
        with pytest.raises(tc.InvalidArgument, match=rf"checker of claim 'probe_kit'.*but got .*{got}.*Fix: return"):
            check_probe(0.5, how)


def test_misspelled_statuses_and_claim_ids_are_refused_at_declaration(throwaway_kit):
    kit = throwaway_kit()
    with pytest.raises(tc.InvalidArgument, match=r"control 'c' of claim 'probe_kit'.*\['violatd'\].*did you mean 'violated'"):
        kit.control("c", expect="violatd")
    with pytest.raises(tc.InvalidArgument, match=r"expected a status in .* but got 'held'"):
        tc.Verdict(claim="probe_kit", status="held", conclusion_held=True, assumptions={}, statistic=0.0, bound=0.0,
                   tolerance=0.0, tolerance_basis="")
    with pytest.raises(tc.InvalidArgument, match="expected comparisons of claim 'probe_kit' made by comparison"):
        kit.decide(assumptions={}, comparisons=[{"name": "x", "held": True}])
    with pytest.raises(tc.InvalidArgument, match="got no \\['statistic'"):
        kit.decide(assumptions={}, conclusion_held=True, bound=0.0, tolerance=0.0, tolerance_basis="exact")
    homogeneity = tc.CLAIMS["homogeneity"]
    with pytest.raises(tc.InvalidArgument, match="expected a new claim id, but got 'homogeneity'"):
        registry.register(dataclasses.replace(homogeneity, statement="another"))


def test_comparisons_are_frozen():
    part = comparison("x", 1.0, 1.0, 0.0, "exact")
    with pytest.raises(dataclasses.FrozenInstanceError):
        part.measured = 2.0
    assert part.held and part.to_dict()["held"] is True


def test_provenance_is_what_ran(throwaway_kit):
    """dtype and device from the call's tensors (a module's parameters first), an explicit dtype argument
    over them, the seed argument, else the audit case's stream seed; versions of what decided it."""
    import torch

    kit = throwaway_kit()

    @kit.checker
    def check_probe(model, x, *, dtype=None, seed=None):
        return kit.decide(assumptions={"finite": True}, comparisons=[comparison("x", 0.0, 1.0, 0.0, "exact")])

    model = torch.nn.Linear(2, 1).to(torch.float32)
    verdict = check_probe(model, torch.zeros(3, 2, dtype=torch.float64))
    assert (verdict.device, verdict.dtype, verdict.seed) == ("cpu", "float32", None)
    assert verdict.versions["theorycheck"] == tc.__version__ and verdict.versions["torch"] == torch.__version__
    assert check_probe(None, np.zeros((2, 2), dtype=np.float32), seed=7).dtype == "float32"
    assert check_probe(None, [1.0], dtype="bfloat16", seed=7).seed == 7
    assert check_probe(None, [1.0]).dtype == "float64"  # plain Python floats
    from theorycheck.core.provenance import audit_seed

    with audit_seed(1234):
        assert check_probe(None, [1.0]).seed == 1234
        assert check_probe(None, [1.0], seed=3).seed == 3


def test_every_audit_record_carries_its_dtype_and_seed():
    """A float32 audit's verdicts all say float32 and every one has a seed (each claim, one instance and one control)."""
    from theorycheck.harness.plan import AuditSettings, planned_cases, run_case

    for claim in tc.CLAIMS:
        settings = AuditSettings(claims=(claim,), devices=("cpu",), dtypes=("float32",), examples={claim: 1},
                                 budget={claim: 0.0}, seed=3)
        for case in planned_cases(claim, "cpu", "float32", settings)[:2]:
            record = run_case(case, claim=claim, device="cpu", dtype="float32", seed=3)
            assert record["verdict"] is not None, (claim, case.name, record["error"])
            assert record["verdict"]["dtype"] == "float32" and record["verdict"]["seed"] is not None, (claim, case.name)


def test_every_registered_claim_is_declared_through_the_kit():
    assert set(tc.CLAIMS) == set(KITS), sorted(set(tc.CLAIMS) ^ set(KITS))
    for claim_id, kit in KITS.items():
        assert tc.CLAIMS[claim_id].checker is kit.check and tuple(kit.assumptions.values()) == \
            tc.CLAIMS[claim_id].assumptions


def test_dataclass_cases_keep_their_own_reproduce_line_and_shared_streams():
    cases = list(tc.CLAIMS["double_descent"].audit_cases(n=1, seed=3, device="cpu", dtype="float64"))
    assert cases[0].reproduce.startswith("from theorycheck.claims.double_descent import DoubleDescentCase; ")
    assert [c.name for c in cases] == ["instance-0", "control-optimal-ridge-0"]
    margin = tc.CLAIMS["margin_monotone"].audit_cases(n=2, seed=3, device="cpu", dtype="float64")
    kkt = tc.CLAIMS["kkt"].audit_cases(n=2, seed=3, device="cpu", dtype="float64")
    first = [(a.name, a.reproduce.split("; m, X")[0]) for a, _ in zip(margin, range(2))]
    assert first == [(b.name, b.reproduce.split("; m, X")[0]) for b, _ in zip(kkt, range(2))]  # the same runs


def test_registered_with_assert_and_audit_cases(kit):
    claim = tc.CLAIMS["kit_probe"]
    assert claim.assumptions == ("x is finite", "x below 10") and claim.checker is kit.check
    assert kit.assert_.__name__ == "assert_kit_probe"
    with pytest.raises(tc.ClaimViolation, match="kit_probe: violated"):
        kit.assert_(5.0)
    cases = list(claim.audit_cases(n=3, seed=7, device="cpu", dtype="float64"))
    assert [c.name for c in cases] == ["instance-0", "instance-1", "instance-2",
                                       "control-too_big-0", "control-too_big-1", "control-too_big-2"]
    assert all(c.run().status in c.expected for c in cases)
    again = list(claim.audit_cases(n=3, seed=7, device="cpu", dtype="float64"))
    assert [c.run().statistic for c in cases] == [c.run().statistic for c in again]
    assert kit.case("control-too_big-1", seed=7).statistic == cases[4].run().statistic
    assert "KITS['kit_probe'].case('instance-0', seed=7" in cases[0].reproduce
    assert case_seed(7, "ab", "c") != case_seed(7, "ba", "c")  # anagram ids get their own streams


def test_a_control_on_an_instance_draws_that_instances_stream(kit):
    @kit.control("twice", expect="violated", on_instance=True)
    def twice(rng, device, dtype):
        value = 2 + float(rng.uniform(0, 1))  # the instance's draw, moved past the bound
        return Case(run=lambda: kit.check(value))

    cases = {c.name: c for c in tc.CLAIMS["kit_probe"].audit_cases(n=4, seed=7, device="cpu", dtype="float64")}
    assert [(n, c.stream) for n, c in cases.items() if c.kind == "control"] == [
        ("control-too_big-0", "control-too_big-0"), ("control-twice-1", "instance-1"),
        ("control-too_big-2", "control-too_big-2"), ("control-twice-3", "instance-3")]
    for index in (1, 3):
        assert cases[f"control-twice-{index}"].run().statistic == 2 + cases[f"instance-{index}"].run().statistic
    assert cases["instance-0"].stream == "instance-0"
    assert kit.case("control-twice-3", seed=7).statistic == cases["control-twice-3"].run().statistic


def test_only_the_users_call_is_collected(kit):
    from theorycheck.core.verdict import collecting_verdicts, reported

    @reported
    def wrapper():
        return kit.check(0.5)  # a nested checker call

    with collecting_verdicts() as found:
        wrapper()
    assert len(found) == 1


def _readme_claim_file() -> str:
    from test_readme import EXAMPLES

    return next(code for code in EXAMPLES["docs/claim-authors.md"] if "ClaimKit(" in code)


def test_the_documented_claim_runs_through_the_audit_and_the_battery(pytester, monkeypatch, capsys):
    from theorycheck.harness.cli import main

    pytester.makepyfile(my_claims=_readme_claim_file())
    monkeypatch.syspath_prepend(str(pytester.path))
    try:  # the audit in this process (worker processes are tested elsewhere); the claim is registered here
        code = main(["audit", "--import", "my_claims", "--claims", "input_homogeneity", "--jobs", "1",
                     "--out", str(pytester.path / "out")])
    finally:
        for table in (registry._CLAIMS, registry.BATTERY_CHECKS, KITS, sys.modules):
            table.pop("my_claims" if table is sys.modules else "input_homogeneity", None)
    out = capsys.readouterr().out
    assert code == 0 and any(line.startswith("PASS: 40 cases") for line in out.splitlines()), out
    pytester.makepyfile(test_my_net='''
import torch
import my_claims
import theorycheck as tc

@tc.parametrize_with_claims(lambda: torch.nn.Sequential(torch.nn.Linear(5, 8, bias=False), torch.nn.ReLU(),
                                                        torch.nn.Linear(8, 1, bias=False)).double(),
                            claims=["input_homogeneity"], data=lambda seed: torch.randn(16, 5, dtype=torch.float64),
                            seeds=(0, 1))
def test_bias_free(check):
    check()

@tc.parametrize_with_claims(lambda: torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(),
                                                        torch.nn.Linear(8, 1)).double(),
                            claims=["input_homogeneity"], data=lambda seed: torch.randn(16, 5, dtype=torch.float64),
                            expected_failures={"input_homogeneity": "biases: the theorem says nothing"})
def test_with_bias(check):
    check()
''')
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, xfailed=1)
