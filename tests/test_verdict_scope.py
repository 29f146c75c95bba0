"""Reports collect only the verdicts that the user's own calls return, never nested pre-checks."""

from theorycheck.verdict import Verdict, collecting_verdicts, reported, unreported


def _decide(claim: str) -> Verdict:
    return Verdict.decide(claim=claim, assumptions={}, conclusion_held=True, statistic=0.0, bound=0.0,
                          tolerance=0.0, tolerance_basis="exact")


@reported
def inner_check() -> Verdict:
    return _decide("inner")


@reported
def outer_check() -> Verdict:
    inner_check()  # a pre-check: not the user's call
    return _decide("outer")


def engine() -> None:
    with unreported():
        inner_check()


def test_only_the_outermost_checker_is_collected():
    with collecting_verdicts() as found:
        outer_check()
        inner_check()
        engine()
        _decide("direct")
    assert [v.claim for v in found] == ["outer", "inner", "direct"]


def test_nothing_leaks_after_an_unreported_block_raises():
    try:
        with unreported():
            raise RuntimeError
    except RuntimeError:
        pass
    with collecting_verdicts() as found:
        inner_check()
    assert [v.claim for v in found] == ["inner"]
