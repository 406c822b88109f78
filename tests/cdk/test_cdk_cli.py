"""The real CDK CLI (pinned in package.json, installed by `npm ci`) synthesizes with cdk.json.

This proves the commands in docs/deploy.md: `npx cdk synth -c env=prod -c alarm_emails=...`
works from a clean checkout with no AWS credentials and no Docker engine, and refuses without
the deploy-time values.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_BIN = REPO_ROOT / "node_modules" / ".bin" / "cdk"


def test_cdk_cli_synthesizes_prod_with_cdk_json(tmp_path: Path) -> None:
    assert CDK_BIN.exists(), "run `npm ci` first (the Makefile's test target does)"
    pinned = json.loads((REPO_ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    venv_bin = REPO_ROOT / ".venv" / "bin"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_")) or k == "AWS_EC2_METADATA_DISABLED"
    }
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_EC2_METADATA_DISABLED="true",  # no credentials: don't wait for an instance profile
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    version = subprocess.run(
        [str(CDK_BIN), "--version"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.startswith(pinned)

    outdir = tmp_path / "cdk.out"
    result = subprocess.run(
        [
            str(CDK_BIN),
            "synth",
            "-c",
            "env=prod",
            # The deploy-time values docs/deploy.md passes: prod refuses to synthesize without them.
            "-c",
            "alarm_emails=oncall@corp.internal",
            "-c",
            "domain_name=recordings.corp.internal",
            "-c",
            "certificate_arn=arn:aws:acm:eu-west-1:111122223333:certificate/00000000-0000-0000-0000-000000000000",
            "--quiet",
            "--no-notices",
            "--output",
            str(outdir),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    templates = {p.name for p in outdir.glob("*.template.json")}
    assert "Recordings-prod-data.template.json" in templates
    assert len(templates) == 9  # foundation, data, replica, audit, backend, ec2, github, monitoring, observability
    report = json.loads((outdir / "validation-report.json").read_text())
    nag = {r["pluginName"]: r for r in report["pluginReports"]}["AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []


def test_cdk_cli_refuses_prod_without_recipients_and_https(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}
    env.update(
        PATH=f"{REPO_ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    result = subprocess.run(
        [str(CDK_BIN), "synth", "-c", "env=prod", "--quiet", "--no-notices", "--output", str(tmp_path / "out")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "alarm_emails" in result.stderr + result.stdout
    assert "HTTPS" in result.stderr + result.stdout
