"""The Lambda path: import time, cold start (from the source tree and from the image's own
layout, with and without its bytecode) and the handler's cost per request."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.artifact import lambda_trees
from bench.harness import (
    LAMBDA_MODULE,
    ROOT,
    Context,
    Measurement,
    create_app,
    fresh_process_ratio,
    lambda_handler_for,
    ratios,
    settings_env,
)

BASELINE_LIBRARIES = "fastapi, mangum, sqlalchemy, boto3, psycopg2"
# The Lambda deployment's pool (cdk/constructs/lambda_path.py): one connection, no overflow. The
# baseline reads DB_POOL_SIZE too, and opens its whole pool on its first request.
LAMBDA_POOL = {"RUNTIME": "lambda", "DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0"}

# A fresh process times its imports and its first GET (the event is argv[1]) and prints seconds.
COLD_SCRIPT = """
import json, sys, time
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "bench", 1024, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
started = time.perf_counter()
{imports}
response = {handler}(json.loads(sys.argv[1]), Context())
assert response["statusCode"] == 200, response
print(time.perf_counter() - started)
"""
COLD_APP = COLD_SCRIPT.format(imports=f"import {LAMBDA_MODULE}", handler=f"{LAMBDA_MODULE}.handler")
COLD_BASELINE = COLD_SCRIPT.format(
    imports=f"import {BASELINE_LIBRARIES}\nimport bench.baseline_app",
    handler='mangum.Mangum(bench.baseline_app.app, lifespan="off")',
)


def v2_get_event(path: str, token: str) -> dict:
    """An API Gateway HTTP API (payload v2) GET event for ``path`` with a bearer token."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": f"Bearer {token}",
            "host": "api.bench",
            "user-agent": "bench",
            "x-forwarded-proto": "https",
            "x-forwarded-port": "443",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "api.bench",
            "domainPrefix": "api",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "bench",
            },
            "requestId": "bench",
            "routeKey": "$default",
            "stage": "$default",
            "time": "29/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }


def _runs(ctx: Context) -> int:
    return 6 if ctx.quick else 10


def import_time(ctx: Context) -> dict[str, Measurement]:
    """``import handlers.api`` against importing the baseline's libraries, fresh processes."""

    def timed(code: str) -> float:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        return time.perf_counter() - started

    return {
        "import_time": fresh_process_ratio(
            app=lambda: timed(f"import {LAMBDA_MODULE}"), base=lambda: timed(f"import {BASELINE_LIBRARIES}"), runs=10
        )
    }


def _timed(command: list[str], code: str, event: str, env: dict[str, str], cwd: Path) -> float:
    done = subprocess.run([*command, "-c", code, event], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"cold start run failed: {done.stderr[-2000:]}")
    return float(done.stdout.split()[-1])


def _event(ctx: Context) -> str:
    return json.dumps(v2_get_event(f"/v1/recordings/{ctx.ids[0]}", ctx.token))


def compile_source_tree() -> None:
    """Bytecode for the checkout's own packages, as a checkout that has run once has it (the
    virtualenv's packages got theirs from pip). Where PYTHONDONTWRITEBYTECODE is set, nothing
    would ever write it, and every cold start would compile the app from source while the
    baseline, one small module, hardly compiles at all."""
    import compileall

    for package in ("service", "handlers", "bench"):
        if not compileall.compile_dir(ROOT / package, quiet=2):
            raise RuntimeError(f"compiling {package} failed")


def cold_start(ctx: Context) -> dict[str, Measurement]:
    """Import plus the first GET by id through the Lambda handler (``LAMBDA_POOL``), each in
    a fresh process of this virtualenv on the source tree (with its bytecode: see
    ``compile_source_tree``), against the baseline's libraries, its app and its first GET
    through Mangum."""
    compile_source_tree()
    env = {**ctx.baseline_env(), **LAMBDA_POOL}
    event, python = _event(ctx), [sys.executable]
    return {
        "cold_start": fresh_process_ratio(
            app=lambda: _timed(python, COLD_APP, event, env, ROOT),
            base=lambda: _timed(python, COLD_BASELINE, event, env, ROOT),
            runs=_runs(ctx),
        )
    }


