"""Time and peak memory of the margin Jacobian A[n] = grad_theta q_n (N x P): per-sample gradients (one
backward pass; FlatNetwork.margin_jacobian) against N batched backward passes of the full batch (the old
path, FlatNetwork.batched_margin_jacobian), in the same run, against n and against the width.

    .venv/bin/python benchmarks/bench_margin_jacobian.py [--ns 64,128,256,512,1024] [--widths 16,64,256]
                                                          [--depth 2] [--repeats 3] [--device cpu]

Each (path, n, width) runs in a fresh child process: the time is the best of ``--repeats`` calls after a
warm-up, the peak memory the rise of the child's maximum resident set (CUDA: max_memory_allocated) over
its state before the first call. Prints a table, the largest difference between the two paths relative
to max |A|, and the slopes of log time and log memory against log n and log width (least squares): the
per-sample path is O(n P) (slope ~1 in n), the batched one O(n^2 P) (slope ~2 in n). ``--train N,...``
also times ``tc.train`` (leaky-ReLU MLP, width 16, to log L = -30) with each path at those n, after a
warm-up, and checks that both take the same steps to the same final loss.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def one(config: dict) -> dict:
    """Build a ReLU MLP (in 8, ``depth`` hidden layers of ``width``) on n random points; time one path."""
    import torch

    from theorycheck.engines.flat_network import FlatNetwork
    from theorycheck.generate.models import NetworkSpec, build_network

    torch.manual_seed(0)
    device = torch.device(config["device"])
    model = build_network(NetworkSpec(in_shape=(8,), widths=(config["width"],) * config["depth"])).double().to(device)
    X = torch.randn(config["n"], 8, dtype=torch.float64, device=device)
    y = torch.randn(config["n"], dtype=torch.float64, device=device).sign()
    net = FlatNetwork(model, X, y)
    theta = net.flatten()
    path = net.margin_jacobian if config["path"] == "per_sample" else net.batched_margin_jacobian
    with torch.no_grad():
        net.margins(theta)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    best = float("inf")
    for _ in range(config["repeats"] + 1):
        started = time.perf_counter()
        _, A = path(theta)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() - base if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)
    return {**config, "seconds": best, "peak_bytes": int(peak), "parameters": int(theta.numel()),
            "checksum": A.double().cpu().numpy().tolist() if config.get("keep") else None}


def run_child(config: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps(config)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(x, y) -> float:
    return float(np.polyfit(np.log(x), np.log(np.maximum(y, 1e-12)), 1)[0])


def train_comparison(ns: list[int]) -> None:
    """tc.train with the per-sample Jacobian against the batched one, same instances, same process."""
    import theorycheck as tc
    from theorycheck.claims.margin import FlowInstance
    from theorycheck.engines.flat_network import FlatNetwork
    from theorycheck.generate.models import NetworkSpec

    per_sample, spec = FlatNetwork.margin_jacobian, NetworkSpec(in_shape=(5,), widths=(16,), activation="leaky_relu")
    warm = FlowInstance(spec=spec, seed=1, n=10, log_loss_target=-5.0)
    tc.train(*warm.build("cpu", "float64"), **warm.train_kwargs())  # one-time imports and compilation
    try:
        for n in ns:
            instance, runs = FlowInstance(spec=spec, seed=1, n=n, log_loss_target=-30.0), {}
            for name, path in (("per_sample", per_sample), ("batched", FlatNetwork.batched_margin_jacobian)):
                FlatNetwork.margin_jacobian = path
                model, X, y = instance.build("cpu", "float64")
                started = time.perf_counter()
                run = tc.train(model, X, y, **instance.train_kwargs())
                runs[name] = (time.perf_counter() - started, run.steps, float(run.records["log_loss"][-1]))
            (new, steps, loss), (old, old_steps, old_loss) = runs["per_sample"], runs["batched"]
            print(f"train n={n}: per-sample {new:.3g} s, batched {old:.3g} s, speed-up {old / new:.2f}x; "
                  f"steps {steps} vs {old_steps}, final log L {loss:.6g} vs {old_loss:.6g}")
    finally:
        FlatNetwork.margin_jacobian = per_sample


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", default="64,128,256,512,1024")
    parser.add_argument("--widths", default="16,64,256")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--train", default="", help="comma-separated n for the tc.train comparison")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return 0
    ns, widths = [int(v) for v in args.ns.split(",")], [int(v) for v in args.widths.split(",")]
    base = dict(depth=args.depth, repeats=args.repeats, device=args.device)
    sweeps = {"n": [dict(n=n, width=widths[len(widths) // 2]) for n in ns],
              "width": [dict(n=ns[len(ns) // 2], width=w) for w in widths]}
    print(f"{'sweep':6} {'path':11} {'n':>6} {'width':>6} {'P':>8} {'seconds':>10} {'peak MiB':>9}")
    for sweep, configs in sweeps.items():
        for path in ("per_sample", "batched"):
            rows = [run_child({**base, **c, "path": path}) for c in configs]
            for r in rows:
                print(f"{sweep:6} {path:11} {r['n']:6d} {r['width']:6d} {r['parameters']:8d} {r['seconds']:10.4g} "
                      f"{r['peak_bytes'] / 2**20:9.3g}")
            x = [r[sweep] for r in rows]
            print(f"{sweep:6} {path:11} slope of log time vs log {sweep}: {slope(x, [r['seconds'] for r in rows]):.2f}; "
                  f"of log peak memory: {slope(x, [max(r['peak_bytes'], 1) for r in rows]):.2f}")
    small = dict(n=ns[0], width=widths[0], keep=True)
    new, old = (np.array(run_child({**base, **small, "path": p})["checksum"]) for p in ("per_sample", "batched"))
    print(f"max |A_per_sample - A_batched| / max |A| at n={ns[0]}, width={widths[0]}: "
          f"{np.abs(new - old).max() / np.abs(old).max():.3g}")
    if args.train:
        train_comparison([int(v) for v in args.train.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
