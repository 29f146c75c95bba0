"""Reports collect only the verdicts that the user's own calls return, never nested pre-checks."""

from theorycheck.core.kit import ClaimKit, comparison
from theorycheck.core.verdict import Verdict, collecting_verdicts, reported, unreported
from theorycheck.core.verdict import _decide as _verdict_decide  # the rule itself, below the kit


def _decide(claim: str) -> Verdict:
    kit = ClaimKit(id=claim, statement="", source="tests", assumptions={}, tolerance="0")
    return kit.decide(assumptions={}, comparisons=[comparison("exact", 0.0, 0.0, 0.0, "exact")])


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


def test_a_recorder_pre_check_is_not_a_users_verdict():
    import torch

    import theorycheck as tc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(4, 1, bias=False)).double()
    X, y = torch.randn(8, 3, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with collecting_verdicts() as found:
        recorder = tc.Recorder(model, optimizer, X, y)
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.softplus(-y * model(X).squeeze(1)).mean().backward()
            optimizer.step()
        recorder.close()
        verdict = tc.check_layer_balance(recorder.trajectory)
    assert [v.claim for v in found] == ["layer_balance"] and found[0] is verdict


def test_train_then_check_kkt_collects_one_verdict():
    import torch

    import theorycheck as tc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False)).double()
    X = torch.tensor([[1.0, 0.5], [-1.0, -0.2], [0.8, -0.1], [-0.6, 0.4]], dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    with collecting_verdicts() as found:
        trajectory = tc.train(model, X, y, log_loss_target=-40.0)
        verdict = tc.check_kkt(model, X, y, trajectory=trajectory)
    assert [v.claim for v in found] == ["kkt"] and found[0] is verdict


def test_an_undecided_assumption_is_left_out_and_makes_the_verdict_inconclusive():
    fields = dict(claim="c", statistic=0.0, bound=0.0, tolerance=0.0, tolerance_basis="b")
    open_ = _verdict_decide(assumptions={"a": True, "b": None}, conclusion_held=True, **fields)
    assert open_.status == "inconclusive" and open_.assumptions == {"a": True}
    assert open_.details["undecided_assumptions"] == ["b"]
    outside = _verdict_decide(assumptions={"a": False, "b": None}, conclusion_held=True, **fields)
    assert outside.status == "vacuous" and outside.failed_assumptions == ["a"]


def test_an_undecided_conclusion_is_inconclusive_unless_an_assumption_fails():
    """undecided=True (a run too short, a test without power) yields to a failed assumption; inconclusive=True
    (observations not to be trusted) does not."""
    fields = dict(claim="c", statistic=0.0, bound=0.0, tolerance=0.0, tolerance_basis="b")
    assert _verdict_decide(assumptions={"a": True}, conclusion_held=False, undecided=True, **fields).status == "inconclusive"
    assert _verdict_decide(assumptions={"a": False}, conclusion_held=False, undecided=True, **fields).status == "vacuous"
    assert _verdict_decide(assumptions={"a": True, "b": None}, conclusion_held=False, undecided=True,
                          **fields).status == "inconclusive"
    assert _verdict_decide(assumptions={"a": False}, conclusion_held=False, inconclusive=True,
                          **fields).status == "inconclusive"
