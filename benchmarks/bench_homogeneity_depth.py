"""check_homogeneity's time against depth: bias-free ReLU MLPs of one width, the whole check (Euler sums,
scalings, rescaling, the model's own pass), and the log-log slope of time in depth (goal <= 1.2).

    .venv/bin/python benchmarks/bench_homogeneity_depth.py [--depths 8 16 32 64] [--width 32] [--batch 16]
        [--dtype float64] [--device cpu]

Each depth: a warm-up at depth 2, then the fastest of ``--repeats`` runs. The per-layer scalings cost one pass
per layer and scale, each pass O(depth): depth^2. Scaling every layer at once (each layer's weight at a and
1/a in alternation, every layer's pre-activations brought to 10^j together) needs O(1) passes, O(depth) in
all; the per-layer passes run only where a joint scaling fails, to name the layer.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import theorycheck as tc


def mlp(width: int, depth: int, inputs: int = 10) -> torch.nn.Sequential:
    sizes = [inputs] + [width] * (depth - 1)
    layers = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out, bias=False), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 1, bias=False))


def time_check(depth: int, width: int, batch: int, dtype: torch.dtype, device: str, repeats: int):
    torch.manual_seed(depth)
    model = mlp(width, depth).to(device, dtype)
    x = torch.randn(batch, 10, dtype=dtype, device=device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        verdict = tc.check_homogeneity(model, x)
        seconds.append(time.perf_counter() - start)
    return min(seconds), verdict


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    time_check(2, args.width, args.batch, dtype, args.device, 1)
    print(f"width {args.width}, batch {args.batch}, {args.dtype}, {args.device}")
    print(" depth | seconds | status | scalings")
    seconds = []
    for depth in args.depths:
        elapsed, verdict = time_check(depth, args.width, args.batch, dtype, args.device, args.repeats)
        seconds.append(elapsed)
        print(f"{depth:>6} | {elapsed:7.3f} | {verdict.status:>6} | {verdict.details.get('scaling_mode', '-')}")
    slope = float(np.polyfit(np.log(args.depths), np.log(seconds), 1)[0])
    print(f"log-log slope of time in depth: {slope:.2f} (goal <= 1.2: {'met' if slope <= 1.2 else 'not met'})")


if __name__ == "__main__":
    main()
