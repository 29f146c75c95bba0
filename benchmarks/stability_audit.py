"""Measure the stability claims on many generated instances and their negative controls.

    .venv/bin/python benchmarks/stability_audit.py --instances 210 --seed 0 [--dtype float64] [--json out.json]

For each SGD claim: how many instances held, the tightest pathwise ratio ||w_t - w'_t|| / B_t seen,
and the Monte Carlo estimate of sup_z E|f(w_T; z) - f(w'_T; z)| against the HRS bound (the largest
estimate/bound and upper-end/bound ratios, and whether every interval's upper end sits below its bound).
For the kernel claims: the largest LOO-formula vs refit mismatch relative to its roundoff tolerance,
and the tightest Bousquet-Elisseeff ratio. For every claim: the statuses of the negative controls, and the largest measured / (bound + tolerance)
of each part of the conclusion (``details["comparisons"]``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter

import theorycheck as tc

SGD = ("sgd_stability_convex", "sgd_stability_strongly_convex", "sgd_stability_nonconvex")
KERNEL = ("erm_stability", "cvloo_stability")


def part(verdict, prefix: str) -> list[dict]:
    """The verdict's comparisons whose name starts with ``prefix``."""
    return [p for p in verdict.details["comparisons"] if p["name"].startswith(prefix)]


def tightest(verdicts: list) -> dict:
    """Per part name (sizes merged): the largest measured / (bound + tolerance) over the verdicts."""
    out: dict[str, float] = {}
    for v in verdicts:
        for p in v.details["comparisons"]:
            name, allowed = p["name"].split(", n =")[0], p["bound"] + p["tolerance"]
            if allowed > 0 and math.isfinite(allowed):
                out[name] = max(out.get(name, 0.0), p["measured"] / allowed)
    return out


def summarize(claim: str, verdicts: list, controls: list) -> dict:
    held = sum(v.status == "holds" for v in verdicts)
    row = {"claim": claim, "instances": len(verdicts), "held": held,
           "statuses": dict(Counter(v.status for v in verdicts)),
           "controls": dict(Counter(f"{name}:{v.status}{'' if ok else ' (UNEXPECTED)'}" for name, v, ok in controls)),
           "controls_as_expected": all(ok for _, _, ok in controls), "tightest_parts": tightest(verdicts)}
    if claim in SGD:
        row["tightest_pathwise_ratio"] = max(p["measured"] for v in verdicts for p in part(v, "pathwise ||w_t - w'_t|| / B_t"))
        row["max_curvature_over_beta"] = max(v.details["observed"]["max_curvature"] / v.details["constants"]["smoothness"]
                                             for v in verdicts)
        evaluated = [v.details["expectation"] for v in verdicts if v.details["expectation"]["evaluated"]]
        row["expectation_evaluated"] = len(evaluated)
        row["max_estimate_over_bound"] = max((e["estimate"] / e["bound"] for e in evaluated), default=math.nan)
        row["max_upper_over_bound"] = max((e["upper"] / e["bound"] for e in evaluated), default=math.nan)
        row["every_upper_below_bound"] = all(e["below_bound_with_interval"] for e in evaluated)
    elif claim == "cvloo_stability":
        formula = [p for v in verdicts for p in part(v, "exact LOO")]
        row["max_mismatch_over_tolerance"] = max(p["measured"] / p["tolerance"] for p in formula if p["tolerance"] > 0)
        row["max_mismatch"] = max(p["measured"] for p in formula)
        row["max_cvloo_over_bound"] = max((r["cvloo_max"] / r["bound"] for v in verdicts for r in v.details["sizes"]
                                          if r.get("positive_definite") and math.isfinite(r["bound"])), default=math.nan)
    else:
        row["tightest_bound_ratio"] = max(v.details["ratio"] for v in verdicts)
        row["tightest_proof_inequality_ratio"] = max(v.details["proof_inequality"]["max_ratio"] for v in verdicts)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=210, help="instances per claim (default: 210)")
    parser.add_argument("--seed", type=int, default=0, help="audit seed (default: 0)")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")
    parser.add_argument("--dtype", default="float64", help="dtype (default: float64)")
    parser.add_argument("--claims", default=",".join(SGD + KERNEL), help="comma-separated claims (default: all five)")
    parser.add_argument("--json", default=None, help="also write the summary as JSON to this path")
    args = parser.parse_args(argv)
    rows, ok = [], True
    for claim in args.claims.split(","):
        start = time.time()
        verdicts, controls = [], []
        for case in tc.CLAIMS[claim].audit_cases(n=args.instances, seed=args.seed, device=args.device, dtype=args.dtype):
            verdict = case.run()
            expected = verdict.status in case.expected
            if case.kind == "instance":
                verdicts.append(verdict)
            else:
                controls.append((case.name.split("-", 1)[1].rsplit("-", 1)[0], verdict, expected))
            if not expected:
                ok = False
                print(f"UNEXPECTED {claim} {case.name}: {verdict.summary()}\n  reproduce: {case.reproduce}")
        row = summarize(claim, verdicts, controls)
        row["seconds"] = round(time.time() - start, 1)
        ok &= row["held"] == row["instances"] and row["controls_as_expected"]
        rows.append(row)
        print(json.dumps(row, indent=1))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"settings": vars(args), "claims": rows}, handle, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
