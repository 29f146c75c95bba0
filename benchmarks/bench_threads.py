"""One intra-op thread against two, per problem size: where does a second torch thread start to pay?

    python benchmarks/bench_threads.py [--repeats 3]

Times tc.train (gradient flow, 30 steps; GD, 60 steps) on bias-free leaky-ReLU MLPs and the empirical NTK
(depth 2) at 1 and at 2 intra-op threads, interleaved, median of --repeats, with theorycheck's size rule
(theorycheck.core.threads.SMALL_WORK) switched off so that both settings run as set. Columns: parameters P,
samples N, P x N (the size the rule reads), milliseconds at 1 and 2 threads, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import theorycheck as tc  # noqa: E402
from theorycheck.claims.ntk import empirical_ntk  # noqa: E402
from theorycheck.core import threads  # noqa: E402


def network(d: int, width: int, depth: int) -> nn.Sequential:
    torch.manual_seed(0)
    layers, fan_in = [], d
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=False), nn.LeakyReLU(0.1)]
        fan_in = width
    return nn.Sequential(*layers, nn.Linear(fan_in, 1, bias=False)).double()


def training(d: int, width: int, depth: int, n: int, method: str):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.where(X[:, 0] >= 0, 1.0, -1.0).double()
    steps = dict(method="flow", steps=30) if method == "flow" else dict(method="gd", lr=0.01, steps=60)
    P = sum(p.numel() for p in network(d, width, depth).parameters())
    return P, lambda: tc.train(network(d, width, depth), X, y, snapshots=False, **steps)


def kernel(d: int, width: int, n: int):
    X = torch.randn(n, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return d * width + width * width + width, lambda: empirical_ntk(X, width, 2, seeds=[3])


def timed(run, repeats: int) -> tuple[float, float]:
    """Median seconds at 1 and at 2 intra-op threads, interleaved, after one untimed run."""
    before, times = torch.get_num_threads(), {1: [], 2: []}
    run()
    for _ in range(repeats):
        for count in times:
            torch.set_num_threads(count)
            started = time.perf_counter()
            run()
            times[count].append(time.perf_counter() - started)
    torch.set_num_threads(before)
    return statistics.median(times[1]), statistics.median(times[2])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timings per setting (default: 3)")
    args = parser.parse_args(argv)
    threads.user_chose_threads = lambda: True  # the size rule off: both settings run as set
    jobs = []
    for d, width, depth in [(4, 4, 1), (8, 16, 2), (16, 64, 2), (32, 128, 2), (32, 256, 2)]:
        for n in (10, 100, 1000):
            for method in ("flow", "gd"):
                if method == "gd" or (n < 1000 and n * (d * width + width * width) <= 3e6):
                    jobs.append((f"{method} {d}-{width}x{depth} n={n}", n, *training(d, width, depth, n, method)))
    for width in (64, 256, 1024, 2048):
        for n in (5, 50):
            jobs.append((f"ntk w={width} depth2 n={n}", n, *kernel(8, width, n)))
    print(f"{'problem':<30}{'P':>9}{'N':>6}{'PxN':>10}{'1 thr ms':>10}{'2 thr ms':>10}{'2/1':>7}")
    for name, n, P, run in jobs:
        one, two = timed(run, args.repeats)
        print(f"{name:<30}{P:>9}{n:>6}{P * n:>10.3g}{one * 1e3:>10.1f}{two * 1e3:>10.1f}{two / one:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
