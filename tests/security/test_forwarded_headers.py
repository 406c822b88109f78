"""Behind the ALB: forwarded headers count only from the load balancer's network.

``python -m service serve`` hands FORWARDED_ALLOW_IPS (the VPC's CIDR on EC2) to uvicorn, which
wraps the app in its ProxyHeadersMiddleware; the same middleware is exercised here with the
client addresses the ALB and an outsider would have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import httpx
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from service.api.app import create_app

VPC_CIDR = "10.40.0.0/16"  # the dev profile's network.cidr


def _get(settings, client_ip: str, headers: dict[str, str], path: str = "/health") -> httpx.Response:
    app = ProxyHeadersMiddleware(create_app(settings), trusted_hosts=VPC_CIDR)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://internal") as client:
            return await client.get(path, headers=headers)

    # A thread of its own: other suites (the browser tests) may leave an event loop running here.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result()


def test_hsts_when_the_load_balancer_says_https(settings) -> None:
    response = _get(settings, "10.40.3.17", {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"})
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_plain_http_through_the_load_balancer_gets_no_hsts(settings) -> None:
    response = _get(settings, "10.40.3.17", {"X-Forwarded-Proto": "http"})
    assert "strict-transport-security" not in response.headers


def test_forwarded_headers_from_outside_the_vpc_are_ignored(settings) -> None:
    # Someone reaching the port directly cannot claim HTTPS (and so a Secure-only context).
    response = _get(settings, "203.0.113.9", {"X-Forwarded-Proto": "https"})
    assert response.status_code == 200
    assert "strict-transport-security" not in response.headers
