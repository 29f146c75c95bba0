"""``results.jsonl``: the append-only record of an audit or a test session (format: SCHEMA.md).

One JSON object per line, each flushed as soon as it is decided, so an interrupted run keeps every
finished result. The first line is the ``header`` (settings, environment, claim metadata); then
``case`` lines (one verdict each), ``resume`` lines and a final ``end`` line.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..core.errors import InvalidArgument

SCHEMA_VERSION = 1
RESULTS = "results.jsonl"
OUTCOMES = ("expected", "inconclusive", "unexpected")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def outcome_of(kind: str, expected, status: str) -> str:
    """``expected`` if the status is one the case allows; an instance that could not decide is
    ``inconclusive`` (accepted); anything else (a violated instance, an uncaught control, an error)
    is ``unexpected``: a counterexample to report."""
    if status in (expected or ()):
        return "expected"
    if kind == "instance" and status == "inconclusive":
        return "inconclusive"
    return "unexpected"


def git_commit(path: Path, of: str = "working directory") -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``path``, if there is one, labelled by what it
    is the commit ``of`` (the working directory, or the audited project named by ``--commit-from``)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
                "of": of, "path": str(Path(path).absolute())}
    except (OSError, subprocess.SubprocessError):
        return None


VERSIONED = ("theorycheck", "torch")  # an audit's parts (shards, resumed runs) must agree on these


def versions() -> dict[str, str | None]:
    """The installed versions of theorycheck and the libraries its verdicts depend on."""
    found = {}
    for package in ("theorycheck", "torch", "numpy", "scipy", "hypothesis", "matplotlib", "pytest", "pytest-xdist"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def environment(devices: Iterable[str] = ("cpu",), commit_from: Path | None = None) -> dict[str, Any]:
    """Machine, versions and commit: of ``commit_from`` (the audited project) if given, else of the working
    directory, labelled as such. CUDA is queried only when a CUDA device is in ``devices``."""
    env = {"machine": {"platform": platform.platform(), "arch": platform.machine(),
                       "processor": platform.processor() or None, "cpus": os.cpu_count()},
           "python": sys.version.split()[0], "versions": versions(),
           "git": git_commit(commit_from, "audited project") if commit_from else git_commit(Path.cwd())}
    if any(str(d).startswith("cuda") for d in devices):
        import torch

        env["cuda"] = {"torch_cuda": torch.version.cuda,
                       "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    return env


def case_record(*, claim: str, device: str, dtype: str, case: str, kind: str, expected, status: str,
                reproduce: str = "", size: int = 0, size_unit: str = "parameters", seconds: float = 0.0,
                verdict: Mapping | None = None,
                error: str | None = None, outcome: str | None = None) -> dict[str, Any]:
    """One ``case`` line; ``outcome`` defaults to :func:`outcome_of`."""
    expected = sorted(expected) if expected is not None else None
    return {"record": "case", "claim": claim, "device": device, "dtype": dtype, "case": case, "kind": kind,
            "expected": expected, "status": status,
            "outcome": outcome or outcome_of(kind, expected, status), "reproduce": reproduce,
            "size": int(size), "size_unit": size_unit, "seconds": round(float(seconds), 6), "verdict": verdict, "error": error}


def record_line(record: Mapping[str, Any]) -> str:
    """One line of ``results.jsonl`` (strict JSON, newline-terminated)."""
    return json.dumps(record, sort_keys=False, allow_nan=False, default=str) + "\n"


class ResultsWriter:
    """Append records to ``results.jsonl``, each line written whole and unbuffered."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: Mapping[str, Any]) -> None:
        line = memoryview(record_line(record).encode())
        while line:  # os.write may write less than asked (a signal, a full disk's last blocks)
            line = line[os.write(self._fd, line):]

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _corrupt(path: Path, where: str, fix: str) -> InvalidArgument:
    return InvalidArgument(f"expected a theorycheck results file (JSON lines, schema version {SCHEMA_VERSION}), "
                           f"but {path} {where}. Fix: {fix}")


FIELDS = {  # record type -> required field: type (SCHEMA.md)
    "header": {"schema_version": int, "source": str, "settings": dict},
    "group": {"claim": str, "device": str, "dtype": str, "planned": int},
    "case": {"claim": str, "device": str, "dtype": str, "case": str, "kind": str, "status": str,
             "outcome": str, "seconds": (int, float)},
    "resume": {}, "end": {},
}


