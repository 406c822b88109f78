"""What the pipeline needs from the templates: GitHub's OIDC provider and roles that trust exactly
the subjects the workflows present, with least privilege; Lambda functions on the image CI
scanned; no rds:* on the app hosts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ops.backup.verify import CANARY_PREFIX, temp_instance_id
from tests.cdk.conftest import DEPLOY_CONTEXT, Synthesized

REPOSITORY = "recordings-service/recordings-service"
DIGEST = "sha256:" + "c" * 64


def _resource(synth: Synthesized, stack: str, type_: str, prefix: str) -> dict:
    (found,) = [v for k, v in synth.resources(stack, type_).items() if k.startswith(prefix)]
    return found


def _policy_statements(synth: Synthesized, stack: str, role_prefix: str) -> list[dict]:
    statements = []
    for policy in synth.resources(stack, "AWS::IAM::Policy").values():
        if any(ref.get("Ref", "").startswith(role_prefix) for ref in policy["Properties"]["Roles"]):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def _trust(role: dict) -> dict:
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return statement


def _flat(value: object) -> str:
    return json.dumps(value)


def test_github_oidc_provider_for_sts(prod: Synthesized) -> None:
    provider = _resource(prod, "github", "AWS::IAM::OIDCProvider", "GithubOidcProvider")
    assert provider["Properties"]["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]


def test_deploy_role_trusts_only_the_production_environment(prod: Synthesized) -> None:
    trust = _trust(_resource(prod, "github", "AWS::IAM::Role", "DeployRole"))
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = trust["Condition"]["StringEquals"]
    assert conditions["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    # The deploy job runs in environment `production`: that is the subject of its token.
    assert conditions["token.actions.githubusercontent.com:sub"] == [f"repo:{REPOSITORY}:environment:production"]
    assert "StringLike" not in trust["Condition"], "no wildcard subjects"


def test_readonly_role_trusts_main_and_pull_requests_and_reads_no_data(prod: Synthesized) -> None:
    role = _resource(prod, "github", "AWS::IAM::Role", "ReadOnlyRole")
    subjects = _trust(role)["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]
    assert sorted(subjects) == [f"repo:{REPOSITORY}:pull_request", f"repo:{REPOSITORY}:ref:refs/heads/main"]
    assert "ReadOnlyAccess" in _flat(role["Properties"]["ManagedPolicyArns"])
    denies = [s for s in _policy_statements(prod, "github", "ReadOnlyRole") if s["Effect"] == "Deny"]
    denied = {action for s in denies for action in _actions(s)}
    assert {"s3:GetObject", "secretsmanager:GetSecretValue", "kms:Decrypt", "logs:GetLogEvents"} <= denied
    detect = [
        s
        for s in _policy_statements(prod, "github", "ReadOnlyRole")
        if "cloudformation:DetectStackDrift" in _actions(s)
    ]
    assert detect
    assert "stack/Recordings-prod-*/*" in _flat(detect[0]["Resource"])


def test_deploy_role_is_least_privilege(prod: Synthesized) -> None:
    statements = _policy_statements(prod, "github", "DeployRole")
    allowed = [s for s in statements if s["Effect"] == "Allow"]
    for statement in allowed:
        for action in _actions(statement):
            assert "*" not in action, f"wildcard action {action}"
    by_action = {action: s for s in allowed for action in _actions(s) if action != "ssm:SendCommand"}
    assume = _flat(by_action["sts:AssumeRole"]["Resource"])
    assert assume.count(":role/cdk-hnb659fds-") == 8, "the four bootstrap roles in both regions, nothing else"
    assert "parameter/recordings/prod/image-digest" in _flat(by_action["ssm:PutParameter"]["Resource"])
    assert "stack/Recordings-prod-*/*" in _flat(by_action["cloudformation:DescribeStacks"]["Resource"])
    for action in ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"):
        condition = by_action[action]["Condition"]["StringEquals"]
        assert condition == {"elasticloadbalancing:ResourceTag/aws:cloudformation:stack-name": "Recordings-prod-ec2"}
    send = [s for s in allowed if "ssm:SendCommand" in _actions(s)]
    on_instances = [s for s in send if ":instance/*" in _flat(s["Resource"])]
    assert on_instances[0]["Condition"]["StringEquals"] == {
        "ssm:resourceTag/aws:cloudformation:stack-name": "Recordings-prod-ec2"
    }
    document = "arn:aws:ssm:eu-west-1::document/AWS-RunShellScript"
    assert all(s["Resource"] == document for s in send if "Condition" not in s)
    unscoped = {action for s in allowed if s["Resource"] == "*" for action in _actions(s)}
    assert unscoped == {
        "autoscaling:DescribeAutoScalingGroups",
        "ecr:GetAuthorizationToken",
        "elasticloadbalancing:DescribeTargetHealth",
        "ssm:GetCommandInvocation",
    }


def test_backup_verification_role_touches_only_temporary_instances(prod: Synthesized) -> None:
    role = _resource(prod, "github", "AWS::IAM::Role", "BackupVerificationRole")
    assert "Federated" not in _flat(_trust(role)["Principal"]), "operators only, not GitHub"
    statements = _policy_statements(prod, "github", "BackupVerificationRole")
    destructive = [s for s in statements if {"rds:DeleteDBInstance", "rds:ModifyDBInstance"} & set(_actions(s))]
    (statement,) = destructive
    assert ":db:*-verify-*" in _flat(statement["Resource"])
    assert statement["Condition"]["StringEquals"] == {"aws:ResourceTag/purpose": "backup-verification"}
    # The pattern matches what ops/backup/verify.py names its temporary instances.
    assert "-verify-" in temp_instance_id("recordings-prod-db")
    objects = [s for s in statements if "s3:DeleteObjectVersion" in _actions(s)]
    assert objects
    assert all(_flat(s["Resource"]).endswith(f'-eu-west-1/{CANARY_PREFIX}*"]]}}') for s in objects)


def test_app_hosts_have_no_rds_or_version_listing_rights(prod: Synthesized) -> None:
    statements = _policy_statements(prod, "ec2", "ServiceInstanceRole")
    assert statements
    actions = {action for s in statements for action in _actions(s)}
    assert not {a for a in actions if a.startswith("rds:")}


@pytest.fixture(scope="module")
def prod_with_image(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    from app import create_app

    outdir = tmp_path_factory.mktemp("cdk-prod-image")
    context = {"env": "prod", **DEPLOY_CONTEXT["prod"], "lambda_image_digest": DIGEST}
    deployment = create_app(context=context, outdir=str(outdir))
    deployment.app.synth()
    return Synthesized("prod", deployment, outdir, 0.0)


def test_functions_run_the_scanned_image_by_digest(prod_with_image: Synthesized, prod: Synthesized) -> None:
    functions = prod_with_image.resources("backend", "AWS::Lambda::Function").values()
    images = [f for f in functions if f["Properties"].get("PackageType") == "Image"]
    assert len(images) == 4, "api, s3 events, reaper, migrations"
    for function in images:
        uri = _flat(function["Properties"]["Code"]["ImageUri"])
        assert uri.endswith(f'"@{DIGEST}"]]}}'), uri
        assert "container-assets" not in uri
    # The data stack does not change with the digest: no export appears or disappears.
    assert prod_with_image.template_json("data") == prod.template_json("data")


def test_workflow_deploys_the_lambda_image_it_scanned() -> None:
    workflow = (Path(__file__).resolve().parents[2] / ".github/workflows/ci-cd.yml").read_text()
    assert '-c lambda_image_digest="$LAMBDA_DIGEST"' in workflow
    assert "--target lambda" in workflow
