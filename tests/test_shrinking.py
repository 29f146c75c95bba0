"""Counterexamples that shrink: an audit instance drawn from a claim's Hypothesis strategy that comes out
unexpected is shrunk by Hypothesis, and the audit records the minimal instance beside the original."""

import json
import textwrap

import pytest

from theorycheck.core import registry, shrink
from theorycheck.core.kit import KITS
from hypothesis import strategies as st

# a user's claim module (registered with --import): its checker is wrong from width 10 on
PLANTED = textwrap.dedent('''
    import dataclasses
    import torch
    from hypothesis import strategies as st
    from theorycheck import Case, ClaimKit, comparison

    kit = ClaimKit(id="planted_width", statement="relu(a z) = a relu(z)", source="tests",
                   assumptions={}, tolerance="u a |z|")

    @dataclasses.dataclass(frozen=True)
    class Net:
        width: int
        depth: int
        scale: float

    @kit.checker(finite=("z",))
    def check_planted_width(z):
        planted = 1e-3 if z.shape[1] >= 10 else 0.0  # the defect: wrong above a size threshold
        residual = float((torch.relu(2 * z) - 2 * torch.relu(z)).abs().max()) + planted
        return kit.decide(assumptions={}, comparisons=[comparison("residual", residual, 0.0, 1e-12, "u a |z|")])

    def build(net, device, dtype):
        z = torch.linspace(-net.scale, net.scale, net.width * net.depth, dtype=getattr(torch, dtype))
        z = z.reshape(net.depth, net.width)
        return Case(run=lambda: check_planted_width(z), size=net.width * net.depth)

    kit.instances_from(lambda device, dtype: st.builds(Net, width=st.integers(1, 20), depth=st.integers(1, 4),
                                                       scale=st.floats(0.5, 100.0)), build)
''')


