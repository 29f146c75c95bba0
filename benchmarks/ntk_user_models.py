"""The NTK claims on users' networks (``model=``, a factory of widths): how often a correct network is judged
anything but ``holds`` (its declared-network measurement a false alarm: ``vacuous``), and how often networks that
are not the declared one are caught (``vacuous``).

Correct: x -> a^T relu(W x / sqrt(d)) / sqrt(width), N(0, 1) weights, no bias, on 2-5 Gaussian points in 2-8
dimensions, widths 64..512 x 4 seeds (check_ntk, depth 1). Not declared: nn.Linear's default init
(uniform(+-1/sqrt(fan-in)), variance 1/(3 fan-in)), weights of variance 0.9 (a 5 % error of the limit's scale), tanh
declared relu. The built-in network at the same widths and seeds is the reference for the width-limit test's own
level at this small run.

    .venv/bin/python benchmarks/ntk_user_models.py [instances]
"""

from __future__ import annotations

import collections
import math
import sys

import numpy as np
import torch

import theorycheck as tc


class Net(torch.nn.Module):
    def __init__(self, width, d, phi=torch.relu, std=1.0, init=True):
        super().__init__()
        self.hidden = torch.nn.Linear(d, width, bias=False)
        self.out = torch.nn.Linear(width, 1, bias=False)
        if init:
            for layer in (self.hidden, self.out):
                torch.nn.init.normal_(layer.weight, std=std)
        self.phi, self.d = phi, d

    def forward(self, x):
        return self.out(self.phi(self.hidden(x) / math.sqrt(self.d))) / math.sqrt(self.out.in_features)


VARIANTS = {"correct": {}, "default init": {"init": False}, "variance 0.9": {"std": math.sqrt(0.9)},
            "tanh declared relu": {"phi": torch.tanh}}


def main(instances: int = 200) -> None:
    rng = np.random.default_rng(20261208)
    counts = collections.defaultdict(collections.Counter)
    for _ in range(instances):
        n, d = int(rng.integers(2, 6)), int(rng.integers(2, 9))
        X = torch.as_tensor(rng.standard_normal((n, d)))
        seeds = tuple(int(s) for s in rng.integers(2**31, size=4))
        builtin = tc.check_ntk(X, depth=1, widths=(64, 128, 256, 512), seeds=seeds)
        counts["built-in network, same widths and seeds"][builtin.status] += 1
        for name, options in VARIANTS.items():
            verdict = tc.check_ntk(X, depth=1, model=lambda w: Net(w, d, **options).double(),
                                   widths=(64, 128, 256, 512), seeds=seeds)
            counts[name][verdict.status] += 1
            if name == "correct" and verdict.status != "holds":
                print(f"correct network, n = {n}, d = {d}, seeds {seeds}: {verdict.status}: {verdict.reason}")
    for name, statuses in counts.items():
        total = sum(statuses.values())
        print(f"{name}: {total} instances, statuses {dict(statuses)}, vacuous rate {statuses['vacuous'] / total:.4f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
