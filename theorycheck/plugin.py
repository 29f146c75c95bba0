"""The pytest plugin (entry point ``pytest11``): device/dtype parametrization of claim tests.

A test that asks for the fixtures ``tc_device`` and ``tc_dtype`` runs once per device and dtype,
with ids like ``test_homogeneity[cpu-float64]``; CUDA cases skip with a stated reason when no GPU is
present. torch is imported lazily, so loading the plugin costs nothing for other test suites.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("theorycheck", "theorycheck: theorems under test")
    group.addoption("--theorycheck-devices", default="cpu,cuda",
                    help="comma-separated devices for claim tests (default: cpu,cuda; cuda skips without a GPU)")
    group.addoption("--theorycheck-dtypes", default="float64,float32",
                    help="comma-separated dtypes for claim tests (default: float64,float32)")
    group.addoption("--theorycheck-profile", default=None,
                    help="Hypothesis profile: ci (fast), thorough (long runs) or dev "
                         "(default: $THEORYCHECK_PROFILE, else ci)")


def pytest_configure(config):
    from .devices import pin_xdist_worker_to_gpu
    from .profiles import load_profile

    pin_xdist_worker_to_gpu()
    load_profile(config.getoption("--theorycheck-profile") or os.environ.get("THEORYCHECK_PROFILE", "ci"))


def pytest_generate_tests(metafunc):
    if "tc_device" not in metafunc.fixturenames:
        return
    from .devices import DTYPES, cuda_available, parse_list

    devices = parse_list(metafunc.config.getoption("--theorycheck-devices"), {"cpu", "cuda"}, "devices")
    dtypes = (parse_list(metafunc.config.getoption("--theorycheck-dtypes"), set(DTYPES), "dtypes")
              if "tc_dtype" in metafunc.fixturenames else [None])
    params = []
    for device in devices:
        marks = [pytest.mark.cuda, pytest.mark.skipif(not cuda_available(), reason="CUDA requested but "
                 "torch sees no GPU on this machine")] if device.startswith("cuda") else []
        for dtype in dtypes:
            values = (device, dtype) if dtype else (device,)
            params.append(pytest.param(*values, marks=marks, id="-".join(v for v in values)))
    names = "tc_device,tc_dtype" if dtypes != [None] else "tc_device"
    metafunc.parametrize(names, params)
