"""/metrics needs its bearer token in every deployment: each stack that runs the app makes the
token in Secrets Manager, passes its ARN to the app and lets only the app read it. The
interactive API documentation is a per-profile switch (off in prod)."""

from __future__ import annotations

import json

import pytest


def _secret_ids(profile, key: str) -> set[str]:
    return set(profile.resources(key, "AWS::SecretsManager::Secret"))


def _readers(profile, key: str, secret_id: str) -> list[dict]:
    """The policy statements in ``key`` that allow reading the secret ``secret_id``."""
    found = []
    for policy in profile.resources(key, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "secretsmanager:GetSecretValue" in actions and {"Ref": secret_id} in resources:
                found.append(policy)
    return found


def _the_metrics_secret(profile, key: str) -> str:
    (secret_id,) = [s for s in _secret_ids(profile, key) if s.startswith("MetricsToken")]
    secret = profile.resources(key, "AWS::SecretsManager::Secret")[secret_id]["Properties"]
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    return secret_id


def test_the_lambda_api_gets_the_metrics_token_secret(profile) -> None:
    secret_id = _the_metrics_secret(profile, "backend")
    functions = profile.resources("backend", "AWS::Lambda::Function")
    (api,) = [
        p["Properties"]
        for k, p in functions.items()
        if k.startswith("ApiFunction") and "ImageConfig" in p["Properties"]
    ]
    env = api["Environment"]["Variables"]
    assert env["METRICS_TOKEN_SECRET_ARN"] == {"Ref": secret_id}
    readers = _readers(profile, "backend", secret_id)
    assert len(readers) == 1  # the API function's role, and no other
    assert any(role["Ref"].startswith("ApiFunction") for role in readers[0]["Properties"]["Roles"])


def test_the_ec2_service_gets_the_metrics_token_secret(profile) -> None:
    if "ec2" not in profile.deployment.stacks:
        pytest.skip("this profile has no EC2 service")
    secret_id = _the_metrics_secret(profile, "ec2")
    (template,) = profile.resources("ec2", "AWS::EC2::LaunchTemplate").values()
    user_data = json.dumps(template["Properties"]["LaunchTemplateData"]["UserData"])
    assert "METRICS_TOKEN_SECRET_ARN=" in user_data
    assert secret_id in user_data
    assert len(_readers(profile, "ec2", secret_id)) == 1


def test_docs_are_a_per_profile_switch(profile) -> None:
    functions = profile.resources("backend", "AWS::Lambda::Function")
    (api,) = [
        p["Properties"]
        for k, p in functions.items()
        if k.startswith("ApiFunction") and "ImageConfig" in p["Properties"]
    ]
    expected = "false" if profile.profile == "prod" else "true"
    assert api["Environment"]["Variables"]["DOCS_ENABLED"] == expected
