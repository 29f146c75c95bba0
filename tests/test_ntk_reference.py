"""The analytic NTKs of theorycheck.claims.ntk against frozen neural-tangents values (stax, W_std = 1, no bias,
NTK parameterization, depths 1-4; tests/fixtures/make_ntk_neural_tangents.py says how they were made)."""

import json
import math
import pathlib

import numpy as np
import pytest

from theorycheck.claims.ntk import analytic_ntk

FIXTURE = json.loads((pathlib.Path(__file__).parent / "fixtures" / "ntk_neural_tangents.json").read_text())
EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=lambda c: f"{c['activation']}-depth{c['depth']}")
def test_analytic_ntk_matches_neural_tangents(case):
    """Pairs of inputs at cosine +-1 (a point with itself, with 2x or with -x): an error eps in a cosine near 1
    moves its arccos by up to sqrt(2 eps), once per layer, so |ours - theirs| <= depth sqrt(2 eps) max|Theta|
    there (their diagonal cosines are not exactly 1, ours are); every other entry to 16 depth eps max|Theta|
    (depth recursions of a few rounded operations each)."""
    X = np.array(FIXTURE["X"])
    reference, ours = np.array(case["ntk"]), analytic_ntk(X, case["depth"], case["activation"])
    norms = np.linalg.norm(X, axis=1)
    aligned = np.abs(X @ X.T / np.outer(norms, norms)) >= 1 - 1e-12
    scale = np.abs(reference).max()
    error = np.abs(ours - reference) / scale
    assert aligned.sum() > len(X)  # the fixture holds parallel, antipodal and duplicated points
    assert error[~aligned].max() <= 16 * case["depth"] * EPS
    assert error[aligned].max() <= case["depth"] * math.sqrt(2 * EPS)
