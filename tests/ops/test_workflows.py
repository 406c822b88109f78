"""GitHub Actions: the workflow/dependabot JSON schemas (check-jsonschema), plus what the runbook
promises of the pipeline: OIDC, ECR, cdk deploy, SSM
rollout, health check, rollback, scans, the scheduled drift check."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ops.conftest import REPO, tool

WORKFLOWS = REPO / ".github" / "workflows"
CI_CD = WORKFLOWS / "ci-cd.yml"
MAINTENANCE = WORKFLOWS / "maintenance.yml"


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the `on:` key as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _schema(schema: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workflows_match_the_schema():
    result = _schema("vendor.github-workflows", *sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_covers_every_ecosystem():
    path = REPO / ".github" / "dependabot.yml"
    result = _schema("vendor.dependabot", path)
    assert result.returncode == 0, result.stdout + result.stderr
    ecosystems = {update["package-ecosystem"] for update in yaml.safe_load(path.read_text())["updates"]}
    assert {"pip", "npm", "docker", "github-actions"} <= ecosystems


def _all_steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


@pytest.mark.parametrize("path", [CI_CD, MAINTENANCE])
def test_actions_are_pinned_to_full_versions(path):
    for step in _all_steps(_load(path)):
        if "uses" in step:
            action, _, version = step["uses"].partition("@")
            assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), f"{action} is not pinned to a full version: {version}"


def test_pipeline_stages():
    workflow = _load(CI_CD)
    jobs = workflow["jobs"]
    text = CI_CD.read_text()
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read"}
    assert "postgres" in jobs["test"]["services"]
    assert "make test" in text
    assert "apt-get install" in text
    assert "prometheus" in text
    for command in (
        "ruff check",
        "ruff format --check",
        "bandit",
        "pip-audit",
        "make synth",
        "locust -f ops/locustfile.py",
    ):
        assert command in text, command
    assert "--target server" in text
    assert "--target lambda" in text
    assert sum(step.get("uses", "").startswith("aquasecurity/trivy-action@") for step in _all_steps(workflow)) == 2


def test_deploy_uses_oidc_ecr_cdk_ssm_and_rolls_back():
    deploy = _load(CI_CD)["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["permissions"]["id-token"] == "write"
    assert set(deploy["needs"]) >= {"lint", "test", "security", "synth", "image", "load-smoke"}
    steps = deploy["steps"]
    creds = next(s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@"))
    assert "role-to-assume" in creds["with"]
    assert "aws-access-key-id" not in CI_CD.read_text()
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "docker push" in runs
    assert "npx cdk deploy" in runs
    assert "ops/deploy/rollout.sh deploy" in runs
    rollback = steps[-1]
    assert rollback["if"].startswith("failure()")
    assert "steps.push.outputs.previous" in rollback["run"]
    rollout_script = (REPO / "ops/deploy/rollout.sh").read_text()
    assert "aws ssm send-command" in rollout_script
    assert "/health/ready" in rollout_script
    assert "ssh" not in runs.lower()


def test_scheduled_maintenance_runs_drift_detection_and_cdk_diff():
    workflow = _load(MAINTENANCE)
    assert workflow["on"]["schedule"][0]["cron"]
    text = MAINTENANCE.read_text()
    assert "ops/maintenance/drift-check.sh" in text
    assert "cdk diff" in text
    script = (REPO / "ops/maintenance/drift-check.sh").read_text()
    assert "detect-stack-drift" in script
    result = subprocess.run(
        [tool("shellcheck"), str(REPO / "ops/maintenance/drift-check.sh")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_locustfile_hits_routes_the_app_has():
    from service.config import Settings
    from service.main import create_app

    source = (REPO / "ops" / "locustfile.py").read_text()
    ast.parse(source)
    routes = set(create_app(Settings(environment="test")).openapi()["paths"])
    used = set(re.findall(r'"(/(?:health|v1)[^"?]*)', source))
    used = {re.sub(r"\{[^}]+\}", "{recording_id}", path.split(" [")[0]) for path in used}
    assert {"/health", "/v1/recordings"} <= used
    assert used <= routes, f"locustfile requests unknown routes: {used - routes}"
