"""The batched ensemble engine (theorycheck.engines.ensemble) against the loop a researcher writes, and against
the machine's large-matrix-product rate.

    python benchmarks/run.py [--quick] [--claims a,b] [--repeats 5] [--loop-networks 16] [--steps 300] [--threads N]
                             [--device cpu|cuda]

Reference setting: 64 bias-free ReLU MLPs 10 -> 32 -> 32 -> 1 (depth 3 = three weight layers), 128 samples,
full-batch GD on the summed logistic loss, 300 steps, in float32 and float64. Programs, timed in
network-steps per second (networks x steps / wall seconds) and interleaved repeat by repeat, so that load
from other processes hits all of them alike:
  loop      one nn.Sequential and one torch.optim.SGD per network, autograd backward, no records (its cost is
            per network: it is timed on --loop-networks of the 64), at 1 torch thread and at --threads: the
            baseline is its best setting (on a busy machine 1 thread can win);
  stacked   the 64 networks' weights stacked, bmm forward, autograd backward, one in-place update per layer;
  engine    train_ensemble: hand-written backward into preallocated buffers, cache-sized chunks, and the
            records (log L, min margin, squared layer norms at every step), which the other two do not keep;
  peak      a 1024 x 1024 matrix product at --threads (numpy's OpenBLAS, which the engine calls, and torch.mm;
            the faster of the two), the machine's large-matmul rate in that repeat.
One statistic everywhere: the ratio of medians over the repeats. ``x loop`` = median rate / the loop's best
median rate; ``peak_fraction`` = the engine's median GFLOP/s (the matrix-product FLOPs of a step, counted
from the widths: :func:`engine_flops`) over the peak's median GFLOP/s. Then the engine's cost
(seconds per step) against width, depth, sample count and ensemble size with a fitted log-log slope each,
peak memory (growth of the resident set's high-water mark over one reference run; on CUDA the allocator's
peak), and each registered claim's (or each of --claims) checker time per audit instance (median over
--instances, float64, on the device). ``--device cuda`` runs every program on the GPU and waits for its queued kernels before each
reading of the clock. Last two lines: ``speedup float32=<x> float64=<y>`` and
``peak_fraction float32=<x> float64=<y>``.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import ThreadpoolController

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from theorycheck.core.devices import cuda_available, synchronize  # noqa: E402
from theorycheck.engines.ensemble import Ensemble, train_ensemble  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}
LR = 0.01


DEVICE = torch.device("cpu")  # set by --device


def data(n: int, d: int, dtype: torch.dtype, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return X.to(DEVICE, dtype), torch.where(X[:, 0] >= 0, 1.0, -1.0).to(DEVICE, dtype)


def ensemble_of(size: int, widths: tuple[int, ...], dtype: torch.dtype) -> Ensemble:
    """``size`` networks ``mlp(widths)`` (seeds 0..size-1) on DEVICE."""
    return Ensemble([W.to(DEVICE) for W in Ensemble.random(size, widths, dtype=dtype).weights])


def clock() -> float:
    """perf_counter after the kernels queued on DEVICE have run (CUDA is asynchronous)."""
    synchronize(DEVICE)
    return time.perf_counter()


def loop_rate(ensemble: Ensemble, X, y, steps: int, networks: int, threads: int | None = None) -> float:
    """Network-steps/s of the plain loop: per network one model, one optimizer, autograd; on ``threads`` torch
    threads (default: as set)."""
    models = ensemble.to_models()[:networks]
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        started = clock()
        for model in models:
            optimizer = torch.optim.SGD(model.parameters(), lr=LR)
            for _ in range(steps):
                optimizer.zero_grad()
                F.softplus(-y * model(X).squeeze(1)).sum().backward()
                optimizer.step()
        return len(models) * steps / (clock() - started)
    finally:
        torch.set_num_threads(before)


def stacked_rate(ensemble: Ensemble, X, y, steps: int) -> float:
    """Network-steps/s of the stacked-weights autograd program (the batched floor)."""
    weights = [W.clone().requires_grad_(True) for W in ensemble.weights]
    Xe = X.expand(ensemble.size, *X.shape)
    started = clock()
    for _ in range(steps):
        h = Xe
        for k, W in enumerate(weights):
            h = torch.bmm(h, W.transpose(1, 2))
            h = torch.relu(h) if k < len(weights) - 1 else h
        grads = torch.autograd.grad(F.softplus(-y * h.squeeze(2)).sum(), weights)
        with torch.no_grad():
            for W, G in zip(weights, grads):
                W.sub_(LR * G)
    return ensemble.size * steps / (clock() - started)


def engine_rate(ensemble: Ensemble, X, y, steps: int) -> float:
    return train_ensemble(ensemble, X, y, lr=LR, steps=steps).network_steps_per_second


def engine_flops(widths: tuple[int, ...], samples: int) -> int:
    """Matrix-product FLOPs of one GD network-step of the engine on ``samples`` samples: the forward products
    (2 N n_k n_{k+1} per layer), the gradients (as many) and the deltas of the hidden layers below the output
    (2 N n_k n_{k+1} for k = 1..K-2), plus the output layer's outer product (N n_{K-1})."""
    sizes = [a * b for a, b in zip(widths[:-1], widths[1:])]
    return 2 * samples * (2 * sum(sizes) + sum(sizes[1:-1])) + samples * widths[-2]


