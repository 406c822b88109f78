"""Server memory: RSS after 20,000 mixed requests against RSS after 1,000."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.harness import Context, Measurement, app_server, free_port, wrk
from bench.throughput import get_script


def measure(ctx: Context) -> dict[str, Measurement]:
    env = ctx.app_env()
    token, ids = ctx.token, ctx.ids
    port = free_port()
    mixed = get_script(token, ids).replace("request = function()", "request_get = function()") + (
        "counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        "  if counter % 4 == 0 then\n"
        f'    return wrk.format("POST", "/v1/recordings", '
        f'{{["Content-Type"]="application/json", ["Authorization"]="Bearer {token}"}}, '
        f"[[{json.dumps({'filename': 'rss.wav', 'content_type': 'audio/wav', 'size_bytes': 10})}]])\n"
        "  end\n"
        "  return request_get()\n"
        "end\n"
    )

    def rss_kib(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))

    served = {"n": 0}

    def send(until: int) -> None:
        # wrk runs by time: keep it going in short runs until the server has answered `until` requests.
        while served["n"] < until:
            load = wrk(port, mixed, 1, connections=8)
            if load.errors:
                raise RuntimeError(f"{load.errors} failed requests in the RSS run")
            served["n"] += load.requests

    with app_server(env, port) as process:
        send(1000)
        after_1k = rss_kib(process.pid)
        send(20000)
        after_20k = rss_kib(process.pid)
        total = served["n"]
    return {
        "rss_growth": Measurement(
            after_20k / after_1k,
            detail={"rss_after_1k_kib": after_1k, "rss_after_20k_kib": after_20k, "requests_served": total},
        )
    }
