"""Connection settings: which host and credentials the app and the migrations use."""

from service.core.settings import Settings


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
