"""Measure the margin and KKT claims at the limit: gradient flow with the engine's DEFAULT stopping rule.

    .venv/bin/python benchmarks/flow_limits.py --instances 50 --linear 20 --seed 0 [--dtype float64] [--json out.json]

On ``--instances`` generated separable instances (the audit's families: linear, leaky-ReLU MLP, ReLU and
leaky-ReLU CNN; exp and logistic loss): does every run reach L <= 1e-30, is the smoothed margin monotone
within the engine's stated error (margin_monotone holds), do eps and delta decrease (kkt holds)? On
``--linear`` one-layer linear instances: the angle to the exact hard-margin SVM and whether the support sets
agree. Then the negative controls of both claims' audits and their statuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import Counter

import numpy as np

import theorycheck as tc
from theorycheck.claims.margin import AUDIT_FAMILIES, random_instance, trained
from theorycheck.engines.dynamics import DEFAULT_LOG_LOSS_TARGET
from theorycheck.generate.sampling import case_rng


def run(instance, dtype: str) -> dict:
    started = time.perf_counter()
    (model, X, y), trajectory = trained(instance, "cpu", dtype)
    margin = tc.check_margin_monotone(trajectory)
    kkt = tc.check_kkt(model, X, y, trajectory=trajectory)
    svm = kkt.details.get("svm", {})
    return {"spec": instance.spec.repr_line(), "loss": instance.loss, "log_loss_end": float(trajectory.records["log_loss"][-1]),
            "stop": trajectory.stop_reason, "steps": trajectory.steps, "margin": margin.status,
            "integrated_held": margin.details.get("integrated", {}).get("held"),
            "integrated_decisive": margin.details.get("integrated", {}).get("decisive"),
            "pointwise_held": margin.details.get("pointwise", {}).get("held"), "kkt": kkt.status,
            "eps": kkt.details.get("history", {}).get("eps", []), "delta": kkt.details.get("history", {}).get("delta", []),
            "eps_decreasing": kkt.details.get("eps_decreasing"), "delta_decreasing": kkt.details.get("delta_decreasing"),
            "angle": svm.get("angle"), "same_support": svm.get("same_support"),
            "same_active_set": svm.get("same_active_set"), "log_log_slope": svm.get("log_log_slope"),
            "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--linear", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float64")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    rows = []
    for index in range(args.instances):
        instance = random_instance(case_rng(args.seed, "flow_limits", index), families=AUDIT_FAMILIES,
                                   log_loss_target=DEFAULT_LOG_LOSS_TARGET)
        rows.append(run(instance, args.dtype))
        row = rows[-1]
        print(f"{index:3d} {row['spec'][:70]:70s} {row['loss']:8s} log L {row['log_loss_end']:8.1f} "
              f"margin {row['margin']:8s} kkt {row['kkt']:8s} eps {row['eps'][0] if row['eps'] else math.nan:.3f}->"
              f"{row['eps'][-1] if row['eps'] else math.nan:.3f} {row['seconds']:.1f}s", flush=True)
    linear = []
    for index in range(args.linear):
        instance = random_instance(case_rng(args.seed, "flow_limits_linear", index), families=("linear",),
                                   log_loss_target=DEFAULT_LOG_LOSS_TARGET)
        instance = dataclasses.replace(instance, spec=dataclasses.replace(instance.spec, widths=()))
        linear.append(run(instance, args.dtype))
        row = linear[-1]
        print(f"linear {index:3d} {row['loss']:8s} log L {row['log_loss_end']:8.1f} angle {row['angle']:.2e} "
              f"same support {row['same_support']} log-log slope {row['log_log_slope']:.2f} margin {row['margin']} "
              f"kkt {row['kkt']} {row['seconds']:.1f}s", flush=True)

    controls: dict[str, Counter] = {}
    for claim in ("margin_monotone", "kkt"):
        for case in tc.CLAIMS[claim].audit_cases(n=10, seed=args.seed, device="cpu", dtype=args.dtype):
            if case.kind == "control":
                controls.setdefault(f"{claim}:{case.name.rsplit('-', 1)[0]}", Counter())[case.run().status] += 1

    everything = rows + linear
    summary = {
        "runs": len(everything),
        "reached_1e-30": sum(r["log_loss_end"] <= math.log(1e-30) for r in everything),
        "reached_default_target": sum(r["stop"] == "log_loss_target" for r in everything),
        "margin_monotone": dict(Counter(r["margin"] for r in everything)),
        "kkt": dict(Counter(r["kkt"] for r in everything)),
        "eps_first_to_last_median": [float(np.median([r["eps"][0] for r in rows if r["eps"]])),
                                     float(np.median([r["eps"][-1] for r in rows if r["eps"]]))],
        "delta_first_to_last_median": [float(np.median([r["delta"][0] for r in rows if r["delta"]])),
                                       float(np.median([r["delta"][-1] for r in rows if r["delta"]]))],
        "linear_max_angle": max((r["angle"] for r in linear), default=math.nan),
        "deep_eps_and_delta_decreasing": sum(bool(r["eps_decreasing"] and r["delta_decreasing"]) for r in rows),
        "deep_runs": len(rows),
        "margin_pointwise_held": sum(bool(r["pointwise_held"]) for r in everything),
        "margin_integrated_held": sum(bool(r["integrated_held"]) for r in everything),
        "margin_integrated_held_where_decisive (C^2)": [sum(bool(r["integrated_held"]) for r in everything
                                                          if r["integrated_decisive"]),
                                                      sum(bool(r["integrated_decisive"]) for r in everything)],
        "linear_same_support": sum(bool(r["same_support"]) for r in linear),
        "linear_same_exact_active_set": sum(bool(r["same_active_set"]) for r in linear),
        "linear_log_log_slope_median": float(np.median([r["log_log_slope"] for r in linear])) if linear else math.nan,
        "controls": {k: dict(v) for k, v in controls.items()},
        "seconds": sum(r["seconds"] for r in everything),
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"summary": summary, "runs": rows, "linear": linear}, handle, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
