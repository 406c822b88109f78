"""Bytes on the wire: what the app sends and receives for a whole multipart upload."""

from __future__ import annotations

import asyncio
import os

from bench.harness import Context, Measurement, MiB, create_app


def measure(ctx: Context) -> dict[str, Measurement]:
    import httpx

    settings = ctx.settings.model_copy(update={"multipart_threshold_bytes": 5 * MiB})
    app = create_app(settings)
    counted = {"bytes": 0}

    async def counting_app(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        request_line = f"{scope['method']} {scope['path']}?{scope['query_string'].decode()} HTTP/1.1\r\n"
        counted["bytes"] += len(request_line) + sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + 2

        async def counting_receive():
            message = await receive()
            counted["bytes"] += len(message.get("body", b""))
            return message

        async def counting_send(message):
            if message["type"] == "http.response.start":
                counted["bytes"] += 17 + sum(len(k) + len(v) + 4 for k, v in message.get("headers", [])) + 2
            elif message["type"] == "http.response.body":
                counted["bytes"] += len(message.get("body", b""))
            await send(message)

        await app(scope, counting_receive, counting_send)

    headers = {"Authorization": f"Bearer {ctx.token}", "Accept-Encoding": "gzip"}

    async def upload(size: int) -> int:
        counted["bytes"] = 0
        chunk = os.urandom(MiB)
        transport = httpx.ASGITransport(app=counting_app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as api,
            httpx.AsyncClient(timeout=120) as s3,
        ):
            created = await api.post(
                "/v1/recordings", json={"filename": "wire.wav", "content_type": "audio/wav", "size_bytes": size}
            )
            assert created.status_code == 201, created.text
            upload, rid = created.json()["upload"], created.json()["recording"]["id"]
            assert upload["method"] == "MULTIPART"
            part_size, count = upload["part_size"], upload["part_count"]
            for first in range(1, count + 1, 100):
                numbers = list(range(first, min(count, first + 99) + 1))
                urls = (
                    await api.get(
                        f"/v1/recordings/{rid}/upload/parts", params={"part_numbers": ",".join(map(str, numbers))}
                    )
                ).json()["urls"]
                for n in numbers:
                    length = min(part_size, size - (n - 1) * part_size)
                    body = (chunk * (length // MiB + 1))[:length]
                    assert (await s3.put(urls[str(n)], content=body)).status_code == 200
            done = await api.post(f"/v1/recordings/{rid}/complete")
            assert done.status_code == 200 and done.json()["status"] == "available", done.text
        return counted["bytes"]

    small = asyncio.run(upload(8 * MiB))
    large = asyncio.run(upload(256 * MiB))
    # The bound on the total is part of the target, next to the ratio's.
    return {
        "wire_bytes": Measurement(
            large / small, detail={"bytes_8MiB": small, "bytes_256MiB": large}, ok=large < 64 * 1024
        )
    }
