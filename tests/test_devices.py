"""Devices, dtypes and per-dtype roundoff."""

import subprocess
import sys

import pytest
import torch

import theorycheck as tc
from theorycheck.core import devices


def test_import_never_initializes_cuda():
    code = "import theorycheck, torch; import theorycheck.generate.strategies; print(torch.cuda.is_initialized())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_dtype_names_and_roundoff():
    assert devices.dtype_of("float32") is torch.float32 and devices.dtype_of(torch.float64) is torch.float64
    assert devices.unit_roundoff(torch.float64) == 2.0 ** -53
    assert devices.gamma(10, torch.float64) == pytest.approx(10 * 2.0 ** -53)
    assert devices.gamma(2**60, torch.float32) == float("inf")
    with pytest.raises(tc.InvalidArgument, match="expected a dtype in .*got 'float16'.*Fix"):
        devices.dtype_of("float16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no GPU is present")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(tc.InvalidArgument, match="torch sees no CUDA GPU. Fix: run with devices=cpu"):
        devices.resolve_device("cuda")


def test_parse_list_rejects_unknown_names():
    assert devices.parse_list("cpu, cuda", {"cpu", "cuda"}, "devices") == ["cpu", "cuda"]
    with pytest.raises(tc.InvalidArgument, match="got 'cpu,tpu'"):
        devices.parse_list("cpu,tpu", {"cpu", "cuda"}, "devices")


@pytest.mark.parametrize("worker, visible, expected", [("gw0", "2,5", "2"), ("gw3", "2,5", "5"), ("gw1", "7", "7")])
def test_xdist_workers_take_one_gpu_each(monkeypatch, worker, visible, expected):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    devices.pin_xdist_worker_to_gpu()
    assert devices.os.environ["CUDA_VISIBLE_DEVICES"] == expected
