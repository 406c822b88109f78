"""handlers.api: the app behind API Gateway (REST v1, named stages, custom domain base paths),
recorded events replayed as they arrive, resources reused across invocations, offline import."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.uploading import create, payload
from tests.transports import invoke, lambda_client, load_event

ROOT = Path(__file__).resolve().parents[2]


def exercise(client, tenant, prefix: str) -> None:
    """A user's round trip: create, upload, complete, list with a query, read, 404 as problem+json."""
    data = payload(3000)
    body = {"filename": "take.wav", "content_type": "audio/wav", "size_bytes": len(data), "title": "été"}
    created = client.post(f"{prefix}/v1/recordings", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    upload = created.json()["upload"]
    from tests.api.uploading import post_form

    post_form(upload, data)
    rid = created.json()["recording"]["id"]
    done = client.post(f"{prefix}/v1/recordings/{rid}/complete", headers=tenant.headers)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"

    listed = client.get(f"{prefix}/v1/recordings", params={"limit": 1, "status": "available"}, headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    assert [item["title"] for item in listed.json()["items"]] == ["été"]

    missing = client.get(f"{prefix}/v1/recordings/00000000-0000-0000-0000-000000000000", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["instance"] == f"{prefix}/v1/recordings/00000000-0000-0000-0000-000000000000"

    redirect = client.get(
        f"{prefix}/v1/recordings/{rid}/download",
        params={"redirect": "true"},
        headers=tenant.headers,
        follow_redirects=False,
    )
    assert redirect.status_code == 307
    assert redirect.headers["location"].startswith("http")


@pytest.mark.parametrize(
    ("case", "transport", "base_path", "prefix"),
    [
        ("rest-v1-stage", {"payload": "1.0", "stage": "prod"}, None, "/prod"),
        ("http-v2-named-stage", {"payload": "2.0", "stage": "prod"}, None, "/prod"),
        (
            "rest-v1-custom-domain",
            {"payload": "1.0", "stage": "prod", "domain": "api.example.com"},
            "recordings",
            "/recordings",
        ),
        (
            "http-v2-custom-domain",
            {"payload": "2.0", "stage": "prod", "domain": "api.example.com"},
            "recordings",
            "/recordings",
        ),
        ("http-v2-default-stage", {"payload": "2.0"}, None, ""),
    ],
)
def test_gateway_variants_serve_the_api(app, alice, case, transport, base_path, prefix):
    with lambda_client(app, base_path=base_path, **transport) as client:
        exercise(client, alice, prefix)


def test_the_lambda_pool_of_one_connection_serves_a_whole_round_trip(app, alice):
    """The deployment gives each Lambda environment one pooled connection and no overflow: no step
    may hold a second connection (it would wait for the first until the pool times out), and the
    connection stays for the next invocation."""
    from service.api.app import create_app
    from service.core.db import get_engine, reset_engine

    settings = app.state.settings.model_copy(
        update={"runtime": "lambda", "db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_seconds": 1}
    )
    try:
        with lambda_client(create_app(settings)) as client:
            exercise(client, alice, "")
        pool = get_engine(settings).pool
        assert (pool.size(), pool.checkedout(), pool.checkedin()) == (1, 0, 1)  # type: ignore[attr-defined]
    finally:
        reset_engine(settings)


def test_rest_v1_event_keeps_the_stage_out_of_the_path(app, alice):
    with lambda_client(app, payload="1.0", stage="prod") as client:
        assert client.get("/prod/v1/recordings", headers=alice.headers).status_code == 200
        event = client._transport.events[-1]
    assert event["path"] == "/v1/recordings"
    assert event["requestContext"]["path"] == "/prod/v1/recordings"


def test_openapi_document_knows_the_public_prefix(app):
    with lambda_client(app, payload="2.0", stage="prod") as client:
        document = client.get("/prod/openapi.json")
        docs = client.get("/prod/docs")
    assert document.status_code == 200
    assert document.json()["servers"] == [{"url": "/prod"}]
    assert "/prod/openapi.json" in docs.text


def test_a_stage_named_like_a_route_is_stripped_once(app, alice):
    with lambda_client(app, payload="2.0", stage="v1") as client:
        assert client.get("/v1/v1/recordings", headers=alice.headers).status_code == 200


def test_recorded_http_api_event_replayed_as_is(app, alice):
    from handlers.api import build_handler

    event = load_event("apigw-http-v2.json")
    event["headers"]["authorization"] = alice.headers["Authorization"]
    result = invoke(build_handler(app), event)

    assert result["statusCode"] == 200
    assert result["headers"]["content-type"] == "application/json"
    assert result["isBase64Encoded"] is False
    assert json.loads(result["body"])["items"] == []


def test_recorded_rest_event_answers_with_multi_value_headers(app, alice):
    from handlers.api import build_handler

    event = load_event("apigw-rest-v1.json")
    event["headers"]["Authorization"] = event["multiValueHeaders"]["Authorization"][0] = alice.headers["Authorization"]
    result = invoke(build_handler(app), event)

    assert result["statusCode"] == 200, result
    assert set(result) == {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}
    assert "items" in json.loads(result["body"])


def test_binary_request_bodies_arrive_base64_encoded(app, alice):
    with lambda_client(app) as client:
        response = client.post(
            "/v1/recordings",
            content=b"\xff\xfe\x00binary",
            headers={**alice.headers, "content-type": "application/octet-stream"},
        )
        event = client._transport.events[-1]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\xfe\x00binary"
    assert response.status_code in (400, 415, 422)
    assert response.headers["content-type"] == "application/problem+json"


def test_two_invocations_reuse_the_engine_and_the_s3_client(app, alice, monkeypatch):
    import service.core.db
    import service.core.storage

    built = {"engines": 0, "clients": 0}
    build_engine, build_client = service.core.db._build_engine, service.core.storage._build_client

    def counting_engine(settings):
        built["engines"] += 1
        return build_engine(settings)

    def counting_client(settings):
        built["clients"] += 1
        return build_client(settings)

    monkeypatch.setattr(service.core.db, "_build_engine", counting_engine)
    monkeypatch.setattr(service.core.storage, "_build_client", counting_client)
    settings = app.state.settings.model_copy(update={"db_pool_size": 2, "s3_read_timeout_seconds": 9.5})
    from service.api.app import create_app

    fresh_app = create_app(settings)
    with lambda_client(fresh_app) as client:
        for _ in range(2):
            created = client.post(
                "/v1/recordings",
                json={"filename": "a.wav", "content_type": "audio/wav", "size_bytes": 10},
                headers=alice.headers,
            )
            assert created.status_code == 201, created.text
    assert built == {"engines": 1, "clients": 1}
    from service.core.db import get_engine
    from service.core.storage import s3_client

    assert get_engine(settings) is get_engine(settings)
    assert s3_client(settings) is s3_client(settings)
    service.core.db.reset_engine(settings)


SCRUBBED = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"}


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**SCRUBBED, **(env or {})},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_needs_no_credentials_database_or_network():
    # No AWS credentials or region, no database URL, and any connection attempt is an error.
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('network used at import')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "import handlers.api, handlers.s3_events, handlers.jobs\n"
        "import sys; assert 'aws_xray_sdk' not in sys.modules, 'tracing is off: X-Ray must not load'\n"
        "print('imported')\n"
    )
    result = run_python(code, {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_service_logs_are_json_with_the_correlation_id_in_lambda():
    code = (
        "import logging, handlers.api\n"
        "from handlers.runtime import lambda_entrypoint\n"
        "from tests.transports import LambdaContext, load_event\n"
        "@lambda_entrypoint(correlation_id_path='requestContext.requestId')\n"
        "def fn(event, context):\n"
        "    logging.getLogger('service.uploads').warning('from the service')\n"
        "fn(load_event('apigw-http-v2.json'), LambdaContext())\n"
    )
    result = run_python(code, {"AWS_LAMBDA_FUNCTION_NAME": "recordings-api"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    log = next(line for line in lines if line.get("message") == "from the service")
    assert log["correlation_id"] == load_event("apigw-http-v2.json")["requestContext"]["requestId"]
    assert log["cold_start"] is True
    assert log["level"] == "WARNING"


def test_tracer_is_built_only_when_tracing_is_on():
    pytest.importorskip("aws_xray_sdk", reason="tracing needs aws-xray-sdk (aws-lambda-powertools[tracer])")
    off = run_python(
        "import handlers.api, sys; print('aws_xray_sdk' in sys.modules)",
        {"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"},
    )
    on = run_python(
        "import handlers.api, sys; from handlers.runtime import tracer; print(tracer is not None)",
        {"LAMBDA_TASK_ROOT": "/var/task", "AWS_REGION": "us-east-1", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"},
    )
    assert off.returncode == 0, off.stderr
    assert off.stdout.strip() == "False"
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip().splitlines()[-1] == "True"


def test_created_recordings_are_counted_in_emf(app, alice, capsys):
    with lambda_client(app) as client:
        capsys.readouterr()
        create(client, alice, size=10)
        documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert any(document.get("RecordingsCreated") == [1.0] for document in documents), documents


def recorded_v2_get(path: str) -> dict:
    """The recorded HTTP API (v2) GET event, for ``path`` without a query."""
    event = load_event("apigw-http-v2.json")
    context = event["requestContext"]
    return {
        **event,
        "rawPath": path,
        "rawQueryString": "",
        "queryStringParameters": None,
        "requestContext": {**context, "http": {**context["http"], "path": path}},
    }


def test_invocations_share_the_worker_thread_and_keep_their_own_context():
    """A synchronous route runs on anyio's worker thread, which outlives the invocation (no thread
    started per request), and sees the context of its own invocation (the EMF flag, and a
    variable the caller sets per invocation), which ends with it."""
    import contextvars
    import threading

    from fastapi import FastAPI

    from handlers.api import build_handler
    from service.observability.emf import invoking

    app = FastAPI()
    seen: list[tuple[threading.Thread, bool, int]] = []
    invocation: contextvars.ContextVar[int] = contextvars.ContextVar("invocation", default=0)

    @app.get("/where")
    def where() -> dict[str, int]:
        seen.append((threading.current_thread(), invoking.get(), invocation.get()))
        return {"invocation": invocation.get()}

    @app.get("/fails")
    def fails() -> None:
        raise RuntimeError("boom")

    handler = build_handler(app, base_path="")

    def numbered(number: int, path: str) -> dict:
        token = invocation.set(number)
        try:
            return _run(handler, recorded_v2_get(path), LambdaContext())
        finally:
            invocation.reset(token)

    from tests.transports import LambdaContext, _environment, _run

    paths = ("/where", "/fails", "/where", "/where")
    answers = [_environment.submit(numbered, n, path).result() for n, path in enumerate(paths, start=1)]

    assert [answer["statusCode"] for answer in answers] == [200, 500, 200, 200]
    assert [json.loads(answers[n]["body"]) for n in (0, 2, 3)] == [{"invocation": n} for n in (1, 3, 4)]
    assert [number for _, _, number in seen] == [1, 3, 4]
    assert all(flag for _, flag, _ in seen)
    threads = {id(thread) for thread, _, _ in seen}
    assert len(threads) == 1, seen
    assert seen[0][0] is not threading.current_thread()
    assert _environment.submit(invoking.get).result() is False
    assert _environment.submit(invocation.get).result() == 0


def test_a_process_that_invoked_the_handler_exits():
    """The worker thread that outlives invocations does not keep a finished process alive."""
    code = """
import json, sys
from fastapi import FastAPI
from handlers.api import build_handler
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "ping", 128, "ping"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ping"
app = FastAPI()
@app.get("/ping")
def ping():
    return {"pong": True}
event = json.loads(sys.argv[1])
print(build_handler(app, base_path="")(event, Context())["statusCode"])
"""
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(recorded_v2_get("/ping"))],
        env={**SCRUBBED, "POWERTOOLS_METRICS_NAMESPACE": "test"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "200"