def _check_fields(path: Path, number: int, record: Mapping[str, Any]) -> None:
    """Every record type has its required fields with the right types (else an error naming them)."""
    kind = record["record"]
    fix = "restore the file, or audit afresh into a new --out directory"
    if kind not in FIELDS:
        raise _corrupt(path, f"line {number} has an unknown record type {kind!r} (known: {sorted(FIELDS)})", fix)
    wrong = [f"{name!r} ({'missing' if name not in record else type(record[name]).__name__})"
             for name, types in FIELDS[kind].items()
             if not isinstance(record.get(name), types) or isinstance(record.get(name), bool)]
    if wrong:
        raise _corrupt(path, f"line {number} (a {kind} record) has no valid {', '.join(wrong)}", fix)


def read_results(path: Path, *, repair_torn_tail: bool = False) -> list[dict[str, Any]]:
    """Read and validate ``results.jsonl``.

    A last line without its newline is a write cut short by a kill: it holds no finished result, so
    it is ignored (and cut off the file when ``repair_torn_tail``, before appending). Any other
    unreadable line, a missing header or another schema version is an error naming the line.
    """
    path = Path(path)
    fix = "point at the directory of a theorycheck audit, or start a new one with --out NEWDIR"
    if not path.is_file():
        raise InvalidArgument(f"expected {RESULTS} in {path.parent}, but there is none. Fix: {fix}")
    data = path.read_bytes()
    complete = data if data.endswith(b"\n") or not data else data[: data.rfind(b"\n") + 1]
    records = []
    for number, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise _corrupt(path, f"line {number} is not JSON ({error.msg}): {line[:80]!r}",
                           "restore the file, or audit afresh into a new --out directory") from None
        if not isinstance(record, dict) or "record" not in record:
            raise _corrupt(path, f"line {number} is not a record: {line[:80]!r}",
                           "restore the file, or audit afresh into a new --out directory")
        records.append(record)
    if not records or records[0]["record"] != "header":
        raise _corrupt(path, "does not start with a header line", fix)
    version = records[0].get("schema_version")
    if version != SCHEMA_VERSION:
        raise _corrupt(path, f"has schema version {version!r}",
                       "re-render it with the theorycheck version that wrote it, or audit afresh")
    for number, record in enumerate(records, 1):
        _check_fields(path, number, record)
    if repair_torn_tail and len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    return records


def _not_writable(directory: Path, what: str, error: OSError | str) -> InvalidArgument:
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error.strerror or error}"
    return InvalidArgument(f"expected a writable {what}, but {directory} is not ({reason}). "
                           "Fix: pass a directory you can write to.")


def check_writable_directory(directory: Path, what: str = "output directory") -> None:
    """Check that ``directory`` exists and takes files, or could be created; create nothing."""
    directory = Path(directory).absolute()
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        raise _not_writable(directory, what, f"{existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise _not_writable(directory, what, error) from None


def ensure_writable_directory(directory: Path, what: str = "output directory") -> None:
    """Create ``directory`` if needed, after checking it can take files (changing nothing else)."""
    check_writable_directory(directory, what)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _not_writable(directory, what, error) from None


def write_texts_atomic(files: Mapping[Path, str], what: str = "report directory") -> None:
    """Write every file through a temporary name, then move them all in place: a failure leaves the
    old files as they were and no temporary behind (it raises ``InvalidArgument``)."""
    staged: dict[Path, Path] = {}
    try:
        for path, text in files.items():
            if path.is_dir():
                raise _not_writable(path.parent, what, f"{path.name} there is a directory")
            tmp = staged[path] = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text, encoding="utf-8")
    except OSError as error:
        _discard(staged.values())
        raise _not_writable(next(iter(files)).parent, what, error) from None
    except InvalidArgument:
        _discard(staged.values())
        raise
    for path, tmp in staged.items():
        os.replace(tmp, path)


def _discard(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except OSError:
            pass


def write_text_atomic(path: Path, text: str) -> None:
    """Write one file through a temporary name, so a failure never leaves half a file."""
    write_texts_atomic({Path(path): text})
