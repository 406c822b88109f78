"""Both profiles synthesize without credentials or Docker; cdk-nag and cfn-lint are clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EXPECTED_STACKS = {
    "dev": {"foundation", "data", "audit", "backend", "ec2", "github", "monitoring", "observability"},
    "prod": {"foundation", "data", "replica", "audit", "backend", "ec2", "github", "monitoring", "observability"},
}


def test_each_profile_synthesizes_its_stacks(profile) -> None:
    assert set(profile.deployment.stacks) == EXPECTED_STACKS[profile.profile]
    names = {p.name.removesuffix(".template.json") for p in profile.outdir.glob("*.template.json")}
    assert names == {s.stack_name for s in profile.deployment.stacks.values()}
    assert all(name.startswith(f"Recordings-{profile.profile}-") for name in names)


def test_synthesis_is_fast(profile) -> None:
    # Asset staging honours .dockerignore; a staged .venv or node_modules would take far longer.
    assert profile.seconds < 60, f"{profile.profile} synth took {profile.seconds:.1f}s"


def test_docker_asset_stages_only_the_whitelisted_files(profile) -> None:
    manifest = json.loads((profile.outdir / f"{profile.stack_name('backend')}.assets.json").read_text())
    images = manifest["dockerImages"]
    assert len(images) == 1, "all four functions share one image asset"
    (image,) = images.values()
    assert image["source"]["dockerBuildTarget"] == "lambda"
    staged = profile.outdir / image["source"]["directory"]
    top = {p.name for p in staged.iterdir()}
    assert top <= {
        ".dockerignore",
        "Dockerfile",
        "requirements.txt",
        "service",
        "handlers",
        "migrations",
        "alembic.ini",
        "ops",
    }
    # Of the operations folder, only the backup verifier (the server image runs it).
    assert {p.name for p in (staged / "ops").iterdir()} <= {"__init__.py", "backup"}
    size = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
    assert size < 20 * 1024 * 1024, f"staged image context is {size} bytes"


def test_cdk_nag_has_no_open_findings(profile) -> None:
    reports = {r["pluginName"]: r for r in profile.validation_report()["pluginReports"]}
    nag = reports["AwsSolutions"]
    assert nag["conclusion"] == "success"
    assert nag["violations"] == []
    assert nag["suppressedViolations"], "the report lists the acknowledged findings"


def _acknowledged_ids(outdir: Path) -> set[str]:
    ids: set[str] = set()
    for meta in outdir.glob("*.metadata.json"):
        for entries in json.loads(meta.read_text()).values():
            for entry in entries:
                if entry.get("type") == "aws:cdk:acknowledged-rules":
                    ids.update(i for i in entry["data"] if i.startswith("AwsSolutions::"))
    return ids


def test_every_acknowledgement_names_a_rule_is_used_and_has_a_reason(profile) -> None:
    nag = {r["pluginName"]: r for r in profile.validation_report()["pluginReports"]}["AwsSolutions"]
    used = {v["acknowledgedId"] for v in nag["suppressedViolations"]}
    declared = _acknowledged_ids(profile.outdir)
    assert declared, "acknowledgements are recorded in the cloud assembly metadata"
    assert declared <= used, f"stale acknowledgements: {sorted(declared - used)}"
    for v in nag["suppressedViolations"]:
        assert v["acknowledgedId"].startswith(f"AwsSolutions::{v['ruleName']}")
        assert len(v["reason"]) >= 40, v
        if v["ruleName"] in {"AwsSolutions-IAM4", "AwsSolutions-IAM5"}:
            assert "[" in v["acknowledgedId"], "IAM findings are acknowledged one finding at a time"


def test_cfn_lint_reports_no_errors(profile) -> None:
    from cfnlint.api import ManualArgs, lint

    regions = [profile.config.region]
    if profile.config.features.replication:
        regions.append(profile.config.storage.replication_region)
    templates = sorted(profile.outdir.glob("*.template.json"))
    assert len(templates) == len(profile.deployment.stacks)
    errors = []
    for path in templates:
        found = lint(path.read_text(), config=ManualArgs(regions=regions))
        errors += [f"{path.name}: {m}" for m in found if m.rule.id.startswith("E")]
    assert errors == []


@pytest.mark.parametrize("key", ["data", "backend", "ec2"])
def test_deployer_outputs(dev, key) -> None:
    outputs = set(dev.template_json(key).get("Outputs", {}))
    wanted = {
        "data": {"BucketName", "RepositoryUri"},
        "backend": {"ApiUrl"},
        "ec2": {"LoadBalancerDnsName", "ServiceUrl", "ServerImageParameter"},
    }[key]
    assert wanted <= outputs
