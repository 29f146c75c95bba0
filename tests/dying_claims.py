"""A claim whose case ``instance-3`` kills the worker process running it (``--import dying_claims``), for the
tests of a worker's death; with DYING_AT_START=1 a worker dies while importing this module instead."""

import dataclasses
import multiprocessing
import os
import signal

from conftest import make_fake_claim

from theorycheck.core.registry import register

in_a_worker = multiprocessing.parent_process() is not None
if in_a_worker and os.environ.get("DYING_AT_START"):
    os.kill(os.getpid(), signal.SIGKILL)

_base = make_fake_claim("dying")


def _die():
    if not in_a_worker:  # never the audit's own process
        raise RuntimeError("dying_claims: instance-3 runs only in a worker process")
    os.kill(os.getpid(), signal.SIGKILL)


def _audit_cases(*, n, seed, device, dtype):
    for case in _base.audit_cases(n=n, seed=seed, device=device, dtype=dtype):
        yield dataclasses.replace(case, run=_die) if case.name == "instance-3" else case


def dying_checker(*args, **kwargs):
    return _base.checker(*args, **kwargs)


register(dataclasses.replace(_base, audit_cases=_audit_cases, checker=dying_checker))
