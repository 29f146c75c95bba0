"""False-alarm rate of check_double_descent on correct Monte Carlo, conditional and raw per-draw risks.

Instances drawn by the audit's generator (n in [12, 30], sigma^2 >= r^2, 60-120 draws per p, the audit's
grid); for each, the per-draw conditional risks E[risk | X] (risks_are="conditional") and raw risks
||X^+ y - beta||^2 of one draw of X and of the noise (risks_are="raw"), each judged with its own exact sd, and
the raw ones also with the conditional sd (the old behaviour). 'violated' is a false alarm.

    .venv/bin/python benchmarks/double_descent_level.py [instances]
"""

from __future__ import annotations

import sys

import numpy as np

import theorycheck as tc
from theorycheck.claims.double_descent import conditional_risks, random_case, raw_risks


def main(instances: int = 200) -> None:
    rng = np.random.default_rng(20261209)
    counts = {"conditional": {}, "raw": {}, "raw judged as conditional": {}}
    for _ in range(instances):
        case = random_case("double_descent", np.random.default_rng(rng.integers(2**63)))
        n = case.n
        grid = sorted({max(1, n // 4), n // 2, n - 8, n - 1, n, n + 1, n + 8, 2 * n, 4 * n} - {0})
        given = dict(n=n, r2=case.r2, sigma2=case.sigma2)
        conditional = {p: conditional_risks(n, p, r2=case.r2, sigma2=case.sigma2, draws=case.draws,
                                            seed=case.seed) for p in grid}
        raw = {p: raw_risks(n, p, r2=case.r2, sigma2=case.sigma2, draws=case.draws, seed=case.seed) for p in grid}
        for name, verdict in (("conditional", tc.check_double_descent(conditional, **given)),
                              ("raw", tc.check_double_descent(raw, risks_are="raw", **given)),
                              ("raw judged as conditional", tc.check_double_descent(raw, **given))):
            counts[name][verdict.status] = counts[name].get(verdict.status, 0) + 1
    for name, statuses in counts.items():
        print(f"{name}: {instances} correct instances, statuses {statuses}, false-alarm rate "
              f"{statuses.get('violated', 0) / instances:.4f} (alpha = 1e-3)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
