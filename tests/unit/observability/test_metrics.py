"""The /metrics exposition of one process: labels by route template, status codes, histogram
buckets, pool gauges, token protection and the disabled mode."""

from __future__ import annotations

import uuid

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool, QueuePool, StaticPool

from service.core.settings import Settings
from service.observability.metrics import domain as domain_metrics
from service.observability.metrics import http as http_metrics
from service.observability.metrics import pool as pool_metrics
from service.web.middleware import EdgeMiddleware


def _settings(**overrides) -> Settings:
    return Settings(environment="test", **overrides)


def _app(**overrides) -> FastAPI:
    app = FastAPI()
    # A unique prefix per app keeps the counters of one test apart from the others' (shared registry).
    prefix = f"/t{uuid.uuid4().hex[:8]}"

    @app.get(prefix + "/items/{item_id}")
    def get_item(item_id: str) -> dict:
        if item_id == "missing":
            raise HTTPException(status_code=404)
        if item_id == "boom":
            raise RuntimeError("unexpected")
        return {"id": item_id}

    app.state.prefix = prefix
    metrics = http_metrics.install_metrics(app, _settings(**overrides))
    app.add_middleware(EdgeMiddleware, max_bytes=2**20, metrics=metrics)
    return app


def _samples(body: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def _value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_requests_are_labelled_by_route_template_and_status():
    app = _app()
    prefix = app.state.prefix
    client = TestClient(app, raise_server_exceptions=False)
    for item in ("a", "b", "c"):
        assert client.get(f"{prefix}/items/{item}").status_code == 200
    assert client.get(f"{prefix}/items/missing").status_code == 404
    assert client.get(f"{prefix}/items/boom").status_code == 500
    assert client.get(f"{prefix}/nothing/here/{uuid.uuid4()}").status_code == 404

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    samples = _samples(body)
    template = f"{prefix}/items/{{item_id}}"
    assert _value(samples, "http_requests_total", method="GET", route=template, status="200") == 3
    assert _value(samples, "http_requests_total", method="GET", route=template, status="404") == 1
    assert _value(samples, "http_requests_total", method="GET", route=template, status="500") == 1
    # Raw paths never become label values: unmatched requests share one fixed label.
    assert f"{prefix}/items/a" not in body
    assert f"{prefix}/nothing" not in body
    assert (
        _value(samples, "http_requests_total", method="GET", route=http_metrics.UNMATCHED_ROUTE, status="404") or 0
    ) >= 1
    assert _value(samples, "http_request_duration_seconds_count", method="GET", route=template) == 5


def test_latency_histogram_has_fine_buckets_around_the_alert_threshold():
    app = _app()
    client = TestClient(app)
    client.get(f"{app.state.prefix}/items/x")
    samples = _samples(client.get("/metrics").text)
    template = f"{app.state.prefix}/items/{{item_id}}"
    bounds = sorted(
        float(dict(labels)["le"])
        for (name, labels) in samples
        if name == "http_request_duration_seconds_bucket" and dict(labels).get("route") == template
    )
    assert bounds[-1] == float("inf")
    assert 0.5 in bounds
    near = [b for b in bounds if 0.1 <= b <= 1.0]
    assert len(near) >= 10, f"too few buckets between 100 ms and 1 s: {near}"
    # Every bucket of this fast request is cumulative: +Inf holds the single observation.
    assert _value(samples, "http_request_duration_seconds_bucket", method="GET", route=template, le="+Inf") == 1


def test_in_flight_gauge_and_upload_counters_are_exported():
    client = TestClient(_app())
    before = _samples(client.get("/metrics").text)
    domain_metrics.record_upload("completed")
    domain_metrics.record_upload("completed")
    domain_metrics.record_upload("restored")
    after = _samples(client.get("/metrics").text)

    def delta(outcome: str) -> float:
        name = "recordings_uploads_total"
        return (_value(after, name, outcome=outcome) or 0) - (_value(before, name, outcome=outcome) or 0)

    assert delta("completed") == 2
    assert delta("restored") == 1
    for outcome in domain_metrics.UPLOAD_OUTCOMES:
        assert _value(after, "recordings_uploads_total", outcome=outcome) is not None
    # The scrape itself is in flight while the exposition is rendered.
    assert _value(after, "http_requests_in_progress", method="GET") == 1
    assert _value(after, "process_resident_memory_bytes") > 0
    assert _value(after, "process_cpu_seconds_total") is not None


def test_metrics_token_protects_the_endpoint():
    client = TestClient(_app(metrics_token=SecretStr("s3cret-token")))
    missing = client.get("/metrics")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "http_requests_total" not in missing.text
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic s3cret-token"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200
    assert "http_requests_total" in ok.text


def test_metrics_token_can_come_from_secrets_manager(monkeypatch):
    # The deployments pass METRICS_TOKEN_SECRET_ARN (a Secrets Manager secret the CDK creates).
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        import boto3

        arn = boto3.client("secretsmanager").create_secret(Name="metrics-token", SecretString="from-the-secret")["ARN"]
        parameters.clear_caches()
        client = TestClient(_app(metrics_token_secret_arn=arn))
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/metrics", headers={"Authorization": "Bearer from-the-secret"})
        assert ok.status_code == 200
        assert "http_requests_total" in ok.text
    parameters.clear_caches()


def test_disabled_metrics_have_no_route_and_no_instrumentation():
    app = _app(metrics_enabled=False)
    client = TestClient(app)
    assert client.get("/metrics").status_code == 404
    client.get(f"{app.state.prefix}/items/q")
    enabled_client = TestClient(_app())
    body = enabled_client.get("/metrics").text
    assert app.state.prefix not in body


def test_metrics_route_is_not_in_the_openapi_schema():
    schema = TestClient(_app()).get("/openapi.json").json()
    assert "/metrics" not in schema["paths"]


def test_pool_usage_is_exported_for_queue_pools(tmp_path):
    engine = create_engine(
        f"sqlite:///{tmp_path}/pool-{uuid.uuid4().hex[:6]}.db", poolclass=QueuePool, pool_size=4, max_overflow=3
    )
    pool_metrics.track_pool(engine)
    pool_metrics.track_pool(engine)  # idempotent
    label = f"sqlite:{engine.url.database}"
    client = TestClient(_app())
    with engine.connect() as first, engine.connect() as second:
        first.execute(text("SELECT 1"))
        second.execute(text("SELECT 1"))
        busy = _samples(client.get("/metrics").text)
    idle = _samples(client.get("/metrics").text)
    assert _value(busy, "db_pool_size", pool=label) == 4
    assert _value(busy, "db_pool_max_overflow", pool=label) == 3
    assert _value(busy, "db_pool_checked_out", pool=label) == 2
    assert _value(idle, "db_pool_checked_out", pool=label) == 0
    engine.dispose()


@pytest.mark.parametrize("poolclass", [NullPool, StaticPool])
def test_pools_without_a_size_are_ignored(poolclass):
    engine = create_engine("sqlite://", poolclass=poolclass)
    pool_metrics.track_pool(engine)
    pool_metrics.track_pool(engine)
    body = TestClient(_app()).get("/metrics").text
    assert 'pool="sqlite:"' not in body
    engine.dispose()


def test_real_app_exports_route_templates():
    from service.api.app import create_app

    app = create_app(_settings())
    client = TestClient(app)
    assert client.get("/health").status_code == 200
    client.get(f"/v1/recordings/{uuid.uuid4()}")  # no credentials: answered before any database use
    body = client.get("/metrics").text
    samples = _samples(body)
    assert (_value(samples, "http_requests_total", method="GET", route="/health", status="200") or 0) >= 1
    assert any(
        name == "http_requests_total" and dict(labels).get("route") == "/v1/recordings/{recording_id}"
        for (name, labels) in samples
    )