def image_cold_start(ctx: Context) -> dict[str, Measurement]:
    """The cold start from the image's layout (bench/artifact.py): read-only trees, the
    interpreter's own site-packages left out (``-S``), no bytecode written, HOME and TMPDIR a
    scratch directory, and the working directory outside the repository. The compiled tree
    against the baseline from the same tree; and the as-built tree without bytecode against the
    compiled one (no target: what shipping bytecode saves)."""
    python = [getattr(sys, "_base_executable", sys.executable), "-S"]
    event = _event(ctx)
    baseline_only = {k: v for k, v in ctx.baseline_env().items() if k.startswith("BASELINE_")}
    with lambda_trees() as trees, tempfile.TemporaryDirectory(prefix="recordings-bench-home-") as home:
        common = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "TMPDIR": home,
            "PYTHONDONTWRITEBYTECODE": "1",
            **LAMBDA_POOL,
            **settings_env(ctx.database_url, ctx.s3_endpoint, ctx.bucket),
            **baseline_only,
        }
        envs = {name: {**common, "PYTHONPATH": str(tree)} for name, tree in trees.items()}
        cwd = Path(home)
        samples: dict[str, list[float]] = {"base": [], "app": [], "app_as_built": []}
        for _ in range(_runs(ctx)):  # interleaved, so machine noise falls on all alike
            samples["base"].append(_timed(python, COLD_BASELINE, event, envs["compiled"], cwd))
            samples["app"].append(_timed(python, COLD_APP, event, envs["compiled"], cwd))
            samples["app_as_built"].append(_timed(python, COLD_APP, event, envs["as_built"], cwd))
    med = {name: statistics.median(values) for name, values in samples.items()}
    seconds = {f"{name}_median_s": round(value, 4) for name, value in med.items()}
    return {
        "cold_start_image": Measurement(
            med["app"] / med["base"],
            (min(samples["app"]) / max(samples["base"]), max(samples["app"]) / min(samples["base"])),
            seconds,
        ),
        "cold_start_no_bytecode": Measurement(
            med["app_as_built"] / med["app"],
            (min(samples["app_as_built"]) / max(samples["app"]), max(samples["app_as_built"]) / min(samples["app"])),
            seconds,
        ),
    }


def lambda_request(ctx: Context, samples: int = 400) -> dict[str, Measurement]:
    """p50 of one GET through the Lambda handler with a v2 event, in process, against the same
    request through ``httpx.ASGITransport`` to the same app."""
    import httpx

    token, rid = ctx.token, ctx.ids[0]
    app = create_app(ctx.settings)
    handler = lambda_handler_for(app)
    path = f"/v1/recordings/{rid}"
    event = v2_get_event(path, token)

    class LambdaContext:
        function_name = "bench"
        memory_limit_in_mb = 1024
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        aws_request_id = "bench"

    async def asgi_samples() -> list[float]:
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(samples):
                started = time.perf_counter()
                response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
                out.append(time.perf_counter() - started)
                assert response.status_code == 200
        return out

    def lambda_samples() -> list[float]:
        out = []
        for _ in range(samples):
            started = time.perf_counter()
            response = handler(event, LambdaContext())
            out.append(time.perf_counter() - started)
            assert response["statusCode"] == 200
        return out

    # One event loop for both: Mangum runs the app on the thread's current loop.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        lambda_samples()  # warm-up (cold start excluded: this figure is per request)
        loop.run_until_complete(asgi_samples())
        per_round, lam_p50, asgi_p50 = [], [], []
        for _ in range(3):
            lam = statistics.median(lambda_samples())
            base = statistics.median(loop.run_until_complete(asgi_samples()))
            per_round.append(lam / base)
            lam_p50.append(round(lam * 1000, 3))
            asgi_p50.append(round(base * 1000, 3))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return {"lambda_request": ratios(per_round, detail={"lambda_p50_ms": lam_p50, "asgi_p50_ms": asgi_p50})}
