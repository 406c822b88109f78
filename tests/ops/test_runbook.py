"""RUNBOOK.md is true for this project: the seed runbook's sections, the anchors the alerts link
to, CLI commands that parse, make targets and files that exist, CDK/Session Manager instead of
Terraform/SSH."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from ops.backup import verify as backup
from tests.ops.conftest import REPO, option_values, runs, shell_commands

RUNBOOK = (REPO / "RUNBOOK.md").read_text()
SECTIONS = [
    "Overview",
    "Architecture",
    "Deployment",
    "Monitoring and alerts",
    "Troubleshooting",
    "Backup and recovery",
    "Scaling",
    "Security",
    "Maintenance",
]


def _anchors() -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", RUNBOOK, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def _code() -> list[str]:
    """The shell code the runbook gives: fenced code blocks (indented ones too) and inline code."""
    blocks = re.findall(r"^( *)```[a-z]*\n(.*?)^\1```", RUNBOOK, flags=re.M | re.S)
    fenced = [textwrap.dedent(block) for _, block in blocks]
    prose = re.sub(r"^( *)```[a-z]*\n.*?^\1```", "", RUNBOOK, flags=re.M | re.S)
    return fenced + re.findall(r"`([^`\n]+)`", prose)


def _runbook_commands() -> list[list[str]]:
    """Every command of the runbook's code, as its argv."""
    commands = []
    for code in _code():
        try:
            commands.extend(shell_commands(code))
        except ValueError:  # not shell (a JSON snippet, a path with an apostrophe)
            continue
    return commands


def _invokes(argv: list[str], *words: str) -> bool:
    """Whether ``words`` run as a command within ``argv`` (also after ``hosts() {`` and the like)."""
    return any(argv[i : i + len(words)] == list(words) for i in range(len(argv)))


def _cli_parsers() -> dict[str, argparse.ArgumentParser]:
    from ops.backup.__main__ import build_parser as backup_parser
    from service.cli import build_parser as service_parser

    return {"service": service_parser(), "ops.backup": backup_parser()}


def test_sections_in_order():
    headings = re.findall(r"^## \d+\. (.+)$", RUNBOOK, flags=re.M)
    assert headings == SECTIONS


def test_alert_runbook_links_resolve():
    rules = yaml.safe_load((REPO / "ops/prometheus/alerts.yml").read_text())
    links = {r["annotations"]["runbook_url"] for g in rules["groups"] for r in g["rules"]}
    anchors = _anchors()
    for link in links:
        assert link.split("#", 1)[1] in anchors, f"{link} has no heading in RUNBOOK.md"
    for link in re.findall(r"\]\(#([^)]+)\)", RUNBOOK):
        assert link in anchors, f"internal link #{link} has no heading"


def _commands() -> list[tuple[str, str]]:
    found = re.findall(r"python -m (service|ops\.backup) ([^`\n|;&]+)", RUNBOOK)
    return sorted({(module, command.strip().rstrip("\\").strip()) for module, command in found})


def test_every_cli_command_parses():
    commands = _commands()
    needed = [("ops.backup", "verify-backup"), ("ops.backup", "verify-s3-restore")]
    needed += [("service", name) for name in ("api-keys create", "migrate", "reap")]
    for module, name in needed:
        assert any(m == module and c.startswith(name) for m, c in commands), f"runbook lacks python -m {module} {name}"
    parsers = _cli_parsers()
    for module, command in commands:
        # Placeholders such as <tenant> become plain values.
        argv = shlex.split(re.sub(r"<[^>]+>", "value", command))
        try:
            args = parsers[module].parse_args(argv)
        except SystemExit:
            pytest.fail(f"`python -m {module} {command}` does not parse")
        assert callable(args.func)


def _make_targets() -> set[str]:
    return {argv[1] for argv in _runbook_commands() if runs(argv, "make") and len(argv) > 1}


@pytest.mark.parametrize("target", ["run", "test", "lint", "synth", "bench"])
def test_make_targets_exist(target):
    assert target in _make_targets(), f"runbook does not mention make {target}"
    result = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_referenced_repository_files_exist():
    paths = set(re.findall(r"`((?:ops|\.github|cdk|service|tests)/[\w./-]+)", RUNBOOK))
    paths.discard(backup.CANARY_PREFIX)  # an S3 key prefix, not a file
    paths |= {"docker-compose.yml", "Dockerfile", "app.py", "cdk.json"}
    for path in paths:
        assert (REPO / path.rstrip("/")).exists(), f"RUNBOOK.md names a missing file: {path}"


def test_cdk_and_session_manager_not_terraform_and_ssh():
    commands = _runbook_commands()
    names = {Path(argv[0]).name for argv in commands}
    assert not names & {"terraform", "ssh", "scp"}, "CDK and Session Manager, not Terraform and SSH"
    assert any(runs(argv, "aws", "ssm", "start-session") for argv in commands)
    assert any(runs(argv, "aws", "ssm", "send-command") for argv in commands)
    for action in ("deploy", "diff"):
        assert any(_invokes(argv, "cdk", action) for argv in commands), f"runbook lacks cdk {action}"


def test_restore_of_a_deleted_recording_is_documented_and_exists():
    from service.api.app import create_app
    from service.core.settings import Settings

    paths = create_app(Settings(environment="test")).openapi()["paths"]
    documented = set()
    for argv in _runbook_commands():
        if runs(argv, "curl"):
            (method,) = option_values(argv, "-X") or ["GET"]
            urls = [word for word in argv if word.startswith("$SERVICE_URL/")]
            documented |= {(method.lower(), url.removeprefix("$SERVICE_URL")) for url in urls}
    restore = ("post", "/v1/recordings/<recording id>/restore")
    assert restore in documented
    for method, path in documented:
        template = re.sub(r"<[^>]+>", "{recording_id}", path.split("?")[0])
        assert method in paths.get(template, {}), f"RUNBOOK.md calls {method.upper()} {path}: no such route"


def test_rollout_and_deploy_commands_in_the_runbook_are_the_scripts_modes():
    commands = _runbook_commands()
    # The modes are the arms of the script's `case $1` dispatch.
    script = (REPO / "ops/deploy/deploy.sh").read_text()
    (dispatch,) = re.findall(r'^\s*case "?\$1"? in\n(.*?)^\s*esac', script, flags=re.M | re.S)
    arms = set(re.findall(r"^\s*([a-z-]+)\)", dispatch, flags=re.M))
    for mode in ("deploy", "rollback", "status"):
        assert any(_invokes(argv, "/opt/recordings/deploy.sh", mode) for argv in commands), mode
        assert mode in arms
    for mode in ("deploy", "hosts"):
        assert any(_invokes(argv, "ops/deploy/rollout.sh", mode) for argv in commands), mode