PEAK_SIZE = 1024


def peak_gflops(dtype: torch.dtype, threads: int, repeats: int = 3) -> float:
    """GFLOP/s of the faster of numpy's matmul (OpenBLAS at ``threads``) and torch.mm (at ``threads``) on two
    PEAK_SIZE x PEAK_SIZE matrices on DEVICE (CUDA: torch.mm only), best of ``repeats`` products each."""
    generator = torch.Generator().manual_seed(1)
    a, b = (torch.randn(PEAK_SIZE, PEAK_SIZE, generator=generator, dtype=dtype) for _ in range(2))
    products = {"torch": lambda: torch.mm(a, b)}
    if DEVICE.type == "cpu":
        a_np, b_np = a.numpy(), b.numpy()
        products["numpy"] = lambda: np.matmul(a_np, b_np)
    else:
        a, b = a.to(DEVICE), b.to(DEVICE)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    best = math.inf
    try:
        with ThreadpoolController().limit(limits=threads, user_api="blas"):
            for product in products.values():
                product()
                for _ in range(repeats):
                    started = clock()
                    product()
                    best = min(best, clock() - started)
    finally:
        torch.set_num_threads(before)
    return 2 * PEAK_SIZE**3 / best / 1e9


def reference(args) -> dict:
    """Interleaved repeats of the programs and the peak product in both dtypes: the rates of every repeat, the
    loop at each thread setting (``loop@k``), and the ratios of medians."""
    loops = sorted({1, args.threads})
    names = [f"loop@{k}" for k in loops] + ["stacked", "engine", "peak"]
    rates = {(name, dt): [] for name in names for dt in DTYPES}
    for dt, dtype in DTYPES.items():  # warm-up: first-call costs are nobody's steady state
        X, y = data(args.samples, 10, dtype)
        ensemble = ensemble_of(args.networks, (10, 32, 32, 1), dtype)
        loop_rate(ensemble, X, y, 5, 1), stacked_rate(ensemble, X, y, 5), engine_rate(ensemble, X, y, 5)
    for _ in range(args.repeats):
        for dt, dtype in DTYPES.items():
            X, y = data(args.samples, 10, dtype)
            ensemble = ensemble_of(args.networks, (10, 32, 32, 1), dtype)
            for k in loops:
                rates[f"loop@{k}", dt].append(loop_rate(ensemble, X, y, args.steps, args.loop_networks, k))
            rates["stacked", dt].append(stacked_rate(ensemble, X, y, args.steps))
            rates["engine", dt].append(engine_rate(ensemble, X, y, args.steps))
            rates["peak", dt].append(peak_gflops(dtype, args.threads))
    median = {key: statistics.median(values) for key, values in rates.items()}
    best_loop = {dt: max(median[f"loop@{k}", dt] for k in loops) for dt in DTYPES}
    flops = engine_flops((10, 32, 32, 1), args.samples)
    return {"rates": rates, "median": median, "loops": loops, "best_loop": best_loop,
            "speedup": {dt: median["engine", dt] / best_loop[dt] for dt in DTYPES},
            "engine_gflops": {dt: median["engine", dt] * flops / 1e9 for dt in DTYPES},
            "peak_fraction": {dt: median["engine", dt] * flops / 1e9 / median["peak", dt] for dt in DTYPES}}


