"""examples/ci/: the pipelines a knowledge-base team copies into its own CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.junit_schema import check_junit

REPO = Path(__file__).resolve().parents[1]
GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"
# Steps these tests cannot take here: GitHub's own actions (the clone stands in for the
# checkout, this interpreter for setup-python; nothing is uploaded) and the install
# (this venv stands in for it, with the clone's code first on the path).
NOT_RUN_HERE = [
    "actions/checkout@v4",
    "actions/setup-python@v5",
    "Install",
    "Keep the JUnit file and the HTML report",
]


def github_job() -> dict:
    workflow = yaml.safe_load(GITHUB.read_text("utf-8"))
    (job,) = workflow["jobs"].values()
    assert workflow["defaults"]["run"]["shell"] == "bash"
    return job


def run_steps(job: dict, checkout: Path, env: dict) -> tuple[list[str], str | None, int]:
    """The job's `run:` steps in order, as GitHub runs them (`shell: bash` is
    `bash --noprofile --norc -eo pipefail`), until one fails. Returns the steps not run
    here, the failed step's name (None) and its exit status (0)."""
    skipped = []
    for step in job["steps"]:
        name = step.get("name") or step.get("uses")
        if "uses" in step or "pip install" in step["run"]:
            skipped.append(name)
            continue
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=checkout,
            env={**env, **job.get("env", {}), **step.get("env", {})},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode:
            print(result.stdout, result.stderr, sep="\n")  # shown when the test fails
            return skipped, name, result.returncode
    return skipped, None, 0


def test_the_github_workflow_passes_from_a_clean_checkout_and_fails_on_a_worse_setting(
    tmp_path, e5_dir
):
    """`act` cannot run here, so this runs the workflow's own `run:` commands, in order,
    in a fresh clone of HEAD (committed files only, as CI sees them). Skipped, and only
    these: the `uses:` steps (checkout, setup-python, upload-artifact) and the install
    step (pip install): the venv running the tests stands in for it, the clone's code
    first on PYTHONPATH. RAG_EMBEDDING_MODEL points at the session's copy of the bundled
    model (the same weights the default materialises) so it is not rebuilt.

    Then the same steps with a refusal threshold no evidence reaches: the run must fail
    (exit 1: thresholds and regressions), and still leave the reports to publish."""
    checkout = tmp_path / "checkout"
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(REPO), str(checkout)], check=True
    )
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", head], check=True)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(checkout),
        "RAG_EMBEDDING_MODEL": str(e5_dir),
    }
    job = github_job()

    skipped, failed, status = run_steps(job, checkout, env)
    assert skipped == NOT_RUN_HERE
    assert (failed, status) == (None, 0)
    reports = checkout / "eval-report"
    assert (reports / "report.html").is_file()
    outcomes = check_junit(reports / "junit.xml")
    questions = (checkout / "evals" / "project.jsonl").read_text("utf-8").splitlines()
    assert len(outcomes["project"]) == len([q for q in questions if q.strip()])
    assert outcomes["project.gates"]  # the thresholds of evals/project.toml and the baseline
    assert not any(outcomes["project.gates"].values())
    assert json.loads((reports / "report.json").read_text("utf-8"))["flipped"]["regressed"] == []

    worse_env = {**env, "RAG_REFUSAL_THRESHOLD": "100", "RAG_READER_REFUSAL_THRESHOLD": "1"}
    _, failed, status = run_steps(job, checkout, worse_env)
    assert (failed, status) == ("Evaluate", 1)
    gates = check_junit(reports / "junit.xml")["project.gates"]
    assert gates["at most 0 regression(s) against the baseline"] == "gate"
    assert gates["answer_acc >= 0.92"] == "gate"
    assert (reports / "report.html").is_file()


def test_the_gitlab_job_runs_the_same_commands_and_publishes_the_junit_file():
    """GitLab cannot run here either; its job must do what the tested workflow does."""
    (job,) = yaml.safe_load(GITLAB.read_text("utf-8")).values()
    github = github_job()
    commands = [
        " ".join(s["run"].replace("\\\n", " ").split()) for s in github["steps"] if "run" in s
    ]
    github_install = next(c for c in commands if "pip install" in c)
    github_commands = [c for c in commands if c != github_install]
    gitlab_commands = [" ".join(line.split()) for line in job["script"]]
    installs = [c for c in gitlab_commands if "pip install" in c]
    assert installs == [
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
        'pip install "$POLICY_RAG"',
    ]
    assert all(c in github_install for c in installs)
    assert [c for c in gitlab_commands if c not in installs] == github_commands
    assert {k: v for k, v in job["variables"].items() if k in github["env"]} == github["env"]
    assert job["artifacts"]["when"] == "always"
    assert job["artifacts"]["reports"]["junit"] == "eval-report/junit.xml"
    assert "--junit eval-report/junit.xml" in github_commands[-1]
