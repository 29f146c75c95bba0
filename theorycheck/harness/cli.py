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

Output folders: theorycheck writes only into a new or empty folder, or one it wrote before (it holds
its marker file .theorycheck-audit), and one process at a time (a second audit, resume or report on
a folder in use is refused, naming the process that holds it).

Exit codes: 0 every instance held (or was inconclusive) and every negative control was caught;
1 a claim was violated, a control was not caught, a checker raised, or no case was recorded; 2 bad
input or an I/O error (nothing run, nothing created, nothing already written changed); 3 INCOMPLETE:
no counterexample, but a planned case did not run (budget cap, or a merged or re-rendered audit that
was interrupted); --allow-incomplete turns it into 0; 130 interrupted by Ctrl-C, 143 by SIGTERM
(finished results kept: continue with --resume).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import math
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from ..core.errors import InvalidArgument

SETTINGS_FLAGS = ("claims", "devices", "dtypes", "examples", "budget", "seed", "shard")


def import_claim_modules(text: str | None) -> list[str]:
    """Import the user's claim modules named by ``--import a,b.c`` (found from the working directory), so
    the claims they declare are registered before the audit plans its cases; returns their names. A module
    that is not found, or that raises, is an ``InvalidArgument`` summarising its error in one line."""
    import importlib

    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or not (name == error.name or name.startswith(error.name + ".")):
                raise _import_failed(name, error) from None  # the module imports something missing
            raise InvalidArgument(f"expected --import to name Python modules importable from the working directory, "
                                  f"but importing {name!r} failed: {error}. Fix: run from the folder holding "
                                  f"{name.replace('.', '/')}.py, or put it on PYTHONPATH") from None
        except Exception as error:
            raise _import_failed(name, error) from None
    return names


def _import_failed(name: str, error: Exception) -> InvalidArgument:
    """The error of a module that raised while imported, in one line: its type, message and where."""
    if isinstance(error, SyntaxError):
        where, text = f"{error.filename}:{error.lineno}", error.msg
    else:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if not f.filename.startswith("<")]
        where, text = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else name, str(error)
    message = " ".join(text.split())[:300]
    return InvalidArgument(f"expected --import {name} to import, but it raised {type(error).__name__}: {message} "
                           f"(at {where}). Fix: correct the module; python -c 'import {name}' shows the whole "
                           "traceback")


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


def _settings(args, seed: int, shard: tuple[int, int] | None):
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
    return AuditSettings(claims=tuple(claims), devices=tuple(devices), dtypes=tuple(dtypes), examples=examples,
                         budget=budget, seed=seed, shard=shard)


def parse_seed(seed: int | None) -> int:
    """``--seed``: an integer in [0, 2**63), 0 when not given."""
    seed = seed if seed is not None else 0
    if not 0 <= seed < 2**63:
        raise InvalidArgument(f"expected --seed as an integer in [0, 2**63), but got {seed}. Fix: e.g. --seed 7")
    return seed


def parse_commit_from(text: str | None) -> Path | None:
    """``--commit-from DIR``: a folder inside a git checkout (the audited project), or None."""
    from ..report.records import git_commit

    if text is None:
        return None
    if not Path(text).is_dir() or git_commit(Path(text)) is None:
        raise InvalidArgument(f"expected --commit-from to name a folder inside a git checkout (the project you "
                              f"audit), but {text!r} is {'not one' if Path(text).is_dir() else 'no folder'}. "
                              "Fix: e.g. --commit-from . from your project's checkout, or leave it out (the report "
                              "then names the working directory's commit as such)")
    return Path(text)


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


def _resume_folder(args) -> str:
    """The folder of ``--resume DIR``, after checking that no flag contradicts it."""
    from ..report import RESULTS

    directory = args.resume
    given = [f"--{flag}" for flag in SETTINGS_FLAGS if getattr(args, flag) is not None]
    given += ["--replace"] * bool(args.replace)
    if given:
        raise InvalidArgument(f"expected --resume alone (it continues with the settings recorded in "
                              f"{Path(directory) / RESULTS}), but got {' '.join(given)} as well. Fix: drop those flags, "
                              "or start a new audit with --out NEWDIR.")
    if args.out is not None and Path(args.out) != Path(directory):
        raise InvalidArgument(f"expected one directory, but got --out {args.out} and --resume {directory}. "
                              "Fix: --resume DIR writes into DIR; drop --out.")
    return directory


def _check_resumable(directory: Path, force_version: bool) -> None:
    from .audit import check_consistent
    from .plan import AuditSettings
    from ..core.devices import resolve_device
    from ..core.registry import CLAIMS
    from ..report import RESULTS, read_results
    from ..report.records import VERSIONED, versions

    records = read_results(directory / RESULTS)
    header = records[0]
    if header.get("source") != "audit":
        raise InvalidArgument(f"expected an audit to resume in {directory}, but it holds the report of a "
                              f"{header.get('source')!r} session. Fix: `theorycheck report {directory}` re-renders it; "
                              "start an audit with --out NEWDIR.")
    recorded, installed = (header.get("environment") or {}).get("versions") or {}, versions()
    differ = [f"{k} {recorded.get(k)} (installed: {installed[k]})" for k in VERSIONED if recorded.get(k) != installed[k]]
    if differ and not force_version:
        raise InvalidArgument(f"expected the theorycheck and torch versions that started the audit in {directory}, "
                              f"but it was started with {', '.join(differ)}. Fix: resume with those versions, audit "
                              "afresh with --out NEWDIR, or pass --force-version to continue anyway (the report then "
                              "names both versions)")
    settings = AuditSettings.from_dict(header["settings"])
    missing = [c for c in settings.claims if c not in CLAIMS]
    if missing:
        raise InvalidArgument(f"expected the claims of the audit in {directory} to be registered, but {missing} "
                              f"are not (registered: {list(CLAIMS)}). Fix: resume with the theorycheck version "
                              "that started the audit.")
    for device in settings.devices:
        resolve_device(device)
    check_consistent(records, directory)


