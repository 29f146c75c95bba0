"""Level and power of check_double_descent: false alarms on correct Monte Carlo, detection of wrong formulas and
of non-Gaussian designs.

Gaussian design, instances drawn by the audit's generator (n in [12, 30], sigma^2 >= r^2, 60-120 draws per p,
the audit's grid): the per-draw conditional risks E[risk | X] (risks_are="conditional") and raw risks
||X^+ y - beta||^2 (risks_are="raw"), each judged with its own exact sd, the raw ones also with the conditional sd
(the old behaviour); 'violated' is a false alarm. Power: the same risks scaled by 1.5 (a formula off by 50 %),
and risks observed on a Rademacher design (observe_risks: the design is measured, so 'vacuous' is a detection);
observe_risks on the Gaussian design and min-norm (labels integrated out), as given and scaled by 1.5 (the
design measurement's false alarms are 'vacuous' there). Random ReLU features (features="relu", d in [50, 60], psi1 in {0.5, 1.5} x {6, 12}, 20 draws of a
500-point test set: the audit's instances, which take psi1 = 6 only, and psi1 = 12): false alarms, and detection of the two wrong formulas (zeta^2 and the typo'd
transcription, one psi1 below the threshold) and of the test errors scaled by 1.05 (a formula off by 5 %).

    .venv/bin/python benchmarks/double_descent_level.py [instances]
"""

from __future__ import annotations

import collections
import sys

import numpy as np

import theorycheck as tc
from theorycheck.claims.double_descent import (DoubleDescentCase, ObservedRisks, conditional_risks, min_norm,
                                                observe_risks, random_case, raw_risks)
from theorycheck.engines.random_features import random_features_draws


def rademacher(rng, n, p):
    return rng.choice([-1.0, 1.0], size=(n, p))


def gaussian(instances: int, rng: np.random.Generator) -> dict:
    counts = collections.defaultdict(collections.Counter)
    done = 0
    while done < instances:
        case = random_case("double_descent", np.random.default_rng(rng.integers(2**63)))
        if case.features != "gaussian":
            continue
        done += 1
        n = case.n
        grid = sorted({max(1, n // 4), n // 2, n - 8, n - 1, n, n + 1, n + 8, 2 * n, 4 * n} - {0})
        given = dict(n=n, r2=case.r2, sigma2=case.sigma2)
        conditional = {p: conditional_risks(n, p, r2=case.r2, sigma2=case.sigma2, draws=case.draws,
                                            seed=case.seed) for p in grid}
        raw = {p: raw_risks(n, p, r2=case.r2, sigma2=case.sigma2, draws=case.draws, seed=case.seed) for p in grid}
        signs = observe_risks(min_norm, rademacher, draws=case.draws, seed=case.seed, **given)
        observed = observe_risks(draws=case.draws, seed=case.seed, **given)
        for name, verdict in (
                ("conditional", tc.check_double_descent(conditional, **given)),
                ("raw", tc.check_double_descent(raw, risks_are="raw", **given)),
                ("raw judged as conditional", tc.check_double_descent(raw, **given)),
                ("conditional x 1.5", tc.check_double_descent({p: 1.5 * v for p, v in conditional.items()}, **given)),
                ("raw x 1.5", tc.check_double_descent({p: 1.5 * v for p, v in raw.items()}, risks_are="raw", **given)),
                ("min-norm on a Gaussian design (observed)",
                 tc.check_double_descent(observed, risks_are=observed.kind, **given)),
                ("min-norm on a Gaussian design (observed) x 1.5", tc.check_double_descent(
                    ObservedRisks({p: 1.5 * v for p, v in observed.items()}), risks_are=observed.kind, **given)),
                ("Rademacher design (observed)", tc.check_double_descent(signs, risks_are=signs.kind, **given))):
            counts[name][verdict.status] += 1
    return counts


def random_features(instances: int, rng: np.random.Generator) -> dict:
    counts = collections.defaultdict(collections.Counter)
    for _ in range(instances):
        draw = np.random.default_rng(rng.integers(2**63))
        d = 2 * int(draw.integers(25, 31))
        psi1 = ((0.5, 1.5)[int(draw.integers(2))], (6.0, 12.0)[int(draw.integers(2))])
        case = DoubleDescentCase(n=3 * d, draws=20, r2=1.0, sigma2=0.25, seed=int(draw.integers(2**31)),
                                 features="relu", psi1=psi1)
        correct = case.verdict()
        counts["relu features, correct"][correct.status] += 1
        for control in ("zeta-squared", "typo-transcription"):
            wrong = DoubleDescentCase(**{**case.__dict__, "control": control, "psi1": psi1[:1]}).verdict()
            counts[f"relu features, {control} formula"][wrong.status] += 1
        errors = {round(p * d): 1.05 * random_features_draws(d, 3 * d, round(p * d), draws=20, test_points=500,
                                                             seed=case.seed).risks(1.0, 0.25) for p in psi1}
        scaled = tc.check_double_descent(errors, n=3 * d, d=d, r2=1.0, sigma2=0.25, features="relu")
        counts["relu features, errors x 1.05"][scaled.status] += 1
    return counts


def main(instances: int = 200) -> None:
    rng = np.random.default_rng(20261209)
    for counts in (gaussian(instances, rng), random_features(instances, rng)):
        for name, statuses in counts.items():
            total = sum(statuses.values())
            print(f"{name}: {total} instances, statuses {dict(statuses)}, violated rate "
                  f"{statuses['violated'] / total:.4f}, vacuous rate {statuses['vacuous'] / total:.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
