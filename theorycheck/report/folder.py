"""Output folders: theorycheck writes only into a folder it created or one holding its marker file
:data:`MARKER`, and one process at a time (an exclusive, non-blocking ``flock`` on the marker, which
names the process holding it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.errors import InvalidArgument
from .records import check_writable_directory, ensure_writable_directory, now

MARKER = ".theorycheck-audit"
ABOUT = ("theorycheck writes only into a folder holding this file (results.jsonl, report.json, report.md, "
         "report.html); it is locked while a theorycheck process writes here.\n")

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder is then not locked
    fcntl = None


def check_output_folder(directory: str | Path, flag: str) -> Path:
    """The folder named by ``flag`` if theorycheck may write there: new, empty, or holding :data:`MARKER`,
    and writable; else ``InvalidArgument``. Creates and changes nothing."""
    if str(directory).strip() == "":
        raise InvalidArgument(f"expected {flag} to name a folder, but got an empty name. Fix: e.g. {flag} "
                              "audit-ci (an empty name would write into the working directory)")
    directory = Path(directory)
    if directory.is_dir() and not (directory / MARKER).is_file():
        others = sorted(p.name for p in directory.iterdir())
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise InvalidArgument(
                f"expected {flag} to name a new or empty folder, or one theorycheck wrote (it holds {MARKER}), "
                f"but {directory} holds {shown} and no {MARKER}. Fix: name a new folder, e.g. {flag} "
                f"{directory / 'theorycheck'}; if {directory} is the output of a theorycheck older than 0.3, "
                f"mark it: touch {directory / MARKER} (nothing was written)")
    check_writable_directory(directory, f"{flag} folder")
    return directory


class FolderLock:
    """Hold a checked output folder (:func:`check_output_folder`) while writing into it: create it and its
    marker, lock the marker (refused with ``InvalidArgument`` naming the holder if another process holds
    it) and write this process into it; released on exit, or when this process dies."""

    def __init__(self, directory: Path, flag: str):
        self.directory, self.flag, self._fd = Path(directory), flag, None

    def __enter__(self) -> "FolderLock":
        ensure_writable_directory(self.directory, f"{self.flag} folder")
        fd = os.open(self.directory / MARKER, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 4096).decode(errors="replace").partition("holder: ")[2].strip()
                os.close(fd)
                raise InvalidArgument(
                    f"expected {self.directory} to be free, but another theorycheck process writes there "
                    f"({holder or 'holder not yet recorded'}). Fix: wait for it to finish or stop it, or write "
                    f"elsewhere with {self.flag} NEWDIR (nothing was written)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{ABOUT}holder: PID {os.getpid()} since {now()}: {' '.join(sys.argv)}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)
