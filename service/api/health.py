"""Liveness (/health: the process answers) and readiness (/health/ready: database and bucket)."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.core.db import get_engine
from service.core.problems import RETRY_AFTER_SECONDS
from service.core.settings import Settings
from service.core.storage import Storage
from service.web.errors import problem_response

CHECK_TIMEOUT_SECONDS = 2.0
router = APIRouter(tags=["health"])
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")


def _check_database(settings: Settings) -> None:
    with get_engine(settings).connect() as connection:
        connection.execute(text("SELECT 1"))


def _check_bucket(settings: Settings) -> None:
    Storage.from_settings(settings).check_bucket()


CHECKS = {"database": _check_database, "bucket": _check_bucket}


def run_checks(settings: Settings) -> dict[str, str]:
    """Run every check in parallel; each gets at most CHECK_TIMEOUT_SECONDS."""
    futures = {name: _pool.submit(check, settings) for name, check in CHECKS.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=CHECK_TIMEOUT_SECONDS)
            results[name] = "ok"
        except concurrent.futures.TimeoutError:
            results[name] = "timeout"
        except Exception as exc:  # the reason is reported by type only: no connection strings
            results[name] = f"error: {type(exc).__name__}"
    return results


@router.get("/health")
def health() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    responses={503: {"description": "A dependency is failing", "content": {"application/problem+json": {}}}},
)
def ready(request: Request) -> Any:
    results = run_checks(request.app.state.settings)
    failing = [name for name, result in results.items() if result != "ok"]
    if failing:
        return problem_response(
            503,
            "not-ready",
            f"Not ready: {', '.join(f'{n} ({results[n]})' for n in failing)}.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
            checks=results,
        )
    return JSONResponse({"status": "ok", "checks": results})
