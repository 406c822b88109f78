"""GitHub Actions: the workflow/dependabot JSON schemas (check-jsonschema), plus what the runbook
promises of the pipeline: OIDC, ECR, cdk deploy, SSM
rollout, health check, rollback, scans, the scheduled drift check."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.ops.conftest import REPO, option_values, runs, shell_commands, tool

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


def _all_steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _action(step: dict) -> str | None:
    """The action a ``uses:`` step runs, without its ref (``actions/checkout``)."""
    return step["uses"].split("@", 1)[0] if "uses" in step else None


def _manifest_directories() -> dict[str, set[str]]:
    """Directories holding a manifest of each Dependabot ecosystem, as Dependabot names them."""
    skip = {"node_modules", ".venv", ".git", "cdk.out"}
    patterns = {
        "pip": r"requirements[\w-]*\.txt",
        "npm": r"package\.json",
        "docker": r"Dockerfile",
        "docker-compose": r"(docker-)?compose\.ya?ml",
    }
    found: dict[str, set[str]] = {ecosystem: set() for ecosystem in patterns}
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO)
        if skip & set(relative.parts) or not path.is_file():
            continue
        for ecosystem, pattern in patterns.items():
            if re.fullmatch(pattern, path.name):
                found[ecosystem].add("/" + str(relative.parent).removeprefix("."))
    return {ecosystem: {d.rstrip("/") or "/" for d in dirs} for ecosystem, dirs in found.items()}


def test_dependabot_covers_every_manifest():
    path = REPO / ".github" / "dependabot.yml"
    result = _schema("vendor.dependabot", path)
    assert result.returncode == 0, result.stdout + result.stderr
    updates = yaml.safe_load(path.read_text())["updates"]
    covered = {(u["package-ecosystem"], u["directory"].rstrip("/") or "/") for u in updates}
    manifests = _manifest_directories()
    assert {"/", "/web"} <= manifests["npm"], manifests
    assert {"/", "/ops"} <= manifests["pip"], manifests
    for ecosystem, directories in manifests.items():
        for directory in directories:
            assert (ecosystem, directory) in covered, f"Dependabot does not update {ecosystem} in {directory}"
    assert ("github-actions", "/") in covered


def _pins_module():
    spec = importlib.util.spec_from_file_location("check_action_pins", REPO / "ops" / "ci" / "check_action_pins.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


PINS = _pins_module()


def test_every_action_is_pinned_to_the_locked_commit_with_its_version():
    uses = PINS.workflow_uses()
    assert len(uses) >= 20, "the workflows' uses: lines were not found"
    assert PINS.offline_problems(uses, PINS.load_lock()) == []
    for use in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", use.ref), use
        assert re.fullmatch(r"v\d+\.\d+\.\d+", use.comment or ""), f"{use.action}: version comment {use.comment!r}"


def test_trivy_is_a_current_v_prefixed_release():
    version = PINS.load_lock()["aquasecurity/trivy-action"]["version"]
    major, minor, _ = (int(part) for part in version.removeprefix("v").split("."))
    # 0.28.0 and the other old tags were withdrawn; the releases since carry a `v` prefix.
    assert version.startswith("v")
    assert (major, minor) >= (0, 35)


def test_pin_check_rejects_tags_stale_commits_and_wrong_comments(tmp_path):
    lock = PINS.load_lock()
    commit = lock["actions/checkout"]["commit"]
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    (workflows / "ci.yml").write_text(
        "jobs:\n  a:\n    steps:\n"
        "      - uses: actions/checkout@v7.0.1\n"
        f"      - uses: actions/checkout@{'0' * 40} # v7.0.1\n"
        f"      - uses: actions/checkout@{commit} # v6.0.0\n"
        f"      - uses: actions/checkout@{commit} # v7.0.1\n"
        f"      - uses: some/unknown@{commit} # v1.0.0\n"
    )
    problems = PINS.offline_problems(PINS.workflow_uses(workflows), {"actions/checkout": lock["actions/checkout"]})
    assert len(problems) == 4, problems
    assert "not a full commit SHA" in problems[0]
    assert "but actions-lock.yml has" in problems[1]
    assert "version comment 'v6.0.0'" in problems[2]
    assert "not in actions-lock.yml" in problems[3]


def _git(*args: str, cwd: Path) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@example.com", "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_remote_check_resolves_annotated_tags_and_finds_withdrawn_ones(tmp_path):
    """--remote against a local repository standing in for GitHub: an annotated tag resolves to
    its commit (not the tag object); a withdrawn or re-created tag fails."""
    repo = tmp_path / "acme" / "scan-action"
    repo.mkdir(parents=True)
    _git("init", "-q", cwd=repo)
    _git("commit", "-q", "--allow-empty", "-m", "one", cwd=repo)
    _git("tag", "-a", "v1.0.0", "-m", "release", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo)
    base = tmp_path.as_uri()
    good = {"acme/scan-action": {"version": "v1.0.0", "commit": first}}
    assert PINS.remote_problems(good, git_base=base) == []
    withdrawn = {"acme/scan-action": {"version": "0.9.0", "commit": first}}
    assert PINS.remote_problems(withdrawn, git_base=base) == ["acme/scan-action: tag 0.9.0 does not exist"]
    _git("commit", "-q", "--allow-empty", "-m", "two", cwd=repo)
    _git("tag", "-f", "-a", "v1.0.0", "-m", "re-created", cwd=repo)
    (problem,) = PINS.remote_problems(good, git_base=base)
    assert f"is commit {_git('rev-parse', 'HEAD', cwd=repo)}, not {first}" in problem


def test_lint_job_checks_the_pins_against_github():
    steps = _load(CI_CD)["jobs"]["lint"]["steps"]
    assert any(step.get("run") == "python ops/ci/check_action_pins.py --remote" for step in steps)


def test_workflow_tests_run_against_postgresql_18_and_the_lambda_python():
    jobs = _load(CI_CD)["jobs"]
    assert jobs["test"]["services"]["postgres"]["image"].startswith("postgres:18.")
    lambda_base = re.search(
        r"^FROM public\.ecr\.aws/lambda/python:(\S+) AS lambda", (REPO / "Dockerfile").read_text(), re.M
    )
    assert lambda_base, "the lambda target should use the AWS Lambda Python base image"
    assert _load(CI_CD)["env"]["PYTHON_VERSION"] == lambda_base[1]
    assert tuple(int(p) for p in lambda_base[1].split(".")) >= (3, 12), "Python 3.11's image runs Amazon Linux 2"


def test_pipeline_stages():
    workflow = _load(CI_CD)
    jobs = workflow["jobs"]
    assert {"push", "pull_request"} <= set(workflow["on"])
    assert workflow["permissions"] == {"contents": "read"}
    assert "postgres" in jobs["test"]["services"]
    tests = _job_commands(jobs["test"])
    assert any(runs(argv, "make", "test") for argv in tests)
    installs = [argv for argv in tests if runs(argv, "apt-get", "install")]
    packages = {word for argv in installs for word in argv[argv.index("install") + 1 :] if not word.startswith("-")}
    assert {"prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "pgbouncer"} <= packages
    for job, command in (
        ("lint", ("ruff", "check")),
        ("lint", ("ruff", "format", "--check")),
        ("lint", ("mypy",)),
        ("lint", ("lint-imports",)),
        ("security", ("bandit",)),
        ("security", ("pip-audit",)),
        ("synth", ("make", "synth")),
        ("load-smoke", ("locust", "-f", "ops/locustfile.py")),
    ):
        assert any(runs(argv, *command) for argv in _job_commands(jobs[job])), f"{job} does not run {command}"
    builds = [argv for argv in _job_commands(jobs["image"]) if runs(argv, "docker", "buildx", "build")]
    assert sorted(target for argv in builds for target in option_values(argv, "--target")) == ["lambda", "server"]
    assert sum(_action(step) == "aquasecurity/trivy-action" for step in _all_steps(workflow)) == 2


def _job_commands(job: dict, posix: bool = True) -> list[list[str]]:
    return [argv for step in job.get("steps", []) for argv in shell_commands(step.get("run", ""), posix)]


def _step(steps: list[dict], *command: str) -> int:
    """The index of the first step that runs ``command`` (its argv's first words)."""
    return next(
        i for i, step in enumerate(steps) if any(runs(argv, *command) for argv in shell_commands(step.get("run", "")))
    )


def test_deploy_uses_oidc_ecr_cdk_ssm_and_rolls_back_to_the_recorded_digest():
    deploy = _load(CI_CD)["jobs"]["deploy"]
    assert deploy["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert deploy["environment"] == "production"
    assert deploy["permissions"]["id-token"] == "write"
    assert set(deploy["needs"]) >= {"lint", "test", "security", "synth", "image", "load-smoke"}
    steps = deploy["steps"]
    creds = next(s for s in steps if _action(s) == "aws-actions/configure-aws-credentials")
    assert "role-to-assume" in creds["with"]
    # No stored keys: no step is given an access key, no job or the workflow an access key variable.
    workflow = _load(CI_CD)
    for step in _all_steps(workflow):
        assert not {"aws-access-key-id", "aws-secret-access-key"} & set(step.get("with", {})), step
    for scope in [workflow, *workflow["jobs"].values(), *_all_steps(workflow)]:
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(scope.get("env", {}))
    assert "docker push" in (REPO / "ops/deploy/release.sh").read_text()
    commands = _job_commands(deploy)
    assert any(runs(argv, "npx", "cdk", "deploy", "--all") for argv in commands)
    assert any(runs(argv, "ops/deploy/rollout.sh", "deploy") for argv in commands)
    # The previous digest is read before anything is pushed, recorded or rolled out.
    push = shell_commands(steps[_step(steps, "ops/deploy/release.sh", "push")]["run"])
    deployed = next(i for i, argv in enumerate(push) if runs(argv, "ops/deploy/release.sh", "deployed"))
    pushed = next(i for i, argv in enumerate(push) if runs(argv, "ops/deploy/release.sh", "push"))
    assert deployed < pushed
    assert not [argv for argv in push if any("latest" in word for word in argv)]
    rollback = steps[-1]
    assert rollback["if"].startswith("failure()")
    assert rollback["env"]["PREVIOUS"] == "${{ steps.push.outputs.previous }}"
    assert rollback["run"].splitlines() == [
        'ops/deploy/release.sh record "$PREVIOUS"',
        'ops/deploy/rollout.sh deploy "$PREVIOUS"',
    ]
    assert deploy["env"]["DIGEST_PARAMETER"] == "/recordings/${{ vars.CDK_ENV || 'prod' }}/image-digest"
    rollout_script = (REPO / "ops/deploy/rollout.sh").read_text()
    assert "aws ssm send-command" in rollout_script
    assert "/health/ready" in rollout_script
    assert not [argv for argv in commands if Path(argv[0]).name in {"ssh", "scp", "sftp"}]


def test_a_first_run_creates_the_repository_before_reading_it():
    steps = _load(CI_CD)["jobs"]["deploy"]["steps"]
    data_stack = _step(steps, "npx", "cdk", "deploy", "$STACK_PREFIX-data")
    assert data_stack < _step(steps, "ops/deploy/release.sh", "repository")
    # New hosts boot the new digest before cdk deploy may launch any.
    record = _step(steps, "ops/deploy/release.sh", "record")
    assert record < _step(steps, "npx", "cdk", "deploy", "--all") < _step(steps, "ops/deploy/rollout.sh", "deploy")
    before = [argv for step in steps[:data_stack] for argv in shell_commands(step.get("run", ""))]
    assert not [argv for argv in before if "describe-stacks" in argv]


def test_deploy_job_outlasts_its_worst_case():
    from cdk.config import config_from_dict
    from tests.cdk.conftest import DEPLOY_CONTEXT

    deploy = _load(CI_CD)["jobs"]["deploy"]
    block = json.loads((REPO / "cdk.json").read_text())["context"]["recordings"]
    hosts = config_from_dict(block, "prod", DEPLOY_CONTEXT["prod"]).ec2.max_capacity
    result = subprocess.run(
        ["bash", str(REPO / "ops/deploy/rollout.sh"), "worst-case", str(hosts)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    rollout_minutes = int(result.stdout) / 60
    cdk_steps = [
        s for s in deploy["steps"] if any(runs(a, "npx", "cdk", "deploy") for a in shell_commands(s.get("run", "")))
    ]
    cdk_minutes = sum(s["timeout-minutes"] for s in cdk_steps)
    assert cdk_minutes >= 60
    # A rollout, then the rollback over every host, both cdk deploys and 15 minutes for the rest.
    assert deploy["timeout-minutes"] >= cdk_minutes + 2 * rollout_minutes + 15
    assert deploy["timeout-minutes"] <= 360, "GitHub's limit for a job"
    creds = next(s for s in deploy["steps"] if _action(s) == "aws-actions/configure-aws-credentials")
    assert creds["with"]["role-duration-seconds"] >= deploy["timeout-minutes"] * 60


def test_every_run_step_fails_on_a_failed_pipe(tmp_path):
    """`cdk diff --fail | tee` must fail the job when cdk diff finds a difference."""
    for path in (CI_CD, MAINTENANCE):
        workflow = _load(path)
        assert workflow["defaults"]["run"]["shell"] == "bash", f"{path.name}: steps run without pipefail"
    steps = _load(MAINTENANCE)["jobs"]["cdk-diff"]["steps"]
    step = steps[_step(steps, "npx", "cdk", "diff")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npx").write_text("#!/bin/sh\necho 'Stack Recordings-prod-data: 1 difference'\nexit 1\n")
    (bin_dir / "npx").chmod(0o755)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "activate").write_text("")
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    # How GitHub runs a step with `shell: bash`.
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=tmp_path,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CDK_ENV": "prod"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "1 difference" in (tmp_path / "cdk-diff.txt").read_text()


def test_scheduled_maintenance_runs_drift_detection_and_cdk_diff():
    workflow = _load(MAINTENANCE)
    assert workflow["on"]["schedule"][0]["cron"]
    jobs = workflow["jobs"]
    assert any(runs(argv, "ops/maintenance/drift-check.sh") for argv in _job_commands(jobs["drift"]))
    diff = [argv for argv in _job_commands(jobs["cdk-diff"]) if runs(argv, "npx", "cdk", "diff")]
    assert diff
    assert "--fail" in diff[0]
    script = (REPO / "ops/maintenance/drift-check.sh").read_text()
    assert "detect-stack-drift" in script
    result = subprocess.run(
        [tool("shellcheck"), str(REPO / "ops/maintenance/drift-check.sh")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_locustfile_hits_routes_the_app_has():
    from service.api.app import create_app
    from service.core.settings import Settings

    source = (REPO / "ops" / "locustfile.py").read_text()
    ast.parse(source)
    routes = set(create_app(Settings(environment="test")).openapi()["paths"])
    used = set(re.findall(r'"(/(?:health|v1)[^"?]*)', source))
    used = {re.sub(r"\{[^}]+\}", "{recording_id}", path.split(" [")[0]) for path in used}
    assert {"/health", "/v1/recordings"} <= used
    assert used <= routes, f"locustfile requests unknown routes: {used - routes}"


def test_every_cdk_deploy_passes_the_profile_context_from_the_repository():
    """Prod refuses to synthesize without HTTPS and alarm recipients, which come from the account:
    every deploy step hands the repository variable to cdk as context."""
    deploy = _load(CI_CD)["jobs"]["deploy"]
    assert deploy["env"]["CDK_PROFILE_CONTEXT"] == "${{ vars.CDK_PROFILE_CONTEXT }}"
    scripts = [
        s["run"]
        for s in deploy["steps"]
        if any(runs(a, "npx", "cdk", "deploy") for a in shell_commands(s.get("run", "")))
    ]
    assert len(scripts) == 2
    for run in scripts:
        # Words as the shell reads them, quotes kept: the array expands quoted, element by element.
        commands = shell_commands(run, posix=False)
        read = commands.index(["read", "-ra", "profile_context", "<<<", '"${CDK_PROFILE_CONTEXT:-}"'])
        deploy_command = next(i for i, argv in enumerate(commands) if runs(argv, "npx", "cdk", "deploy"))
        assert read < deploy_command
        assert '"${profile_context[@]}"' in commands[deploy_command]
