"""Time to reach a summed exp loss of 1e-12: theorycheck's gradient-flow engine vs a fixed-step GD loop.

    .venv/bin/python benchmarks/bench_flow.py [--spec "NetworkSpec(...)"] [--n 16] [--seed 0] [--budget 30]

One instance (default: a one-hidden-layer leaky-ReLU MLP on 16 separable points), run twice in this
process: ``tc.train(model, X, y, log_loss_target=log(1e-12))`` (the adaptive Rosenbrock flow on the
log-loss clock), and a plain PyTorch loop theta <- theta - lr grad L with the largest step in
{2, 1, 0.5, ...} whose first 100 steps lower the loss every time. The loop runs until L <= 1e-12 or the
wall-clock budget; if the budget ends first, the steps still needed are extrapolated from the loss rate
over the last half of the loop (L ~ 1/T up to log factors: Lyu & Li 2020, Thm 4.3), and the printed GD
time is marked as extrapolated. Prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

import theorycheck as tc
from theorycheck.claims.margin import FlowInstance
from theorycheck.generate.models import NetworkSpec  # noqa: F401  (for --spec)

TARGET = 1e-12


def gd_loop(model, X, y, lr: float, budget: float, steps: int | None = None):
    """Plain GD on the summed exp loss; returns (steps, seconds, losses) until TARGET, ``steps`` or the budget."""
    params = list(model.parameters())
    losses, started, k = [], time.perf_counter(), 0
    while True:
        loss = torch.exp(-y * model(X).reshape(-1)).sum()
        losses.append(float(loss.detach()))
        if losses[-1] <= TARGET or (steps is not None and k >= steps) or time.perf_counter() - started > budget:
            return k, time.perf_counter() - started, np.array(losses)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        k += 1


def stable_step(instance: FlowInstance) -> float:
    """The largest lr in {2, 1, 0.5, ...} whose first 100 GD steps lower the loss at every step."""
    for lr in (2.0 / 2**i for i in range(20)):
        model, X, y = instance.build()
        _, _, losses = gd_loop(model, X, y, lr, budget=math.inf, steps=100)
        if np.all(np.diff(losses) < 0):
            return lr
    raise RuntimeError("no stable step size found")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="NetworkSpec(in_shape=(4,), widths=(8,), activation='leaky_relu')")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds for the GD loop (default: 30)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    instance = FlowInstance(spec=eval(args.spec), seed=args.seed, n=args.n)

    tc.train(*instance.build(), log_loss_target=0.0)  # warm-up: first-call imports are not the engine's time
    model, X, y = instance.build()
    started = time.perf_counter()
    trajectory = tc.train(model, X, y, log_loss_target=math.log(TARGET))
    engine = time.perf_counter() - started
    print(f"instance: {instance.spec.repr_line()}, n={args.n}, seed={args.seed}")
    print(f"engine: L = {math.exp(trajectory.records['log_loss'][-1]):.3e} in {engine:.2f} s "
          f"({trajectory.steps} steps, {trajectory.rejected} rejected, stop: {trajectory.stop_reason})")

    lr = stable_step(instance)
    model, X, y = instance.build()
    steps, seconds, losses = gd_loop(model, X, y, lr, args.budget)
    if losses[-1] <= TARGET:
        gd, note = seconds, "measured"
    else:
        half = np.arange(len(losses) // 2, len(losses))
        slope = np.polyfit(np.log(half + 1), np.log(losses[half]), 1)[0]  # L ~ k^slope over the last half
        needed = len(losses) * (losses[-1] / TARGET) ** (1 / -slope)
        gd, note = seconds / steps * needed, f"extrapolated: L ~ k^{slope:.2f}, about {needed:.3g} steps needed"
    print(f"fixed-step GD (lr = {lr:g}): L = {losses[-1]:.3e} after {steps} steps in {seconds:.2f} s; "
          f"time to {TARGET:g}: {gd:.3g} s ({note})")
    print(f"ratio GD / engine: {gd / engine:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
