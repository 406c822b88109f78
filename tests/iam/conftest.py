"""S3 with IAM enforced, and the app running with exactly the permissions CDK gives it.

- ``iam_s3``: moto's server in a process of its own (tests/iam/moto_iam_server.py) with
  ``INITIAL_NO_AUTH_ACTION_COUNT``: the first requests create an admin user, everything after is
  authenticated and authorized. Buckets are set up with the admin's credentials.
- ``role_statements``: the S3 statements of each role that runs the code, read from the
  synthesized dev templates (tests/cdk/app_roles.py), never restated here.
- ``roles``: per test, an IAM user per role whose policy is those statements with the recordings
  bucket's ARN swapped for the test bucket's, and ``roles.running_as(name)``, under which every
  S3 client the app builds (API routes, handlers, CLI commands) signs with that user's key.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import text

from service.core.settings import Settings
from tests.cdk.app_roles import app_roles, recordings_bucket_name
from tests.conftest import make_settings

SERVER = Path(__file__).with_name("moto_iam_server.py")
# Unauthenticated requests the server allows: CreateUser, PutUserPolicy, CreateAccessKey (admin).
ADMIN_SETUP_REQUESTS = 3
REGION = "us-east-1"
ROLE_OF_HANDLER = {
    "handlers.api.handler": "api",
    "handlers.s3_events.handler": "s3-events",
    "handlers.jobs.reap_handler": "reaper",
}
ALL_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_CLIENT_CONFIG = Config(s3={"addressing_style": "path"}, signature_version="s3v4", retries={"max_attempts": 1})


@dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str

    def as_kwargs(self) -> dict[str, str]:
        return {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key}


@dataclass
class IamS3:
    endpoint: str
    admin: Keys
    log: Path

    def client(self, service: str, keys: Keys | None = None):
        keys = keys or self.admin
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=_CLIENT_CONFIG if service == "s3" else None,
            aws_session_token=None,
            **keys.as_kwargs(),
        )

    def user(self, name: str, policy: dict) -> Keys:
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return Keys(key["AccessKeyId"], key["SecretAccessKey"])


def _bootstrap_admin(endpoint: str) -> Keys:
    iam = boto3.session.Session().client(
        "iam", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ALL_ACCESS))
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    # The budget is spent: the same unknown credentials must now be refused.
    try:
        iam.create_user(UserName="intruder")
    except ClientError as exc:
        refused = exc.response["Error"]["Code"]
    else:
        refused = None
    if refused != "InvalidClientTokenId":
        raise AssertionError(f"moto does not enforce IAM after the setup requests ({refused})")
    return Keys(key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="session")
def iam_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamS3]:
    log = tmp_path_factory.mktemp("moto-iam") / "server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(ADMIN_SETUP_REQUESTS)}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(SERVER)], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the IAM S3 server did not start: {log.read_text()[-2000:]}"
        endpoint = f"http://127.0.0.1:{port}"
        yield IamS3(endpoint, _bootstrap_admin(endpoint), log)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert "unsupported policy condition" not in log.read_text(), log.read_text()[-2000:]


@pytest.fixture(scope="session")
def role_statements(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, list[dict]]]:
    """The production bucket's name and each role's S3 statements, from the dev templates."""
    from tests.cdk.conftest import synthesize

    synthesized = synthesize("dev", tmp_path_factory)
    statements = {}
    for role in app_roles(synthesized):
        name = "ec2" if role.kind == "ec2" else ROLE_OF_HANDLER.get(role.runs[0])
        if name:
            statements[name] = role.s3_statements()
    assert set(statements) == {"api", "ec2", "s3-events", "reaper"}, statements
    return recordings_bucket_name(synthesized), statements


def for_bucket(statements: list[dict], production: str, bucket: str) -> dict:
    """The statements as a policy for ``bucket`` instead of the production bucket."""
    arn, test_arn = f"arn:aws:s3:::{production}", f"arn:aws:s3:::{bucket}"
    rewritten = []
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(r == arn or r.startswith(f"{arn}/") for r in resources), statement
        rewritten.append({**statement, "Resource": [test_arn + r.removeprefix(arn) for r in resources]})
    return {"Version": "2012-10-17", "Statement": rewritten}


@dataclass
class Roles:
    iam_s3: IamS3
    bucket: str
    production_bucket: str
    statements: dict[str, list[dict]]
    _keys: dict[str, Keys] = field(default_factory=dict)

    def policy(self, role: str) -> dict:
        return for_bucket(self.statements[role], self.production_bucket, self.bucket)

    def keys(self, role: str, policy: dict | None = None) -> Keys:
        """The key of an IAM user with ``role``'s policy (or ``policy``, a variant of it)."""
        if policy is not None:
            return self.iam_s3.user(f"{role}-variant-{uuid.uuid4().hex[:8]}", policy)
        if role not in self._keys:
            self._keys[role] = self.iam_s3.user(f"{role}-{self.bucket}", self.policy(role))
        return self._keys[role]

    def s3(self, role: str):
        return self.iam_s3.client("s3", self.keys(role))

    @contextlib.contextmanager
    def running_as(self, role: str, policy: dict | None = None) -> Iterator[None]:
        """Every S3 client the app builds in here uses ``role``'s credentials (from the
        environment, as in Lambda), and none is shared with code outside."""
        from service.core import storage

        keys = self.keys(role, policy)
        saved_env = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
        saved_clients = storage._clients
        os.environ["AWS_ACCESS_KEY_ID"] = keys.access_key_id
        os.environ["AWS_SECRET_ACCESS_KEY"] = keys.secret_access_key
        os.environ.pop("AWS_SESSION_TOKEN", None)
        storage._clients = {}
        try:
            yield
        finally:
            storage._clients = saved_clients
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def iam_settings(migrated: str, iam_s3: IamS3, owner_engine) -> Iterator[Settings]:
    """The test database and a fresh bucket on the IAM-enforcing server, set up as admin."""
    settings = make_settings(migrated, iam_s3.endpoint)
    admin = iam_s3.client("s3")
    admin.create_bucket(Bucket=settings.s3_bucket)
    admin.put_bucket_versioning(Bucket=settings.s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    yield settings
    with owner_engine.begin() as connection:  # TRUNCATE is the owner's right, not the app's
        connection.execute(text("TRUNCATE recordings, api_keys"))


@pytest.fixture
def roles(iam_s3: IamS3, iam_settings: Settings, role_statements) -> Roles:
    production, statements = role_statements
    return Roles(iam_s3, iam_settings.s3_bucket, production, statements)


@pytest.fixture
def admin_s3(iam_s3: IamS3):
    return iam_s3.client("s3")
