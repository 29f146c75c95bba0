"""The flow engine's cost per accepted step with the direct pass of plain stacks against functional_call.

    .venv/bin/python benchmarks/bench_direct_pass.py [--repeats 5] [--steps 200]

Instances: small MLPs and CNNs of the margin claim's audit family (ReLU, leaky ReLU, ReLU^3, max pooling),
float64, ``tc.train`` flows capped at --steps accepted steps. Each repeat runs every instance on both roads,
interleaved (load from other processes hits both alike), after one untimed short run of each; a road's time is
the integrator's own (the steps and their records, not the homogeneity checks before and after) per accepted
step. Prints the median ms per step of each road per instance and the ratio of medians
(functional_call / direct); the records of both roads are identical (tests/test_direct_pass.py).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import theorycheck as tc  # noqa: E402
from theorycheck.claims.margin import FlowInstance  # noqa: E402
from theorycheck.engines import dynamics, flat_network  # noqa: E402
from theorycheck.generate.models import NetworkSpec  # noqa: E402

SPECS = {
    "mlp relu 8-8": NetworkSpec(family="mlp", widths=(8, 8), activation="relu", in_shape=(5,)),
    "mlp leaky 12": NetworkSpec(family="mlp", widths=(12,), activation="leaky_relu", in_shape=(5,)),
    "mlp relu^3 6": NetworkSpec(family="mlp", widths=(6,), activation="relu_p", power=3.0, in_shape=(4,)),
    "cnn relu max": NetworkSpec(family="cnn", widths=(3, 3), activation="relu", in_shape=(2, 6, 6), pooling="max"),
}


def seconds_per_step(spec: NetworkSpec, steps: int, direct: bool) -> float:
    instance = FlowInstance(spec=spec, seed=1, n=10, data_margin=0.2, loss="exp", log_loss_target=math.log(1e-40))
    model, X, y = instance.build("cpu", "float64")
    of, flow, spent = flat_network.DirectPass.of, dynamics._flow, []

    def timed_flow(*args, **kwargs):
        started = time.perf_counter()
        try:
            return flow(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    dynamics._flow = timed_flow
    if not direct:
        flat_network.DirectPass.of = classmethod(lambda cls, *args: None)
    try:
        run = tc.train(model, X, y, **{**instance.train_kwargs(), "steps": steps})
    finally:
        flat_network.DirectPass.of, dynamics._flow = of, flow
    return spent[0] / max(run.steps, 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default: 5)")
    parser.add_argument("--steps", type=int, default=200, help="accepted steps per flow at most (default: 200)")
    args = parser.parse_args(argv)
    times = {(name, road): [] for name in SPECS for road in ("direct", "functional_call")}
    for spec in SPECS.values():  # first-call costs (lazy imports, allocator warm-up) are not timed
        seconds_per_step(spec, 5, True)
        seconds_per_step(spec, 5, False)
    for _ in range(args.repeats):
        for name, spec in SPECS.items():
            for road in ("direct", "functional_call"):
                times[name, road].append(seconds_per_step(spec, args.steps, road == "direct"))
    print(f"{'instance':<16}{'direct ms/step':>16}{'functional_call ms/step':>25}{'ratio':>8}   "
          f"(medians of {args.repeats} interleaved repeats, float64)")
    ratios = []
    for name in SPECS:
        direct, general = (statistics.median(times[name, road]) for road in ("direct", "functional_call"))
        ratios.append(general / direct)
        print(f"{name:<16}{direct * 1e3:>16.3f}{general * 1e3:>25.3f}{general / direct:>8.2f}")
    print(f"speedup (functional_call / direct, geometric mean) = {math.prod(ratios) ** (1 / len(ratios)):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
