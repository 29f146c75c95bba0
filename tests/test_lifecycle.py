"""An audit's processes and folder: workers, fork server and resource tracker die with the audit
(SIGTERM handled as Ctrl-C, SIGKILL), one writer per folder, and every flag checked before any
process starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_fake_claim
from test_cli import _usage_error, case_records, run_cli, wait_for_cases

from theorycheck.harness import workers

CLI = "import sys; from theorycheck.harness.cli import main; sys.exit(main(sys.argv[1:]))"
TESTS = str(Path(__file__).parent)


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ..., start time at 19)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def descendants(pid: int) -> list[tuple[int, str]]:
    """(PID, start time) of every process below ``pid``, read from /proc."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            children.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def alive(pid: int, start: str) -> bool:
    """Whether that very process (not a later one given its PID) still runs; a zombie does not."""
    fields = _stat(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


def _command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_workers_die_with_the_audit_and_the_folder_is_locked_meanwhile(tmp_path, fake_claims, capsys, sig):
    """An audit with two workers on a slow claim: while it runs, a resume or re-render of its folder is
    refused naming its PID; then the audit process alone gets SIGTERM (exit 143, finished cases kept, the
    resume hint) or SIGKILL, and every process it started (fork server, workers, resource tracker), taken by
    PID before the signal, is gone within 3 s of its end."""
    out = tmp_path / "audit"
    process = subprocess.Popen([sys.executable, "-c", CLI, "audit", "--import", "slow_claims", "--claims", "slow",
                                "--examples", "40", "--jobs", "2", "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": TESTS})
    try:
        wait_for_cases(out / "results.jsonl", process, 2)
        family = descendants(process.pid)
        commands = [_command(pid) for pid, _ in family]
        assert len(family) >= 4, commands  # the fork server, two workers forked from it, the resource tracker
        assert sum("forkserver" in c for c in commands) >= 3 and any("resource_tracker" in c for c in commands)
        fake_claims(make_fake_claim("slow"))
        for argv in (("audit", "--resume", out), ("report", out)):
            err = _usage_error(capsys, *argv)
            assert f"another theorycheck process writes there (PID {process.pid} " in err and "Fix:" in err
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    ended = time.monotonic()
    while time.monotonic() < ended + 3 and any(alive(*p) for p in family):
        time.sleep(0.02)
    assert [_command(pid) for pid, start in family if alive(pid, start)] == []
    if sig == signal.SIGTERM:
        assert process.returncode == 143 and "terminated (SIGTERM)" in err and f"--resume {out}" in err
        assert json.loads((out / "report.json").read_text())["complete"] is False
    else:
        assert process.returncode == -signal.SIGKILL
    assert 2 <= len(case_records(out)) < 80


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, fake_claims, capsys):
    from theorycheck.report.folder import FolderLock

    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path / "a") == 0
    with FolderLock(tmp_path / "a", "--out"):
        before = (tmp_path / "a" / "results.jsonl").read_bytes()
        for argv in (("audit", "--resume", tmp_path / "a"), ("report", tmp_path / "a"),
                     ("audit", "--claims", "fake", "--replace", "--out", tmp_path / "a")):
            assert f"(PID {os.getpid()} since " in _usage_error(capsys, *argv)
        assert (tmp_path / "a" / "results.jsonl").read_bytes() == before
    assert run_cli("report", tmp_path / "a") == 0  # released


BAD_FLAGS = [("--seed", "-1"), ("--shard", "0/2"), ("--jobs", "0"), ("--out", ""), ("--commit-from", "/nonexistent"),
             ("--claims", "nope"), ("--devices", "tpu"), ("--examples", "0"), ("--budget", "nan"),
             ("--import", "no_such_module"), ("--resume", "missing"), ("--resume", "missing", "--seed", "3")]


def test_every_flag_is_checked_before_any_process_starts(tmp_path, capsys, monkeypatch):
    def started():
        raise AssertionError("a worker process was started before the flags were checked")

    monkeypatch.setattr(workers, "start_fork_server", started)
    for flags in BAD_FLAGS:
        out = () if "--resume" in flags else ("--out", tmp_path / "out")
        err = _usage_error(capsys, "audit", "--jobs", "2", *out, *flags)
        assert "expected" in err and "Fix:" in err, flags
    assert not (tmp_path / "out").exists()


PROBE = """import sys, time
start = time.perf_counter()
from theorycheck.harness.cli import main
code = main(sys.argv[1:])
print(code, time.perf_counter() - start, "torch" in sys.modules)
"""


@pytest.mark.parametrize("flags", [("--seed", "-1"), ("--out", ""), ("--jobs", "two")])
def test_flag_errors_answer_at_once_without_importing_torch(tmp_path, flags):
    """Errors in flags that need no claim answer before torch is even imported (measured: ~0.05 s)."""
    probe = subprocess.run([sys.executable, "-c", PROBE, "audit", "--claims", "homogeneity", *flags],
                           capture_output=True, text=True, cwd=tmp_path)
    code, seconds, torch_imported = probe.stdout.split()
    assert code == "2" and torch_imported == "False" and float(seconds) < 1.0, probe
    assert "Fix:" in probe.stderr and list(tmp_path.iterdir()) == []
