"""Worker processes die with the audit, whatever ends it (SIGKILL included).

On Linux the fork server and each worker ask the kernel for SIGKILL when their parent exits
(``prctl(PR_SET_PDEATHSIG)``): the audit's death kills the fork server, whose death kills the
workers. Everywhere each worker also runs a thread that waits on its audit process's sentinel (a
pipe the audit holds open) and exits the moment it closes. With the workers gone, the fork server
and the resource tracker read the end of their pipes and exit too. Both ignore SIGTERM: the audit
handles it (like Ctrl-C) and stops them itself.

The fork server imports this module at its start (``workers.PRELOADED``) with :data:`FORK_SERVER_OF`
set in its environment to the audit's PID; elsewhere importing it changes nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

FORK_SERVER_OF = "THEORYCHECK_FORK_SERVER_OF"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent exits (nothing elsewhere)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def watch_parent() -> None:
    """Exit this process (code 1) as soon as its multiprocessing parent exits: a daemon thread waiting on
    the parent's sentinel, which closes however the parent dies."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:
            parent.join()
            os._exit(1)

        threading.Thread(target=watch, name="theorycheck-parent-watch", daemon=True).start()


if os.environ.get(FORK_SERVER_OF):  # this is the fork server of the audit with that PID
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    if str(os.getppid()) != os.environ.pop(FORK_SERVER_OF):  # the audit died before the request
        os._exit(1)