def seconds_per_step(size: int, widths: tuple[int, ...], samples: int, steps: int, dtype) -> float:
    X, y = data(samples, widths[0], dtype)
    ensemble = ensemble_of(size, widths, dtype)
    train_ensemble(ensemble, X, y, lr=LR, steps=2)
    times = [train_ensemble(ensemble, X, y, lr=LR, steps=steps).seconds / steps for _ in range(3)]
    return statistics.median(times)


def scaling(args) -> list[tuple[str, list, list, float]]:
    """Engine seconds per step along one axis of the reference setting at a time; log-log slope of each."""
    E, N, steps, dtype = args.networks, args.samples, max(5, args.steps // 3), torch.float32
    sweeps = {
        "width": ([16, 32, 64, 128], lambda w: (E, (10, w, w, 1), N)),
        "depth": ([2, 3, 4, 6], lambda k: (E, (10,) + (32,) * (k - 1) + (1,), N)),
        "samples": ([64, 128, 256, 512], lambda n: (E, (10, 32, 32, 1), n)),
        "networks": ([16, 32, 64, 128, 256], lambda e: (e, (10, 32, 32, 1), N)),
    }
    rows = []
    for axis, (values, setting) in sweeps.items():
        values = values[:2] if args.quick else values
        cost = [seconds_per_step(*setting(v), steps, dtype) for v in values]
        slope = float(np.polyfit(np.log(values), np.log(cost), 1)[0])
        rows.append((axis, values, cost, slope))
    return rows


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory(args) -> dict:
    """Peak memory growth (bytes) of one reference run per program and dtype. CPU: the resident set's
    high-water mark, reset (/proc/self/clear_refs, Linux) before each run and read (VmHWM) after it; CUDA:
    the caching allocator's peak over what was allocated before the run."""
    out = {}
    for dt, dtype in DTYPES.items():
        X, y = data(args.samples, 10, dtype)
        ensemble = ensemble_of(args.networks, (10, 32, 32, 1), dtype)
        for program, run in (("engine", lambda: engine_rate(ensemble, X, y, args.steps)),
                             ("loop", lambda: loop_rate(ensemble, X, y, 2, args.networks))):
            if DEVICE.type == "cuda":
                torch.cuda.reset_peak_memory_stats(DEVICE)
                before = torch.cuda.memory_allocated(DEVICE)
                run()
                out[program, dt] = torch.cuda.max_memory_allocated(DEVICE) - before
                continue
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the system: the run's pages are counted
            Path("/proc/self/clear_refs").write_text("5")
            before = _status_kib("VmRSS")
            run()
            out[program, dt] = (_status_kib("VmHWM") - before) * 1024
    return out


def checker_costs(instances: int, claims: list[str] | None) -> dict[str, float]:
    """Median wall seconds per audit instance of the given registered claims (all when None; float64, on
    DEVICE, audit seed 0): each claim's first instance runs once untimed (first-call costs), then
    ``instances`` are timed."""
    from theorycheck.core.registry import CLAIMS

    costs = {}
    for claim_id, claim in ({c: CLAIMS[c] for c in claims} if claims else CLAIMS).items():
        cases = [c for c in claim.audit_cases(n=instances + 1, seed=0, device=DEVICE.type, dtype="float64")
                 if c.kind == "instance"]
        cases[0].run()
        times = []
        for case in cases[1:]:
            started = time.perf_counter()
            case.run()
            times.append(time.perf_counter() - started)
        costs[claim_id] = statistics.median(times)
    return costs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run in seconds (small sizes, one repeat)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (default: 5)")
    parser.add_argument("--steps", type=int, default=300, help="GD steps per run (default: 300)")
    parser.add_argument("--networks", type=int, default=64, help="ensemble size (default: 64)")
    parser.add_argument("--samples", type=int, default=128, help="samples (default: 128)")
    parser.add_argument("--loop-networks", type=int, default=16, help="networks the plain loop is timed on (default: 16)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help=f"torch threads for every program (default: {torch.get_num_threads()}, torch's default here)")
    parser.add_argument("--instances", type=int, default=3, help="audit instances timed per claim (default: 3)")
    parser.add_argument("--claims", type=lambda text: text.split(","), default=None,
                        help="comma-separated claims whose checker time is measured (default: every registered claim)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where every program runs (default: cpu)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not cuda_available():
        parser.error("expected a CUDA device for --device cuda, but torch.cuda.is_available() is False "
                     f"(torch {torch.__version__}). Fix: run on a machine with a GPU and a CUDA build of torch, "
                     "or --device cpu")
    if args.claims:
        from theorycheck.core.registry import CLAIMS

        unknown = sorted(set(args.claims) - set(CLAIMS))
        if unknown:
            parser.error(f"expected --claims from {sorted(CLAIMS)}, but got {unknown}. Fix: leave --claims out to "
                         "time every registered claim")
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.repeats, args.steps, args.networks, args.samples, args.loop_networks, args.instances = 1, 10, 8, 32, 2, 1
    print(f"setting: {args.networks} bias-free ReLU MLPs 10-32-32-1, {args.samples} samples, full-batch GD on the "
          f"logistic loss, {args.steps} steps, lr {LR}; torch {torch.__version__}, {args.threads} thread(s), "
          f"device {DEVICE.type}{f' ({torch.cuda.get_device_name(DEVICE)})' if DEVICE.type == 'cuda' else ''}; "
          f"{args.repeats} interleaved repeats, loop timed on {args.loop_networks} networks")
    result = reference(args)
    median, best_loop = result["median"], result["best_loop"]
    print(f"{'program':<12}{'float32 net-steps/s':>22}{'x loop':>8}{'float64 net-steps/s':>22}{'x loop':>8}"
          "   (medians over the repeats; x loop: over the loop's best thread setting)")
    for name in [f"loop@{k}" for k in result["loops"]] + ["stacked", "engine"]:
        cells = "".join(f"{median[name, dt]:>22,.0f}{median[name, dt] / best_loop[dt]:>8.2f}" for dt in DTYPES)
        print(f"{name:<12}{cells}")
    print("GFLOP/s (medians): " + ", ".join(
        f"{dt} engine {result['engine_gflops'][dt]:.1f} of peak {median['peak', dt]:.1f}" for dt in DTYPES)
        + f" ({engine_flops((10, 32, 32, 1), args.samples) / 1e6:.3f} MFLOP a network-step; peak: "
        f"{PEAK_SIZE}x{PEAK_SIZE} product at {args.threads} thread(s))")
    spread = {dt: {name: [round(v) for v in result["rates"][name, dt]] for name in ("engine", "peak")} for dt in DTYPES}
    print(f"per repeat (engine net-steps/s, peak GFLOP/s): {spread}")
    print("engine cost, float32, one axis of the setting varied at a time (seconds per step):")
    for axis, values, cost, slope in scaling(args):
        points = ", ".join(f"{v}: {c * 1e3:.3g} ms" for v, c in zip(values, cost))
        print(f"  {axis:<9} slope {slope:5.2f}   {points}")
    try:
        memory = peak_memory(args)
        what = "CUDA allocator peak growth" if DEVICE.type == "cuda" else "peak resident-set growth"
        print(f"{what} of one run (loop: 2 steps of every network): " + ", ".join(
            f"{program} {dt} {value / 1024:.0f} KiB" for (program, dt), value in memory.items()))
    except (OSError, AttributeError) as error:
        print(f"peak memory: not measured ({error})")
    costs = checker_costs(args.instances, args.claims)
    print(f"checker time per audit instance (median of {args.instances}, float64, after one untimed instance):")
    for claim_id, seconds in sorted(costs.items(), key=lambda item: -item[1]):
        print(f"  {claim_id:<32}{seconds * 1e3:>10.1f} ms")
    print(f"speedup float32={result['speedup']['float32']:.1f} float64={result['speedup']['float64']:.1f}")
    print(f"peak_fraction float32={result['peak_fraction']['float32']:.2f} "
          f"float64={result['peak_fraction']['float64']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
