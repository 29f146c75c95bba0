"""Level and power of check_ntk (slope and limit-offset tests), measured.

Correct instances drawn like the audit's (2-5 Gaussian points in 2-8 dimensions, depth 1 or 2, widths
16..1024, 6 independent seeds) against the analytic NTK: a 'violated' verdict is a false alarm (each test at
99.9%, so <= 2e-3 per verdict if the null models are right). Alternative: the same instances against the
analytic NTK scaled by 1.05 (a limit off by 5 %): the detection rate, and the median detectable offset.

    .venv/bin/python benchmarks/ntk_limit_power.py [instances]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import theorycheck as tc
from theorycheck.claims.ntk import analytic_ntk


def scaled(X, depth):
    return 1.05 * analytic_ntk(X, depth)


def main(instances: int = 200) -> None:
    rng = np.random.default_rng(20261208)
    for name, kernel in (("analytic NTK (correct)", analytic_ntk), ("analytic NTK x 1.05", scaled)):
        statuses, detectable = {}, {1: [], 2: []}
        for _ in range(instances):
            n, d, depth = int(rng.integers(2, 6)), int(rng.integers(2, 9)), int(rng.integers(1, 3))
            X = torch.as_tensor(rng.standard_normal((n, d)), dtype=torch.float64)
            seeds = tuple(int(s) for s in rng.integers(2**31, size=6))
            verdict = tc.check_ntk(X, seeds=seeds, depth=depth, kernel=kernel)
            statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
            detectable[depth].append(verdict.details.get("detectable_offset", np.nan))
        print(f"{name}: {instances} instances, statuses {statuses}, 'violated' rate "
              f"{statuses.get('violated', 0) / instances:.4f}; median detectable offset depth 1 "
              f"{np.nanmedian(detectable[1]):.4f}, depth 2 {np.nanmedian(detectable[2]):.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
