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
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument

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


def git_commit(path: Path) -> dict[str, Any] | None:
    """Commit and dirty flag of the git checkout holding ``path``, if there is one."""
    def git(*args):
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return None


def environment(devices: Iterable[str] = ("cpu",)) -> dict[str, Any]:
    """Machine, versions and commit. CUDA is queried only when a CUDA device is in ``devices``."""
    versions = {}
    for package in ("theorycheck", "torch", "numpy", "scipy", "hypothesis", "matplotlib", "pytest", "pytest-xdist"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    env = {"machine": {"platform": platform.platform(), "arch": platform.machine(),
                       "processor": platform.processor() or None, "cpus": os.cpu_count()},
           "python": sys.version.split()[0], "versions": versions,
           "git": git_commit(Path(__file__).resolve().parent)}
    if any(str(d).startswith("cuda") for d in devices):
        import torch

        env["cuda"] = {"torch_cuda": torch.version.cuda,
                       "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    return env


def case_record(*, claim: str, device: str, dtype: str, case: str, kind: str, expected, status: str,
                reproduce: str = "", size: int = 0, seconds: float = 0.0, verdict: Mapping | None = None,
                error: str | None = None, outcome: str | None = None) -> dict[str, Any]:
    """One ``case`` line; ``outcome`` defaults to :func:`outcome_of`."""
    expected = sorted(expected) if expected is not None else None
    return {"record": "case", "claim": claim, "device": device, "dtype": dtype, "case": case, "kind": kind,
            "expected": expected, "status": status,
            "outcome": outcome or outcome_of(kind, expected, status), "reproduce": reproduce,
            "size": int(size), "seconds": round(float(seconds), 6), "verdict": verdict, "error": error}


class ResultsWriter:
    """Append records to ``results.jsonl``, one ``write`` per line, flushed at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=False, allow_nan=False, default=str) + "\n"
        os.write(self._fd, line.encode())

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _corrupt(path: Path, where: str, fix: str) -> InvalidArgument:
    return InvalidArgument(f"expected a theorycheck results file (JSON lines, schema version {SCHEMA_VERSION}), "
                           f"but {path} {where}. Fix: {fix}")


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
    if repair_torn_tail and len(complete) != len(data):
        with open(path, "r+b") as handle:
            handle.truncate(len(complete))
    return records


def ensure_writable_directory(directory: Path, what: str = "output directory") -> None:
    """Create ``directory`` if needed and check that files can be written there (changing nothing else)."""
    probe = Path(directory) / ".theorycheck-write-test"
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise InvalidArgument(f"expected a writable {what}, but {directory} is not ({type(error).__name__}: "
                              f"{error.strerror or error}). Fix: pass a directory you can write to.") from None


def write_text_atomic(path: Path, text: str) -> None:
    """Write a file through a temporary name, so a failure never leaves half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
