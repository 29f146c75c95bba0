"""Input and I/O errors: exit code 2 (CLI) or InvalidArgument (API) with expected / received / fix,
nothing half-written, nothing created when rejected."""

import json

import pytest
import torch
from conftest import make_fake_claim
from test_cli import _usage_error, run_cli

import theorycheck as tc


def _files(directory):
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_report_into_an_unwritable_place_changes_nothing(tmp_path, fake_claims, capsys):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    (tmp_path / "report.html").unlink()
    (tmp_path / "report.html").mkdir()  # the last of the three files cannot be written
    before = _files_flat(tmp_path)
    err = _usage_error(capsys, "report", tmp_path)
    assert "expected a writable report directory" in err and "report.html there is a directory" in err
    assert _files_flat(tmp_path) == before and not list(tmp_path.glob(".*.tmp"))


def _files_flat(directory):
    """The files, but the marker: it names the last process that held the folder (the refused one, too)."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file() and p.name != ".theorycheck-audit"}


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.pop("device"), "(a case record) has no valid 'device' (missing)"),
    (lambda r: r.update(seconds="slow"), "'seconds' (str)"),
])
def test_report_refuses_a_malformed_case_record(tmp_path, fake_claims, capsys, edit, message):
    fake_claims(make_fake_claim("fake"))
    assert run_cli("audit", "--claims", "fake", "--examples", 2, "--out", tmp_path) == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    record = json.loads(lines[2])
    edit(record)
    lines[2] = json.dumps(record)
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n")
    before = _files(tmp_path)
    err = _usage_error(capsys, "report", tmp_path)
    assert "line 3" in err and message in err and "Fix:" in err and _files(tmp_path) == before


@pytest.mark.parametrize("header", [{"record": "header", "schema_version": 1, "source": "audit"},
                                    {"record": "header", "schema_version": 1, "source": "audit", "settings": {}}])
def test_report_refuses_a_results_file_without_settings(tmp_path, capsys, header):
    (tmp_path / ".theorycheck-audit").touch()
    (tmp_path / "results.jsonl").write_text(json.dumps(header) + "\n")
    err = _usage_error(capsys, "report", tmp_path)
    assert "settings" in err and "Fix:" in err
    assert _files(tmp_path) == {"results.jsonl": (json.dumps(header) + "\n").encode(), ".theorycheck-audit": b""}


@pytest.mark.parametrize("argv, message", [
    (("--seed", "-5"), "expected --seed as an integer in [0, 2**63), but got -5"),
    (("--claims", "homogenety"), "did you mean 'homogeneity' for 'homogenety'?"),
    (("--claims", "layer_balanse,kkt"), "did you mean 'layer_balance'"),
])
def test_rejected_audits_create_nothing(tmp_path, capsys, argv, message):
    err = _usage_error(capsys, "audit", *argv, "--out", tmp_path / "new" / "out")
    assert message in err and "Fix:" in err
    assert not (tmp_path / "new").exists()


def test_checker_input_errors_name_what_was_expected():
    model = torch.nn.Sequential(torch.nn.Linear(10, 4, bias=False), torch.nn.ReLU(),
                                torch.nn.Linear(4, 1, bias=False)).double()
    with pytest.raises(tc.InvalidArgument, match=r"expected x of shape \(batch, \.\.\., 10\) .*got shape \(5, 7\)"):
        tc.check_homogeneity(model, torch.randn(5, 7, dtype=torch.float64))
    with pytest.raises(tc.InvalidArgument, match="expected model as a torch.nn.Module.*got function.*Fix:"):
        tc.check_homogeneity(lambda x: x.sum(1), torch.randn(5, 10, dtype=torch.float64))
    conv = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, bias=False)), torch.nn.ReLU()).double()
    with pytest.raises(tc.InvalidArgument, match=r"\(batch, 3, H, W\).*got shape \(2, 1, 8, 8\)"):
        tc.check_homogeneity(conv, torch.randn(2, 1, 8, 8, dtype=torch.float64))
    assert tc.check_homogeneity(model, torch.randn(5, 10, dtype=torch.float64)).status == "holds"  # at the edge


def test_shape_is_not_guessed_for_modules_it_cannot_read():
    from theorycheck.core.inputs import as_batch

    class Head(torch.nn.Module):  # registers its last layer first: no shape is inferred
        def __init__(self):
            super().__init__()
            self.out, self.body = torch.nn.Linear(4, 1), torch.nn.Linear(6, 4)

    x = torch.randn(3, 6)
    assert as_batch(x, Head()) is x
    assert as_batch(x, torch.nn.Sequential(torch.nn.LazyLinear(2))) is x
