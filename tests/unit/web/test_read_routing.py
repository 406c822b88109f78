"""The read replicas' connection settings."""

from pydantic import SecretStr

from service.core.settings import Settings


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
