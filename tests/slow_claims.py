"""A fake claim whose cases take 0.3 s each (``--import slow_claims``; its checker is this module's, so
worker processes run it), for the tests that stop an audit while its workers run."""

import dataclasses

from conftest import make_fake_claim

from theorycheck.core.registry import register

_base = make_fake_claim("slow", delay=0.3)


def slow_checker(*args, **kwargs):
    return _base.checker(*args, **kwargs)


register(dataclasses.replace(_base, checker=slow_checker))
