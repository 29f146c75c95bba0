"""Every registered claim keeps its contract: its instances hold and its controls get their expected
statuses; every verdict's headline numbers agree with its status."""

import pytest

import theorycheck as tc
from theorycheck.core.kit import KITS

CASES_PER_KIND = 2


def _controls_to_cover(claim_id: str) -> int:
    kit = KITS.get(claim_id)
    return max(CASES_PER_KIND, len(kit._controls)) if kit else CASES_PER_KIND


@pytest.mark.parametrize("claim_id", sorted(tc.CLAIMS))
def test_instances_hold_and_controls_are_caught(claim_id):
    claim = tc.CLAIMS[claim_id]
    cases = list(claim.audit_cases(n=_controls_to_cover(claim_id), seed=0, device="cpu", dtype="float64"))
    assert {case.kind for case in cases} == {"instance", "control"}, "a claim ships instances and controls"
    wrong = []
    for case in cases:
        verdict = case.run()
        if verdict.status not in case.expected:
            wrong.append(f"{case.name}: {verdict.status}, expected {sorted(case.expected)}: {verdict.summary()}")
        decided_by_numbers = verdict.statistic <= verdict.bound + verdict.tolerance
        if verdict.status in ("holds", "violated") and decided_by_numbers != (verdict.status == "holds"):
            wrong.append(f"{case.name}: status {verdict.status} contradicts its headline numbers: {verdict.summary()}")
    assert not wrong, "\n".join(wrong)
