"""Euler sums of the homogeneity check: hooks (one backward pass per output column) vs the old
per-layer ``jacrev`` Jacobian, time and peak memory against batch, width and depth.

    .venv/bin/python benchmarks/bench_homogeneity.py [--quick] [--device cpu]

Each measurement runs in a fresh process (peak memory: the rise of the peak resident set on CPU,
``torch.cuda.max_memory_allocated`` on CUDA). Bias-free ReLU MLPs in float64 on 10 inputs; the sweeps
vary one of batch (width 256, depth 3), width (batch 32, depth 3), depth (batch 64, width 256). Prints a
row per size and the log-log slope of time and memory per path, fitted over the sweep, and checks that
both paths agree (relative difference of the Euler sums and of the absolute sums).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from torch.func import functional_call, jacrev


def jacrev_sums(model, x, names):
    """The old path, kept as the reference: per layer, the Jacobian of every output entry (jacrev over
    the batch), times W; returns the Euler sums and the sums of absolute terms per output entry."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    euler, absolute = {}, {}
    for name in names:
        def output(v, name=name):
            state = {n: b.clone() for n, b in buffers.items()}
            return functional_call(model, ({**params, name: v}, state), (x,)).reshape(-1)

        w = params[name]
        products = jacrev(output)(w).reshape(-1, w.numel()) * w.reshape(1, -1)
        euler[name], absolute[name] = products.sum(1), products.abs().sum(1)
    return euler, absolute


def mlp(width: int, depth: int, inputs: int = 10):
    sizes = [inputs] + [width] * (depth - 1)
    layers = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out, bias=False), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-1], 1, bias=False)).double()


def _run(path, model, x):
    from theorycheck.engines.euler import euler_sums

    names = [n for n, _ in model.named_parameters()]
    if path == "new":
        sums = euler_sums(model, {n: p.detach() for n, p in model.named_parameters()}, {}, names, x)
        return names, sums.euler, sums.absolute
    return (names, *jacrev_sums(model, x, names))


def _measure(path: str, batch: int, width: int, depth: int, device: str, repeats: int = 3) -> dict:
    """One size in this process (called in a child, after a warm-up at a tiny size): the fastest of
    ``repeats`` runs, the peak memory of the first, and the sums."""
    torch.manual_seed(0)
    _run(path, mlp(8, depth).to(device), torch.randn(4, 10, dtype=torch.float64, device=device))
    model = mlp(width, depth).to(device)
    x = torch.randn(batch, 10, dtype=torch.float64, device=device)
    seconds, peak = [], 0
    for repeat in range(repeats):
        if seconds and seconds[0] > 2.0:  # slow enough to time once
            break
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        names, euler, absolute = _run(path, model, x)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        if repeat == 0:
            peak = (torch.cuda.max_memory_allocated() if device == "cuda"
                    else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    return {"seconds": min(seconds), "peak_bytes": peak,
            "euler": torch.cat([euler[n] for n in names]).tolist(),
            "absolute": torch.cat([absolute[n] for n in names]).tolist()}


def measure(path, batch, width, depth, device):
    code = (f"import json, sys; sys.path.insert(0, 'benchmarks'); import bench_homogeneity as b; "
            f"print(json.dumps(b._measure({path!r}, {batch}, {width}, {depth}, {device!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(xs, ys, floor: float) -> float:
    """Least-squares slope of log y against log x (y below ``floor``, the resolution, taken as floor)."""
    return float(np.polyfit(np.log(xs), np.log(np.maximum(ys, floor)), 1)[0])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sweeps")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    sweeps = {
        "batch": [(b, 256, 3) for b in ((16, 32, 64) if args.quick else (32, 64, 128, 256, 512))],
        "width": [(32, w, 3) for w in ((64, 128, 256) if args.quick else (64, 128, 256, 512, 1024))],
        "depth": [(64, 256, d) for d in ((2, 3, 4) if args.quick else (2, 3, 4, 6, 8))],
    }
    for axis, sizes in sweeps.items():
        print(f"\n{axis:>6} | new s    new MB | old s    old MB | speed-up | max rel diff euler / abs")
        rows = {"new": [], "old": []}
        for batch, width, depth in sizes:
            new, old = (measure(p, batch, width, depth, args.device) for p in ("new", "old"))
            rows["new"].append(new)
            rows["old"].append(old)
            euler_diff = max(abs(a - b) / max(abs(c), 1e-300) for a, b, c in zip(new["euler"], old["euler"], old["absolute"]))
            abs_diff = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(new["absolute"], old["absolute"]))
            value = {"batch": batch, "width": width, "depth": depth}[axis]
            print(f"{value:>6} | {new['seconds']:7.3f} {new['peak_bytes'] / 2**20:8.1f} | {old['seconds']:7.3f} "
                  f"{old['peak_bytes'] / 2**20:8.1f} | {old['seconds'] / new['seconds']:7.1f}x | "
                  f"{euler_diff:.1e} / {abs_diff:.1e}")
        values = [{"batch": s[0], "width": s[1], "depth": s[2]}[axis] for s in sizes]
        for path in ("new", "old"):
            print(f"  {path}: log-log slope in {axis}: time {slope(values, [r['seconds'] for r in rows[path]], 1e-6):.2f}, "
                  f"memory {slope(values, [r['peak_bytes'] for r in rows[path]], 4096):.2f}")


if __name__ == "__main__":
    main()
