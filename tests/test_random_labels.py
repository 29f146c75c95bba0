"""random_labels: Zhang et al.'s construction fits any labels; a broken construction is caught."""

import pytest
import torch

import theorycheck as tc
from theorycheck.claims import random_labels


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("n, d", [(1, 3), (50, 2), (300, 10)])
def test_any_labels_are_fitted_exactly(dtype, n, d):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(n), dtype=dtype)
    y = torch.randn(n, generator=torch.Generator().manual_seed(d), dtype=dtype)  # arbitrary real labels too
    verdict = tc.assert_random_labels(X, y, seed=3)
    assert verdict.details["weights"] == 2 * n + d and verdict.statistic <= 1.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_construction_off_by_more_than_roundoff_is_violated(monkeypatch, dtype):
    build = random_labels.interpolating_network

    def off_by_a_little(X, y, direction):
        net = build(X, y, direction)
        with torch.no_grad():  # the last unit's weight 1% off: the fit fails at the largest projection
            net[2].weight[0, -1] += 0.01 * net[2].weight.abs().max()
        return net

    monkeypatch.setattr(random_labels, "interpolating_network", off_by_a_little)
    X = torch.randn(40, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    verdict = tc.check_random_labels(X, torch.sign(torch.randn(40, dtype=dtype)), seed=1)
    assert verdict.status == "violated" and verdict.statistic > verdict.bound + verdict.tolerance


def test_contradictory_duplicates_are_vacuous_and_nan_is_inconclusive():
    X = torch.randn(6, 2, dtype=torch.float64)
    X[5] = X[0]
    y = torch.tensor([1.0, -1, 1, -1, 1, -1], dtype=torch.float64)
    duplicate = tc.check_random_labels(X, y)
    assert duplicate.status == "vacuous" and "distinct" in duplicate.failed_assumptions[0]
    X[1, 0] = float("nan")
    assert tc.check_random_labels(X, y).status == "inconclusive"


def test_bad_input_names_the_expected_shape():
    with pytest.raises(tc.InvalidArgument, match=r"one sample count across \['X', 'y'\] for 'random_labels', but got X: 4, y: 3"):
        tc.check_random_labels(torch.randn(4, 2), torch.ones(3))
