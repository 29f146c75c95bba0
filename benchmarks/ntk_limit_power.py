"""Level and power of check_ntk (slope and limit-offset tests), measured.

Correct instances drawn like the audit's (2-5 Gaussian points in 2-8 dimensions, depth 1 or 2, widths
16..1024, 6 independent seeds) against the analytic NTK: a 'violated' verdict is a false alarm (each test at
99.9%, so <= 2e-3 per verdict if the null models are right). Alternative: the same instances against the
analytic NTK scaled by 1.05 (a limit off by 5 %): the detection rate, and the median detectable offset.
Then the same two rates for one hidden layer at widths 64..4096 with 16 seeds (a run sized to see 5 %).

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
    runs = (("audit-sized", {}, 6, (1, 2)), ("depth 1, widths 64..4096, 16 seeds",
                                           {"widths": (64, 256, 1024, 4096)}, 16, (1, 1)))
    for (name, kernel), (size, options, count, depths) in [(k, r) for r in runs for k in (
            ("analytic NTK (correct)", analytic_ntk), ("analytic NTK x 1.05", scaled))]:
        name = f"{size}: {name}"
        statuses, detectable = {}, {1: [], 2: []}
        for _ in range(instances):
            n, d, depth = int(rng.integers(2, 6)), int(rng.integers(2, 9)), int(rng.integers(depths[0], depths[1] + 1))
            X = torch.as_tensor(rng.standard_normal((n, d)), dtype=torch.float64)
            seeds = tuple(int(s) for s in rng.integers(2**31, size=count))
            verdict = tc.check_ntk(X, seeds=seeds, depth=depth, kernel=kernel, **options)
            statuses[verdict.status] = statuses.get(verdict.status, 0) + 1
            detectable[depth].append(verdict.details.get("detectable_offset", np.nan))
        medians = ", ".join(f"depth {depth} {np.nanmedian(values):.4f}" for depth, values in detectable.items() if values)
        print(f"{name}: {instances} instances, statuses {statuses}, 'violated' rate "
              f"{statuses.get('violated', 0) / instances:.4f}; median detectable offset {medians}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
