"""How the app reaches the database in AWS: CDK-generated, rotated secrets; the app on its own
least-privilege role; TLS verified; and the prod migration path run through a proxy as strict as
RDS Proxy (TLS-only PgBouncer, no startup options) with the prod profile's own environment."""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.engine import make_url

from cdk.constructs.database import APP_USERNAME, DB_CA_BUNDLE, ROTATION_DAYS
from service.core import migrate
from service.core.db import get_engine, owner_settings, reset_engine
from service.core.settings import Settings
from tests.conftest import BASE_DATABASE_URL, pooler_users
from tests.pg_server import pgbouncer, scratch_database

APP_FUNCTIONS = ("ApiFunction", "S3EventsFunction", "ReaperFunction")


def _functions(profile) -> dict[str, dict]:
    found = {}
    for logical_id, resource in profile.resources("backend", "AWS::Lambda::Function").items():
        for prefix in (*APP_FUNCTIONS, "MigrateFunction"):
            if logical_id.startswith(prefix) and "Environment" in resource["Properties"]:
                found[prefix] = resource["Properties"]
    return found


def _secret_ids(profile) -> dict[str, str]:
    """Logical ids of the master and the application secret's attachments to the instance (what
    rotation, grants and the functions' environment refer to) in the data stack."""
    kinds = {}
    for logical_id, resource in profile.resources("data", "AWS::SecretsManager::Secret").items():
        # The app secret's template is a join (it holds the master secret's ARN), the master's a string.
        template = json.dumps(resource["Properties"]["GenerateSecretString"]["SecretStringTemplate"])
        kinds[logical_id] = "app" if f'\\"username\\":\\"{APP_USERNAME}\\"' in template else "master"
    attachments = profile.resources("data", "AWS::SecretsManager::SecretTargetAttachment")
    return {kinds[a["Properties"]["SecretId"]["Ref"]]: logical_id for logical_id, a in attachments.items()}


def test_both_database_secrets_are_generated_by_cdk_and_rotated(profile):
    instance = next(iter(profile.resources("data", "AWS::RDS::DBInstance").values()))["Properties"]
    assert "ManageMasterUserPassword" not in instance  # RDS-managed master secrets rule out replicas
    ids = _secret_ids(profile)
    assert set(ids) == {"master", "app"}
    schedules = profile.resources("data", "AWS::SecretsManager::RotationSchedule").values()
    rotated = {s["Properties"]["SecretId"]["Ref"]: s["Properties"]["RotationRules"] for s in schedules}
    assert set(rotated) == set(ids.values())
    assert {rule["ScheduleExpression"] for rule in rotated.values()} == {f"rate({ROTATION_DAYS} days)"}


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _secret_reads(profile, function_prefix: str) -> set[str]:
    """The secrets' logical ids a function's role may GetSecretValue on."""
    role_ref = _functions(profile)[function_prefix]["Role"]["Fn::GetAtt"][0]
    reads = set()
    for policy in profile.resources("backend", "AWS::IAM::Policy").values():
        if {"Ref": role_ref} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if "secretsmanager:GetSecretValue" in _listed(statement["Action"]):
                reads |= {json.dumps(resource) for resource in _listed(statement["Resource"])}
    return reads


def test_only_the_migration_reads_the_master_secret(profile):
    ids = _secret_ids(profile)

    def database_secrets_read(prefix: str) -> set[str]:
        reads = _secret_reads(profile, prefix)
        return {kind for kind, logical_id in ids.items() if any(logical_id in read for read in reads)}

    for prefix in APP_FUNCTIONS:
        if prefix in _functions(profile):  # the API function is a feature flag
            assert database_secrets_read(prefix) == {"app"}, prefix
    assert database_secrets_read("MigrateFunction") == {"app", "master"}


def test_every_function_verifies_the_database_certificate_and_sends_no_startup_options(profile):
    for prefix, function in _functions(profile).items():
        env = function["Environment"]["Variables"]
        assert env["DATABASE_SSLMODE"] == "verify-full", prefix
        assert env["DATABASE_SSLROOTCERT"] == DB_CA_BUNDLE, prefix
        assert not any("statement_timeout" in json.dumps(value) for value in env.values()), prefix
        assert ("DATABASE_MIGRATION_SECRET_ARN" in env) == (prefix == "MigrateFunction"), prefix


def test_the_proxy_serves_both_secrets_and_requires_tls(prod):
    proxy = next(iter(prod.resources("data", "AWS::RDS::DBProxy").values()))["Properties"]
    assert proxy["RequireTLS"] is True
    assert len(proxy["Auth"]) == 2
    assert all(auth["IAMAuth"] == "DISABLED" for auth in proxy["Auth"])


def test_the_prod_migration_path_has_nothing_rds_proxy_rejects(prod, settings, s3_endpoint):
    """The migrate function's environment from the prod template, with only its secrets and
    hosts swapped for a new database behind a TLS-only, transaction-pooling PgBouncer: the
    migration (as the owner) and then the app (as its own role) both work through it."""
    env = _functions(prod)["MigrateFunction"]["Environment"]["Variables"]
    plain = {key.lower(): value for key, value in env.items() if isinstance(value, str)}
    assert plain["runtime"] == "lambda"
    app = make_url(settings.database_url.get_secret_value())
    with scratch_database(BASE_DATABASE_URL, "recordings_prodpath") as owner_url:
        server = make_url(owner_url)
        users = pooler_users(settings.database_url.get_secret_value())
        with pgbouncer(server.host, server.port, users, tls=True) as bouncer:
            through = make_url(bouncer.url_for(owner_url)).set(host="localhost")
            prod_settings = Settings(
                **{
                    **plain,
                    "database_migration_url": through.render_as_string(hide_password=False),
                    "database_url": through.set(username=app.username, password=app.password).render_as_string(
                        hide_password=False
                    ),
                    "database_sslrootcert": str(bouncer.ca_file),  # the image's bundle, in AWS
                    "s3_endpoint_url": s3_endpoint,
                }
            )
            assert prod_settings.database_sslmode == "verify-full"
            try:
                migrate.upgrade(prod_settings)
                with get_engine(prod_settings).connect() as connection:
                    assert connection.execute(text("SELECT current_user")).scalar_one() == app.username
                    timeout = connection.execute(text("SHOW statement_timeout")).scalar_one()
                    assert timeout == f"{prod_settings.db_statement_timeout_ms // 1000}s"
                    assert connection.execute(text("SELECT count(*) FROM recordings")).scalar_one() == 0
                assert migrate.current_revision(prod_settings) is not None
            finally:
                reset_engine(prod_settings)
                reset_engine(owner_settings(prod_settings))