def test_a_planted_defect_shrinks_to_its_threshold(tmp_path, monkeypatch):
    """The checker is wrong for width >= 10: the audit reports the instances above it violated, and each
    minimal instance sits at the threshold (width exactly 10, depth and scale at their simplest)."""
    from theorycheck.harness.cli import main

    (tmp_path / "planted_claims.py").write_text(PLANTED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code = main(["audit", "--import", "planted_claims", "--claims", "planted_width", "--examples", "6",
                     "--jobs", "1", "--out", "audit"])
        records = [json.loads(line) for line in (tmp_path / "audit" / "results.jsonl").read_text().splitlines()]
        cases = [r for r in records if r["record"] == "case"]
        violated = [r for r in cases if r["status"] == "violated"]
        assert code == 1 and violated and len(violated) < len(cases)
        for record in violated:
            minimal = record["minimal"]
            # width exactly the smallest failing one; depth and scale at Hypothesis' simplest values
            assert minimal["params"] == "Net(width=10, depth=1, scale=1.0)" and minimal["size"] == 10
            assert minimal["status"] == "violated" and minimal["complete"]
            assert "instance_of(Net(width=10" in minimal["reproduce"]
        assert all("minimal" not in r for r in cases if r["status"] == "holds")
        report = (tmp_path / "audit" / "report.md").read_text()
        assert report.index("minimal counterexample") < report.index("original:")
        namespace = {}
        exec(violated[0]["minimal"]["reproduce"].replace("print(", "found = ("), namespace)
        assert namespace["found"].startswith("[theorycheck] planted_width: violated")
    finally:
        registry._CLAIMS.pop("planted_width", None)
        KITS.pop("planted_width", None)


def test_draws_are_the_same_for_a_seed_and_differ_across_seeds():
    strategy = st.tuples(st.integers(1, 64), st.floats(0.0, 1.0))
    assert [shrink.draw(strategy, s) for s in range(5)] == [shrink.draw(strategy, s) for s in range(5)]
    assert len({shrink.draw(strategy, s) for s in range(5)}) == 5


def test_a_shrink_keeps_the_status_and_stops_at_its_budget():
    strategy = st.integers(0, 10_000)
    original = next(v for v in (shrink.draw(strategy, s) for s in range(50)) if v >= 100)
    seed = next(s for s in range(50) if shrink.draw(strategy, s) == original)
    found = shrink.shrink(strategy, seed, original, lambda v: v, keeps=lambda v: v >= 100, seconds=30)
    assert found.params == 100 and found.complete
    assert shrink.shrink(strategy, seed, original, lambda v: v, keeps=lambda v: v >= 100, seconds=0.0) is None


@pytest.mark.parametrize("claim, instance_shrinks, control_shrinks",
                         [("homogeneity", True, False), ("min_norm", True, True), ("random_labels", True, True),
                          ("layer_balance", False, False)])
def test_cases_drawn_from_a_strategy_shrink(claim, instance_shrinks, control_shrinks):
    """homogeneity draws its instances from the generator its property tests use, min_norm (a dataclass claim)
    and random_labels their instances and controls through Hypothesis; a case drawn with numpy has no shrink step (its original
    counterexample stands alone)."""
    from theorycheck.core.registry import CLAIMS

    cases = list(CLAIMS[claim].audit_cases(n=1, seed=0, device="cpu", dtype="float64"))
    assert [(c.kind, c.shrink is not None) for c in cases] == [("instance", instance_shrinks),
                                                               ("control", control_shrinks)]


def test_dataclass_cases_written_for_numpy_shrink_too():
    """A claim whose cases are frozen dataclasses drawn by ``random_case(claim, rng, control)`` with numpy's
    Generator API gets its instances and controls through Hypothesis unchanged: an instance wrong from n = 5
    on shrinks to n = 5, and so does a control the checker misses from n = 5 on."""
    import dataclasses as dc

    import numpy as np

    from theorycheck import ClaimKit, comparison
    from theorycheck.harness.plan import run_case

    kit = ClaimKit(id="planted_samples", statement="", source="tests", assumptions={}, tolerance="0")

    @kit.checker
    def check_planted_samples(n: int, scale: float, control: bool):
        wrong = n < 5 if control else n >= 5  # a control the checker catches only below n = 5
        return kit.decide(assumptions={}, comparisons=[comparison("n", float(wrong), 0.0, 0.0, "planted")])

    @dc.dataclass(frozen=True)
    class Sized:
        claim: str
        n: int
        scale: float
        seed: int
        control: str | None = None

        def verdict(self, device="cpu", dtype="float64"):
            return check_planted_samples(self.n, self.scale, self.control is not None)

    def random_case(claim, rng, control=None):
        assert isinstance(rng.uniform(), float) and isinstance(rng.integers(3), np.integer)  # numpy's scalar types
        return Sized(claim=claim, n=int(rng.integers(1, 40)), scale=float(rng.uniform(0.5, 2.0)),
                     seed=int(rng.integers(2**31)), control=control)

    kit.dataclass_cases(random_case, {"caught": "violated"})
    try:
        cases = list(kit.audit_cases(n=6, seed=1, device="cpu", dtype="float64"))
        assert all(c.shrink is not None for c in cases)
        records = [run_case(c, claim=kit.id, device="cpu", dtype="float64", seed=1) for c in cases]
        for kind, status, control in (("instance", "violated", None), ("control", "holds", "'caught'")):
            unexpected = [r for r in records if r["kind"] == kind and r["status"] == status]
            minimal = f"Sized(claim='planted_samples', n=5, scale=1.0, seed=0, control={control})"
            assert unexpected and all(r["outcome"] == "unexpected" and minimal in r["minimal"]["params"]
                                      for r in unexpected), [r["minimal"]["params"] for r in unexpected]
        assert all("minimal" not in r for r in records if r["outcome"] == "expected")
    finally:
        registry._CLAIMS.pop("planted_samples", None)
        KITS.pop("planted_samples", None)
