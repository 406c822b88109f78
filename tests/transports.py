"""An httpx transport that plays API Gateway in front of a Lambda handler.

Each request becomes an API Gateway event (HTTP API payload 2.0, or REST API 1.0) built on the
recorded events in tests/events/, the handler is invoked with a Lambda context, and its result
becomes the response, so the same tests drive the app through ASGI and through Mangum.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

EVENTS = Path(__file__).parent / "events"
DEFAULT_DOMAIN = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
TEXT_TYPES = ("text/", "application/json", "application/problem+json", "application/x-www-form-urlencoded")


def load_event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


@dataclass
class LambdaContext:
    function_name: str = "recordings-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:recordings-api"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/recordings-api"
    log_stream_name: str = "2026/11/06/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


# One execution environment runs one invocation at a time, on the same thread and event loop,
# and the handler's module state (Powertools' metric buffer, the logger's correlation id) relies
# on it: every invocation runs on this one worker thread, whichever thread asked for it (the
# caller's thread may even have a running event loop of its own, as under Playwright).
_environment = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda-environment")


def _run(handler, event: dict, context: Any) -> Any:
    try:
        asyncio.get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    with warnings.catch_warnings():
        # pytest resets warning filters per test; the runtime's own filter is lost here.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        return handler(event, context)


def invoke(handler, event: dict, context: Any = None) -> Any:
    return _environment.submit(_run, handler, event, context or LambdaContext()).result()


def _body_fields(request: httpx.Request) -> dict:
    body = request.read()
    if not body:
        return {"isBase64Encoded": False}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(TEXT_TYPES):
        try:
            return {"body": body.decode(), "isBase64Encoded": False}
        except UnicodeDecodeError:
            pass
    return {"body": base64.b64encode(body).decode(), "isBase64Encoded": True}


class LambdaTransport(httpx.BaseTransport):
    """Turn requests into API Gateway events for ``handler``.

    ``payload`` "2.0" is an HTTP API: the URL path is the event's path, a named stage included.
    ``payload`` "1.0" is a REST API: on the default endpoint the stage (first URL segment) is
    removed from ``path`` and kept in ``requestContext.path``; on a custom domain, the whole
    URL path (base path included) is the event's path.
    """

    def __init__(self, handler, *, payload: str = "2.0", stage: str = "$default", domain: str = DEFAULT_DOMAIN):
        self.handler = handler
        self.payload = payload
        self.stage = stage
        self.domain = domain
        self.events: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        event = self.v2_event(request) if self.payload == "2.0" else self.v1_event(request)
        self.events.append(event)
        return self.response(invoke(self.handler, event), request)

    def _headers(self, request: httpx.Request) -> list[tuple[str, str]]:
        headers = [(k.lower(), v) for k, v in request.headers.multi_items() if k.lower() != "host"]
        headers += [
            ("host", request.url.netloc.decode()),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-port", str(request.url.port or (443 if request.url.scheme == "https" else 80))),
            # The tests' URL scheme, not https: cookie Secure flags follow it as on the ASGI path.
            ("x-forwarded-proto", request.url.scheme),
            ("x-amzn-trace-id", f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"),
        ]
        return headers

    def v2_event(self, request: httpx.Request) -> dict:
        event = load_event("apigw-http-v2.json")
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for name, value in self._headers(request):
            if name == "cookie":
                cookies += [c.strip() for c in value.split(";") if c.strip()]
            else:
                headers[name] = f"{headers[name]},{value}" if name in headers else value
        query = request.url.query.decode()
        params: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params[name] = f"{params[name]},{value}" if name in params else value
        path = request.url.raw_path.decode().split("?")[0]
        event.update(
            rawPath=path,
            rawQueryString=query,
            headers=headers,
            **_body_fields(request),
        )
        for key, value in (("cookies", cookies), ("queryStringParameters", params)):
            if value:
                event[key] = value
            else:
                event.pop(key, None)
        context = event["requestContext"]
        context.update(stage=self.stage, domainName=self.domain, domainPrefix=self.domain.split(".")[0])
        context["requestId"] = base64.b64encode(uuid.uuid4().bytes[:10]).decode()
        context["http"].update(method=request.method, path=path)
        return event

    def v1_event(self, request: httpx.Request) -> dict:
        event = load_event("apigw-rest-v1.json")
        url_path = request.url.raw_path.decode().split("?")[0]
        path = url_path
        if ".execute-api." in self.domain:
            stage_prefix = f"/{self.stage}"
            assert url_path == stage_prefix or url_path.startswith(stage_prefix + "/"), url_path
            path = url_path[len(stage_prefix) :] or "/"
        headers = self._headers(request)
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers:
            multi_headers.setdefault(name, []).append(value)
        multi_query: dict[str, list[str]] = {}
        for name, value in parse_qsl(request.url.query.decode(), keep_blank_values=True):
            multi_query.setdefault(name, []).append(value)
        body = _body_fields(request)
        event.update(
            path=path,
            httpMethod=request.method,
            headers={name: values[-1] for name, values in multi_headers.items()},
            multiValueHeaders=multi_headers,
            queryStringParameters={name: values[-1] for name, values in multi_query.items()} or None,
            multiValueQueryStringParameters=multi_query or None,
            pathParameters={"proxy": path.lstrip("/")},
            body=body.get("body"),
            isBase64Encoded=body["isBase64Encoded"],
        )
        context = event["requestContext"]
        context.update(
            path=url_path,
            httpMethod=request.method,
            stage=self.stage,
            domainName=self.domain,
            domainPrefix=self.domain.split(".")[0],
            requestId=str(uuid.uuid4()),
        )
        return event

    @staticmethod
    def response(result: dict, request: httpx.Request) -> httpx.Response:
        headers = list((result.get("headers") or {}).items())
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers += [(name, value) for value in values]
        headers += [("set-cookie", cookie) for cookie in result.get("cookies") or []]
        body = result.get("body") or ""
        content = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
        return httpx.Response(result["statusCode"], headers=headers, content=content, request=request)


def lambda_client(
    app, *, base_url: str = "http://testserver", base_path: str | None = None, **transport
) -> httpx.Client:
    """A TestClient-like client whose requests go through ``handlers.api``'s handler around ``app``."""
    from handlers.api import build_handler

    handler = build_handler(app, base_path=base_path)
    # TestClient follows redirects unless told not to; so does this client.
    return httpx.Client(transport=LambdaTransport(handler, **transport), base_url=base_url, follow_redirects=True)
