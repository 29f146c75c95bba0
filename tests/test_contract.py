"""The checker contract over every registered claim (a user's too): Hypothesis replaces a tensor, array or
float of the claim's own audit instance by a degenerate one (NaN, Inf, empty, zero width, a zero row, all
zeros, one sample fewer, integers, an extra axis) and the checker must answer with an InvalidArgument
(expected / received / fix) or a verdict, inconclusive where nothing can be decided; never a raw exception,
never a hang. The ``ci`` profile gives each claim a few seconds of calls; ``pytest -m slow`` tries every
degenerate input of every claim."""

import functools
import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theorycheck as tc
from theorycheck.core import registry
from theorycheck.core.kit import KITS
from theorycheck.harness import contract

SECONDS_PER_CLAIM = 2.0  # the ci profile's time for one claim's degenerate calls (at least one call)


@functools.lru_cache(maxsize=None)
def _recorded(claim: str):
    """The claim's recorded checker call, its degenerate inputs, and the seconds the recording instance took
    (an upper estimate of one call: it built the instance too)."""
    start = time.perf_counter()
    arguments = contract.recorded_call(claim)
    return arguments, contract.mutations(arguments), time.perf_counter() - start


def _assert_contract(claim: str, where: str, mutation: str) -> None:
    arguments, _, _ = _recorded(claim)
    outcome = contract.call_degenerate(claim, arguments, where, mutation)
    assert outcome.ok, f"{claim}: {where} <- {mutation}: {outcome.got}"


@pytest.mark.parametrize("claim", sorted(tc.CLAIMS))
def test_degenerate_input_gets_a_refusal_or_an_honest_verdict(claim):
    _, combos, seconds = _recorded(claim)
    examples = max(1, min(len(combos), int(SECONDS_PER_CLAIM / max(seconds, 1e-3))))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None)
    @given(st.sampled_from(combos))
    def run(combo):
        _assert_contract(claim, *combo)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("claim", sorted(tc.CLAIMS))
def test_every_degenerate_input_of_every_claim(claim):
    for combo in _recorded(claim)[1]:
        _assert_contract(claim, *combo)


USER_CLAIM = textwrap.dedent('''
    import math
    import torch
    from theorycheck import Case, ClaimKit, comparison

    kit = ClaimKit(id="user_mean_bound", statement="|mean(x)| <= max|x|", source="a user's module",
                   assumptions={"rows": "at least one row"}, tolerance="n u max|x|")

    @kit.checker(samples=("x",))
    def check_user_mean_bound(x):
        bound = float(x.abs().max())
        return kit.decide(assumptions={"rows": x.shape[0] >= 1},
                          comparisons=[comparison("|mean|", float(x.mean().abs()), bound,
                                                  x.numel() * 2.0 ** -52 * bound, "n u max|x|")])

    @kit.instances
    def instances(rng, device, dtype):
        x = torch.as_tensor(rng.normal(size=(5, 3)))
        return Case(run=lambda: check_user_mean_bound(x), size=15)
''')


def test_a_claim_registered_with_import_meets_the_contract(tmp_path, monkeypatch):
    """``theorycheck contract --import MODULE`` checks a user's claim the same way."""
    from theorycheck.harness.cli import main

    (tmp_path / "user_claims.py").write_text(USER_CLAIM)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["contract", "--import", "user_claims", "--claims", "user_mean_bound"]) == 0
        assert {o.mutation for o in contract.outcomes("user_mean_bound")} >= set(contract.STRICT)
    finally:
        registry._CLAIMS.pop("user_mean_bound", None)
        KITS.pop("user_mean_bound", None)


def test_the_contract_catches_a_raw_exception_and_a_decided_verdict_on_nan(monkeypatch):
    """A check that cannot fail is a defect: a checker that crashes on empty input, and one that decides
    on NaN, are both reported."""
    kit = tc.ClaimKit(id="careless", statement="", source="tests", assumptions={}, tolerance="0")

    @kit.checker  # no input guard declared
    def check_careless(x):
        return kit.decide(assumptions={}, comparisons=[tc.comparison("x", float(x.sum() + x[0, 0]), 1e9, 0.0, "any")])

    kit.instances(lambda rng, device, dtype: tc.Case(run=lambda: check_careless(__import__("torch").ones(3, 2))))
    try:
        outcomes = {o.mutation: o for o in contract.outcomes("careless")}
        assert not outcomes["empty"].ok and "raw IndexError" in outcomes["empty"].got
        assert not outcomes["nan"].ok and "verdict 'violated'" in outcomes["nan"].got
        assert outcomes["zero_row"].ok
    finally:
        registry._CLAIMS.pop("careless", None)
        KITS.pop("careless", None)
