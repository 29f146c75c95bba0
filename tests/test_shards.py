"""audit --shard K/N and report --merge: N shards run exactly the unsharded audit's cases, merged
verdicts equal the unsharded ones case by case; mismatched, overlapping or missing shards are refused."""

import json

import pytest
from conftest import make_fake_claim
from test_cli import _usage_error, case_records, run_cli, verdicts_by_case

AUDIT = ("audit", "--claims", "fake,other", "--examples", 7)


@pytest.fixture
def two_claims(fake_claims):
    fake_claims(make_fake_claim("fake", flaw="uncaught"), make_fake_claim("other"))


@pytest.mark.parametrize("n", [1, 3, 7])
def test_merged_shards_equal_the_unsharded_audit(tmp_path, two_claims, n):
    assert run_cli(*AUDIT, "--out", tmp_path / "whole") == 1
    shards = [tmp_path / f"shard{k}" for k in range(1, n + 1)]
    for k, directory in enumerate(shards, 1):
        run_cli(*AUDIT, "--shard", f"{k}/{n}", "--out", directory)
    sizes = [len(case_records(d)) for d in shards]
    assert sum(sizes) == 28 and (n == 1 or max(sizes) < 28)
    assert run_cli("report", "--merge", *shards, "--out", tmp_path / "merged") == 1
    assert verdicts_by_case(tmp_path / "merged") == verdicts_by_case(tmp_path / "whole")
    merged, whole = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("merged", "whole"))
    untimed = [{k: v for k, v in r["summary"].items() if k not in ("seconds", "wall_seconds")} for r in (merged, whole)]
    assert untimed[0] == untimed[1] and merged["settings"] == whole["settings"] and merged["complete"]
    assert [g["planned"] for c in merged["claims"].values() for g in c["results"]] == [14, 14]


def test_merge_refuses_mismatched_overlapping_or_missing_shards(tmp_path, two_claims, capsys):
    for name, extra in (("a", ("--shard", "1/3")), ("b", ("--shard", "2/3")), ("c", ("--shard", "3/3")),
                        ("seed", ("--shard", "3/3", "--seed", 4)), ("two", ("--shard", "2/2")),
                        ("whole", ())):
        run_cli(*AUDIT, *extra, "--out", tmp_path / name)
    for dirs, message in ((("a", "b", "seed"), "seed 4 in"), (("a", "b", "b"), "overlapping shards 2/3 in"),
                          (("a", "c"), "missing shards 2/3"), (("a", "two"), "different numbers of shards"),
                          (("a", "whole"), "holds an unsharded audit")):
        err = _usage_error(capsys, "report", "--merge", *(tmp_path / d for d in dirs), "--out", tmp_path / "m")
        assert message in err and "Fix:" in err and not (tmp_path / "m").exists()
    assert "--shard K/N" in _usage_error(capsys, *AUDIT, "--shard", "4/3", "--out", tmp_path / "x")
    assert "expected --resume alone" in _usage_error(capsys, "audit", "--resume", tmp_path / "a", "--shard", "1/3")


def test_a_merge_with_an_interrupted_shard_is_incomplete(tmp_path, two_claims):
    """A shard cut short (no end record): the merge is INCOMPLETE, exit 3 unless --allow-incomplete."""
    shards = [tmp_path / f"s{k}" for k in (1, 2)]
    for k, directory in enumerate(shards, 1):
        assert run_cli("audit", "--claims", "other", "--examples", 5, "--shard", f"{k}/2", "--out", directory) == 0
    results = shards[1] / "results.jsonl"
    results.write_text("".join(results.read_text().splitlines(keepends=True)[:-1]))
    assert run_cli("report", "--merge", *shards, "--out", tmp_path / "merged") == 3
    assert run_cli("report", "--merge", *shards, "--allow-incomplete", "--out", tmp_path / "allowed") == 0
    assert json.loads((tmp_path / "allowed" / "report.json").read_text())["complete"] is False


def test_shards_of_a_real_claim_give_its_verdicts(tmp_path):
    argv = ("audit", "--claims", "homogeneity", "--examples", 3)
    assert run_cli(*argv, "--out", tmp_path / "whole") == 0
    for k in (1, 2):
        run_cli(*argv, "--shard", f"{k}/2", "--out", tmp_path / f"s{k}")
    assert run_cli("report", "--merge", tmp_path / "s2", tmp_path / "s1", "--out", tmp_path / "merged") == 0
    assert verdicts_by_case(tmp_path / "merged") == verdicts_by_case(tmp_path / "whole")


@pytest.mark.slow
def test_the_default_audit_in_3_shards_merges_to_the_unsharded_audit(tmp_path):
    """Every registered claim at the default settings (about a minute per audit on 2 cores)."""
    assert run_cli("audit", "--out", tmp_path / "whole") == 0
    for k in (1, 2, 3):
        run_cli("audit", "--shard", f"{k}/3", "--out", tmp_path / f"s{k}")
    assert run_cli("report", "--merge", *(tmp_path / f"s{k}" for k in (1, 2, 3)), "--out", tmp_path / "merged") == 0
    assert verdicts_by_case(tmp_path / "merged") == verdicts_by_case(tmp_path / "whole")
    merged, whole = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("merged", "whole"))
    assert merged["summary"]["by_status"] == whole["summary"]["by_status"] and merged["complete"]
