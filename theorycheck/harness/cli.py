"""The ``theorycheck`` command.

    theorycheck list                      the claims: statement, assumptions, source
    theorycheck contract [--claims ...]   each checker on degenerate inputs: refused or inconclusive, never a crash
    theorycheck audit [options]           every claim on generated instances and negative controls
    theorycheck audit --import my_claims  ... and the claims declared in your own module my_claims.py
    theorycheck report DIR                re-render report.json/.md/.html from DIR/results.jsonl
    theorycheck report --merge A B C --out DIR   merge the runs of audit --shard 1/3, 2/3, 3/3

Every planned case runs (same seed and settings, same cases and verdicts); --budget caps the seconds
per claim and reports the cases it skipped (the headline then says INCOMPLETE). Without --out, an
audit writes to a fresh directory audit-out/YYYYMMDD-HHMMSS (UTC), so re-running never collides.
The cases run in one worker process per core (--jobs N to choose, 1 for this process alone); the
records do not depend on N.

Exit codes: 0 every instance held (or was inconclusive) and every negative control was caught;
1 a claim was violated, a control was not caught, or a checker raised; 2 bad input or an I/O error
(nothing run, nothing created, nothing already written changed); 130 interrupted (finished results
kept: continue with --resume).
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import math
import sys
from pathlib import Path

from ..core.errors import InvalidArgument

SETTINGS_FLAGS = ("claims", "devices", "dtypes", "examples", "budget", "seed", "shard")


def import_claim_modules(text: str | None) -> list[str]:
    """Import the user's claim modules named by ``--import a,b.c`` (found from the working directory), so
    the claims they declare are registered before the audit plans its cases; returns their names."""
    import importlib

    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise InvalidArgument(f"expected --import to name Python modules importable from the working directory, "
                                  f"but importing {name!r} failed: {error}. Fix: run from the folder holding "
                                  f"{name.replace('.', '/')}.py, or put it on PYTHONPATH") from None
    return names


def _list(args) -> int:
    from ..core.registry import CLAIMS

    import_claim_modules(args.imports)
    for claim in CLAIMS.values():
        battery = "" if claim.audit_cases else "  (no audit battery)"
        print(f"{claim.id}{battery}\n  statement: {claim.statement}\n  source: {claim.source}\n  assumptions:")
        print("".join(f"    - {a}\n" for a in claim.assumptions) + f"  tolerance: {claim.tolerance}\n")
    return 0


def _contract(args) -> int:
    """Exit 0 when every claim meets the checker contract, else 1 (each failure printed)."""
    from ..core.registry import CLAIMS
    from .contract import outcomes

    import_claim_modules(args.imports)
    claims = [c.strip() for c in (args.claims or ",".join(CLAIMS)).split(",") if c.strip()]
    unknown = [c for c in claims if c not in CLAIMS]
    if unknown:
        raise InvalidArgument(f"expected claim ids from {sorted(CLAIMS)}, but got {unknown}. Fix: theorycheck list")
    failures = 0
    for claim in claims:
        found = outcomes(claim)
        bad = [o for o in found if not o.ok]
        failures += len(bad)
        print(f"{claim}: {len(found) - len(bad)}/{len(found)} degenerate calls met the contract")
        for outcome in bad:
            print(f"  FAIL {outcome.where} <- {outcome.mutation}: {outcome.got}")
    return 1 if failures else 0


def per_claim(text: str | None, claims: list[str], what: str, cast, default) -> dict:
    """``"20"`` or ``"20,kkt=5"`` or ``"kkt=5"``: a value for every claim (else ``default``), then overrides."""
    values = {}
    for item in (part.strip() for part in (text or "").split(",") if part.strip()):
        name, _, value = item.rpartition("=")
        try:
            number = cast(value)
        except ValueError:
            number = -1
        if not 0 <= number < math.inf or (name and name not in claims):
            raise InvalidArgument(f"expected --{what} as N or N,CLAIM=N,... with finite N >= 0 and claims from the "
                                  f"audit {claims}, but got {item!r} in {text!r}. Fix: e.g. --{what} {cast(20)},"
                                  f"{claims[0]}={cast(5)}")
        values[name or "*"] = number
    default = values.pop("*", default)
    return {c: values.get(c, default) for c in claims}


def _settings(args):
    from .plan import DEFAULT_BUDGET, DEFAULT_EXAMPLES, AuditSettings
    from ..core.devices import DTYPES, parse_list, resolve_device
    from ..core.registry import CLAIMS

    known = list(CLAIMS)
    claims = known if args.claims is None else [c.strip() for c in args.claims.split(",") if c.strip()]
    unknown = [c for c in claims if c not in CLAIMS]
    if unknown or not claims:
        guesses = {c: difflib.get_close_matches(c, known, n=1) for c in unknown}
        hint = "; ".join(f"did you mean {g[0]!r} for {c!r}?" for c, g in guesses.items() if g)
        raise InvalidArgument(f"expected claim ids from {known}, but got {args.claims!r}"
                              f"{f' (unknown: {unknown})' if unknown else ''}. Fix: {hint + ' ' if hint else ''}"
                              f"`theorycheck list` shows the ids; e.g. --claims {','.join(known[:2])}")
    devices = parse_list(args.devices or "cpu", {"cpu", "cuda"}, "devices")
    for device in devices:
        resolve_device(device)
    dtypes = parse_list(args.dtypes or "float64", set(DTYPES), "dtypes")
    examples = per_claim(args.examples, claims, "examples", int, DEFAULT_EXAMPLES)
    if min(examples.values()) < 1:
        raise InvalidArgument(f"expected at least 1 example per claim, but got --examples {args.examples}. "
                              "Fix: --examples 20")
    budget = per_claim(args.budget, claims, "budget", float, DEFAULT_BUDGET)
    seed = args.seed if args.seed is not None else 0
    if not 0 <= seed < 2**63:
        raise InvalidArgument(f"expected --seed as an integer in [0, 2**63), but got {seed}. Fix: e.g. --seed 7")
    return AuditSettings(claims=tuple(claims), devices=tuple(devices), dtypes=tuple(dtypes), examples=examples,
                         budget=budget, seed=seed, shard=parse_shard(args.shard))


MAX_AUTO_JOBS = 8  # each worker holds its own torch (a few hundred MB)


def parse_jobs(text: str | None) -> int:
    """``--jobs N`` or ``auto`` (the default): the cores this process may keep busy (OMP_NUM_THREADS where
    set, a pytest-xdist worker's share, else the available cores), at most MAX_AUTO_JOBS."""
    from ..core.threads import core_budget

    if text is None or text == "auto":
        return max(1, min(MAX_AUTO_JOBS, core_budget()))
    if not text.isdigit() or int(text) < 1:
        raise InvalidArgument(f"expected --jobs N with N >= 1, or auto, but got {text!r}. Fix: e.g. --jobs 2, or "
                              "--jobs 1 to run every case in this process")
    return int(text)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` with 1 <= K <= N, or None."""
    if text is None:
        return None
    k, _, n = text.partition("/")
    try:
        shard = (int(k), int(n))
    except ValueError:
        shard = (0, 0)
    if not 1 <= shard[0] <= shard[1]:
        raise InvalidArgument(f"expected --shard K/N with 1 <= K <= N, but got {text!r}. Fix: e.g. --shard 2/3 "
                              "(run 1/3, 2/3 and 3/3, then theorycheck report --merge DIR1 DIR2 DIR3 --out DIR)")
    return shard


def _check_resumable(args, directory: Path) -> None:
    from .plan import AuditSettings
    from ..core.devices import resolve_device
    from ..core.registry import CLAIMS
    from ..report import RESULTS, read_results

    given = [f"--{flag}" for flag in SETTINGS_FLAGS if getattr(args, flag) is not None]
    given += ["--replace"] * bool(args.replace)
    if given:
        raise InvalidArgument(f"expected --resume alone (it continues with the settings recorded in "
                              f"{directory / RESULTS}), but got {' '.join(given)} as well. Fix: drop those flags, "
                              "or start a new audit with --out NEWDIR.")
    if args.out is not None and Path(args.out) != directory:
        raise InvalidArgument(f"expected one directory, but got --out {args.out} and --resume {directory}. "
                              "Fix: --resume DIR writes into DIR; drop --out.")
    header = read_results(directory / RESULTS)[0]
    if header.get("source") != "audit":
        raise InvalidArgument(f"expected an audit to resume in {directory}, but it holds the report of a "
                              f"{header.get('source')!r} session. Fix: `theorycheck report {directory}` re-renders it; "
                              "start an audit with --out NEWDIR.")
    settings = AuditSettings.from_dict(header["settings"])
    missing = [c for c in settings.claims if c not in CLAIMS]
    if missing:
        raise InvalidArgument(f"expected the claims of the audit in {directory} to be registered, but {missing} "
                              f"are not (registered: {list(CLAIMS)}). Fix: resume with the theorycheck version "
                              "that started the audit.")
    for device in settings.devices:
        resolve_device(device)


def default_out() -> Path:
    """A fresh directory under audit-out/ named by the UTC time (with a suffix if it exists)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidates = (Path("audit-out") / (stamp if n == 1 else f"{stamp}-{n}") for n in range(1, 1000))
    return next(path for path in candidates if not path.exists())


def _audit(args) -> int:
    jobs = parse_jobs(args.jobs)
    if jobs > 1:
        from .workers import start_fork_server

        start_fork_server()  # its imports overlap this process's
    from .audit import clear_audit, prepare_directory, run_audit

    imports = import_claim_modules(args.imports)
    resume = args.resume is not None
    if resume:
        directory, settings = Path(args.resume), None
        prepare_directory(directory, resume=True)
        _check_resumable(args, directory)
    else:
        settings = _settings(args)  # everything is validated before the directory is touched
        directory = Path(args.out) if args.out is not None else default_out()
        prepare_directory(directory, resume=False, replace=args.replace)
        if args.replace:
            clear_audit(directory)
    try:
        report = run_audit(settings, directory, resume=resume, jobs=jobs,
                           imports=imports)
    except KeyboardInterrupt:
        from ..report import render_reports

        report = render_reports(directory)
        print(f"\ninterrupted after {report['summary']['seconds']:.1f} s of cases; finished results are in "
              f"{directory}. Continue with: theorycheck audit --resume {directory}", file=sys.stderr)
        return 130
    from ..report.summary import report_result

    summary = report["summary"]
    print(f"{report_result(report)}: {summary['cases']} cases in {summary['seconds']:.1f} s: "
          + ", ".join(f"{s} {n}" for s, n in summary["by_status"].items())
          + f"; {summary['counterexamples']} unexpected, {summary['not_run']} not run. "
          f"Reports: {directory}/report.html, report.md, report.json")
    return summary["exit_code"]


def _report(args) -> int:
    from .plan import AuditSettings
    from ..report import RESULTS, read_results, write_reports
    from ..report.summary import report_result

    if args.merge:
        from .shards import merge_shards

        if args.directory is not None or args.out is None:
            raise InvalidArgument(f"expected `theorycheck report --merge DIR... --out OUT`, but got "
                                  f"{'DIR ' + args.directory if args.directory else 'no --out'}. "
                                  "Fix: name the merged directory with --out OUT.")
        directory = Path(args.out)
        report = merge_shards([Path(d) for d in args.merge], directory)
    else:
        if args.directory is None or args.out is not None:
            raise InvalidArgument("expected `theorycheck report DIR` (or --merge DIR... --out OUT), but got "
                                  f"{'no DIR' if args.directory is None else '--out without --merge'}. "
                                  "Fix: theorycheck report DIR")
        directory = Path(args.directory)
        records = read_results(directory / RESULTS)
        if records[0]["source"] == "audit":
            AuditSettings.from_dict(records[0]["settings"])  # refuses a header without usable settings
        report = write_reports(directory, records)
    summary = report["summary"]
    print(f"re-rendered {directory}/report.json, report.md, report.html: {report_result(report)} "
          f"({summary['cases']} cases, {summary['counterexamples']} unexpected, {summary['not_run']} not run)")
    return summary["exit_code"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="theorycheck", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    imports = argparse.ArgumentParser(add_help=False)
    imports.add_argument("--import", dest="imports", metavar="MODULE[,MODULE]",
                         help="import these modules first: your own claims (theorycheck.core.kit) join the "
                              "registered ones (default: none)")
    sub.add_parser("list", help="list the claims", parents=[imports]).set_defaults(func=_list)
    contract = sub.add_parser("contract", parents=[imports],
                              help="call each claim's checker with degenerate inputs (NaN, Inf, empty, zero width, "
                                   "...): refused or inconclusive, never a raw exception or a hang")
    contract.add_argument("--claims", help="comma-separated claim ids (default: every registered claim)")
    contract.set_defaults(func=_contract)
    audit = sub.add_parser("audit", help="audit every claim on generated instances and negative controls",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           parents=[imports])
    audit.add_argument("--claims", help="comma-separated claim ids (default: every registered claim)")
    audit.add_argument("--devices", help="comma-separated devices: cpu, cuda (default: cpu)")
    audit.add_argument("--dtypes", help="comma-separated dtypes: float64, float32 (default: float64)")
    audit.add_argument("--examples", help="instances per claim, N or N,CLAIM=N,... (default: 20; each claim "
                                          "adds its negative controls)")
    audit.add_argument("--budget", help="opt-in cap: seconds per claim x device x dtype, N or N,CLAIM=N,...; a "
                                        "claim stops early when spent and its skipped cases are reported as not "
                                        "run (headline INCOMPLETE); 0 = no cap (default: 0, every case runs)")
    audit.add_argument("--seed", type=int, help="audit seed; same seed and settings give the same verdicts "
                                                "(default: 0)")
    audit.add_argument("--out", help="output directory, must not hold an audit yet unless --replace "
                                     "(default: a fresh audit-out/YYYYMMDD-HHMMSS, UTC)")
    audit.add_argument("--replace", action="store_true",
                       help="replace the audit or report already in --out (default: refuse, exit 2)")
    audit.add_argument("--shard", metavar="K/N", help="run the K-th of N disjoint parts of the planned cases "
                                                    "(by a hash of each case id); merge the N runs with "
                                                    "theorycheck report --merge (default: every case)")
    audit.add_argument("--jobs", metavar="N", help="worker processes running the cases side by side, one thread "
                                                 "each; the records are the same for any N (default: auto, the "
                                                 f"cores, at most {MAX_AUTO_JOBS}; 1: in this process; with "
                                                 "--budget the cases run in this process)")
    audit.add_argument("--resume", metavar="DIR", help="continue the interrupted audit in DIR with its "
                                                       "recorded settings, skipping finished cases")
    audit.set_defaults(func=_audit)
    report = sub.add_parser("report", help="re-render the reports of DIR from DIR/results.jsonl, or merge shards")
    report.add_argument("directory", metavar="DIR", nargs="?")
    report.add_argument("--merge", nargs="+", metavar="DIR", help="the directories of audit --shard 1/N .. N/N: "
                        "refused if their settings, seeds or versions differ, or a shard is missing or repeated")
    report.add_argument("--out", help="with --merge: the directory for the merged results and reports")
    report.set_defaults(func=_report)
    return parser


def main(argv=None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    try:
        return args.func(args)
    except InvalidArgument as error:
        print(f"theorycheck {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
