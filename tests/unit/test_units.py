"""Pure functions: part planning, Content-Disposition, cursors, settings."""

from urllib.parse import unquote

import pytest
from pydantic import SecretStr, ValidationError

from service.core.problems import ProblemError
from service.core.settings import Settings
from service.recordings.service import content_disposition, content_type_allowed, decode_cursor
from service.recordings.uploads import plan_parts

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [5 * MiB + 1, 100 * MiB, 5 * 1024**3, 5 * 1024**4, 48_828 * MiB + 7])
def test_part_plan_respects_s3_limits(size):
    plan = plan_parts(size, 16 * MiB)
    assert plan.part_size >= 5 * MiB
    assert plan.part_size % MiB == 0
    assert plan.part_count <= 10_000
    assert (plan.part_count - 1) * plan.part_size < size <= plan.part_count * plan.part_size


def test_content_disposition_is_attachment_with_ascii_fallback_and_utf8_name():
    header = content_disposition('Täst "quoted"; name.wav')
    assert header.startswith('attachment; filename="T_st _quoted__ name.wav"')
    assert unquote(header.split("filename*=UTF-8''")[1]) == 'Täst "quoted"; name.wav'


def test_content_type_allow_list_uses_wildcards():
    allowed = ["audio/*", "video/mp4"]
    assert content_type_allowed("audio/flac", allowed)
    assert content_type_allowed("video/mp4", allowed)
    assert not content_type_allowed("video/webm", allowed)
    assert not content_type_allowed("text/html", allowed)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WyJ4IiwgInkiXQ"])
def test_tampered_cursors_are_rejected(cursor):
    with pytest.raises(ProblemError) as error:
        decode_cursor(cursor)
    assert error.value.status == 422


def test_presign_expiry_is_capped_at_one_hour():
    with pytest.raises(ValidationError):
        Settings(presign_expires_seconds=3601)
    assert Settings().presign_expires_seconds == 900


def test_lists_come_from_comma_separated_environment(monkeypatch):
    monkeypatch.setenv("ALLOWED_CONTENT_TYPES", "audio/*, video/mp4")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")
    settings = Settings()
    assert settings.allowed_content_types == ["audio/*", "video/mp4"]
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_symmetric_jwt_algorithms_are_refused():
    with pytest.raises(ValidationError):
        Settings(jwt_algorithms=["HS256"])


def test_local_defaults_only_in_the_local_environment():
    assert Settings().s3_endpoint_url == "http://127.0.0.1:9000"
    assert Settings(environment="prod").s3_endpoint_url is None


def test_the_configured_host_wins_over_the_secret_host(monkeypatch):
    """A secret attached to the RDS instance names the instance; the Lambda functions must still
    connect to RDS Proxy (DATABASE_HOST). Without DATABASE_HOST the secret's host is used."""
    from service.core import secrets
    from service.core.db import database_url

    secret = {"username": "recordings_app", "password": "pw", "host": "db.instance.example", "port": 5433}
    monkeypatch.setattr(secrets, "database_credentials", lambda arn, refresh=False: secret)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app"
    through_proxy = database_url(Settings(database_secret_arn=arn, database_host="proxy.example", database_port=5432))
    assert (through_proxy.host, through_proxy.port, through_proxy.username) == ("proxy.example", 5432, "recordings_app")
    direct = database_url(Settings(database_secret_arn=arn))
    assert (direct.host, direct.port) == ("db.instance.example", 5433)


def test_owner_settings_swap_in_the_migration_credentials():
    from service.core.db import owner_settings

    app = Settings(database_url="postgresql://app@db/recordings")
    assert owner_settings(app) is app  # no owner credentials: migrations run as the app (local)
    split = Settings(
        database_url="postgresql://app@db/recordings", database_migration_url="postgresql://owner@db/recordings"
    )
    owner = owner_settings(split)
    assert owner.database_url.get_secret_value() == "postgresql://owner@db/recordings"
    assert owner.database_migration_url is None
    by_secret = owner_settings(Settings(database_secret_arn="app-arn", database_migration_secret_arn="owner-arn"))
    assert by_secret.database_secret_arn == "owner-arn"


def test_the_read_replicas_use_the_apps_secret_and_every_replica_host(monkeypatch):
    """In AWS the replicas are reached by their own endpoints (RDS Proxy has no read-only endpoint
    for RDS instances) with the application's credentials; several replicas become one libpq
    multi-host connection that spreads connections and skips a replica that is down."""
    from service.core import secrets
    from service.core.db import _engine_options, database_url
    from service.web.read_routing import replica_settings

    secret = {"username": "recordings_app", "password": "pw", "host": "db.instance.example", "port": 5433}
    monkeypatch.setattr(secrets, "database_credentials", lambda arn, refresh=False: secret)
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app"
    app = Settings(database_secret_arn=arn, database_host="proxy.example", database_port=5432)
    assert replica_settings(app) is None  # no replica configured: every read on the primary
    # Blank variables (a template that leaves them empty) mean "no replica", not an error.
    assert replica_settings(Settings(database_read_url="", database_read_host=" ", database_read_port="")) is None

    one = replica_settings(app.model_copy(update={"database_read_host": "r1.example", "database_read_port": 5433}))
    url = database_url(one)
    assert (url.host, url.port, url.username, url.password) == ("r1.example", 5433, "recordings_app", "pw")
    assert "load_balance_hosts" not in _engine_options(url, one)["connect_args"]

    two = replica_settings(app.model_copy(update={"database_read_host": "r1.example, r2.example"}))
    url = database_url(two)
    assert url.query["host"] == ("r1.example:5432", "r2.example:5432")
    assert _engine_options(url, two)["connect_args"]["load_balance_hosts"] == "random"

    by_url = replica_settings(
        app.model_copy(update={"database_read_url": SecretStr("postgresql://app@replica/recordings")})
    )
    assert by_url.database_secret_arn is None
    assert database_url(by_url).host == "replica"
