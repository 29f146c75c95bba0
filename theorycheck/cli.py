"""The ``theorycheck`` command: ``list`` the claims, ``audit`` them on generated instances."""

from __future__ import annotations

import argparse
import sys

from . import CLAIMS


def _list(args) -> int:
    for claim in CLAIMS.values():
        print(f"{claim.id}: {claim.statement}\n  source: {claim.source}\n  assumptions: "
              + "; ".join(claim.assumptions))
    return 0


def _audit(args) -> int:
    violated = 0
    for claim in CLAIMS.values():
        if claim.audit_cases is None:
            continue
        counts: dict[str, int] = {}
        for case in claim.audit_cases(n=args.examples, seed=args.seed, device="cpu", dtype="float64"):
            verdict = case.run()
            counts[verdict.status] = counts.get(verdict.status, 0) + 1
            if verdict.status not in case.expected:
                violated += 1
                print(f"UNEXPECTED {claim.id} {case.name}: {verdict.summary()}\n  reproduce: {case.reproduce}")
        print(f"{claim.id}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 1 if violated else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="theorycheck", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the claims").set_defaults(func=_list)
    audit = sub.add_parser("audit", help="run every claim on generated instances and negative controls")
    audit.add_argument("--examples", type=int, default=40, help="instances per claim (default: 40)")
    audit.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    audit.set_defaults(func=_audit)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