def default_out() -> Path:
    """A fresh directory under audit-out/ named by the UTC time (with a suffix if it exists)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidates = (Path("audit-out") / (stamp if n == 1 else f"{stamp}-{n}") for n in range(1, 1000))
    return next(path for path in candidates if not path.exists())


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C (exit code 143)."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within: SIGTERM raises :class:`Terminated` in the main thread (elsewhere nothing changes)."""
    def stop(signum, frame):
        raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


INCOMPLETE = 3  # the exit code of an INCOMPLETE audit (unless --allow-incomplete)


def exit_code(report: dict, allow_incomplete: bool) -> int:
    code = report["summary"]["exit_code"]
    return 0 if code == INCOMPLETE and allow_incomplete else code


def _audit(args) -> int:
    """Check every flag (answering in well under a second where no claim must be looked up), then the
    claims and the folder; only then hold the folder, start worker processes and run."""
    from ..report.folder import FolderLock, check_output_folder

    jobs = parse_jobs(args.jobs)
    commit_from = parse_commit_from(args.commit_from)
    resume = args.resume is not None
    flag = "--resume" if resume else "--out"
    if resume:
        directory = check_output_folder(_resume_folder(args), flag)
    else:
        seed, shard = parse_seed(args.seed), parse_shard(args.shard)
        directory = check_output_folder(default_out() if args.out is None else args.out, flag)
    from .audit import clear_audit, prepare_directory, run_audit

    imports = import_claim_modules(args.imports)
    if resume:
        settings = None
        prepare_directory(directory, resume=True)
        _check_resumable(directory, args.force_version)
    else:
        settings = _settings(args, seed, shard)
        prepare_directory(directory, resume=False, replace=args.replace)
    with FolderLock(directory, flag), sigterm_as_interrupt():
        prepare_directory(directory, resume=resume, replace=args.replace)  # again: another process may have written
        if args.replace:
            clear_audit(directory)
        start = time.perf_counter()
        try:
            report = run_audit(settings, directory, resume=resume, jobs=jobs, imports=imports,
                               commit_from=commit_from)
        except KeyboardInterrupt as stop:
            from ..report import render_reports

            render_reports(directory)
            what = "terminated (SIGTERM)" if isinstance(stop, Terminated) else "interrupted"
            print(f"\n{what} after {time.perf_counter() - start:.1f} s; finished results are in {directory}. "
                  f"Continue with: theorycheck audit --resume {directory}", file=sys.stderr)
            return 143 if isinstance(stop, Terminated) else 130
    from ..report.summary import report_result

    summary = report["summary"]
    print(f"{report_result(report)}: {summary['cases']} cases in {time.perf_counter() - start:.1f} s wall time "
          f"({summary['seconds']:.1f} s summed over the cases): "
          + ", ".join(f"{s} {n}" for s, n in summary["by_status"].items())
          + f"; {summary['counterexamples']} unexpected, {summary['not_run']} not run. "
          f"Reports: {directory}/report.html, report.md, report.json")
    return exit_code(report, args.allow_incomplete)


def _report(args) -> int:
    from ..report import RESULTS, read_results, write_reports
    from ..report.folder import FolderLock, check_output_folder
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
        from .audit import check_consistent

        if args.directory is None or args.out is not None:
            raise InvalidArgument("expected `theorycheck report DIR` (or --merge DIR... --out OUT), but got "
                                  f"{'no DIR' if args.directory is None else '--out without --merge'}. "
                                  "Fix: theorycheck report DIR")
        directory = check_output_folder(args.directory, "report DIR")
        records = read_results(directory / RESULTS)
        if records[0]["source"] == "audit":
            check_consistent(records, directory)  # what --resume would refuse is refused here too
        with FolderLock(directory, "report DIR"):
            report = write_reports(directory, records)
    summary = report["summary"]
    print(f"re-rendered {directory}/report.json, report.md, report.html: {report_result(report)} "
          f"({summary['cases']} cases, {summary['counterexamples']} unexpected, {summary['not_run']} not run)")
    return exit_code(report, args.allow_incomplete)


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
    audit.add_argument("--out", help="output directory: new, empty, or written by theorycheck before (it holds "
                                     ".theorycheck-audit) and without an audit yet unless --replace (default: a "
                                     "fresh audit-out/YYYYMMDD-HHMMSS, UTC)")
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
    audit.add_argument("--force-version", action="store_true",
                       help="with --resume: continue an audit started by another theorycheck or torch version; "
                            "the report names both (default: refuse, exit 2)")
    audit.add_argument("--commit-from", metavar="DIR",
                       help="record the git commit of DIR, the project you audit, in the report (default: the "
                            "working directory's commit, labelled as such)")
    audit.set_defaults(func=_audit)
    report = sub.add_parser("report", help="re-render the reports of DIR from DIR/results.jsonl, or merge shards")
    report.add_argument("directory", metavar="DIR", nargs="?")
    report.add_argument("--merge", nargs="+", metavar="DIR", help="the directories of audit --shard 1/N .. N/N: "
                        "refused if their settings, seeds or versions differ, or a shard is missing or repeated")
    report.add_argument("--out", help="with --merge: the directory for the merged results and reports")
    report.set_defaults(func=_report)
    for command in (audit, report):
        command.add_argument("--allow-incomplete", action="store_true",
                             help=f"exit 0 for an INCOMPLETE audit (a planned case not run: budget, interruption) "
                                  f"with no counterexample (default: exit {INCOMPLETE})")
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
