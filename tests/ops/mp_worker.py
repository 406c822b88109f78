"""A stand-in for one uvicorn worker in multiprocess mode (run by test_metrics_multiprocess.py).

argv: <requests to serve> <sqlite file>. Serves the requests, keeps one pooled connection checked
out, prints "ready" and waits for a line on stdin (or is killed) before exiting.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool

from service.core.settings import Settings
from service.observability.metrics import common as metrics_common
from service.observability.metrics import http as http_metrics
from service.observability.metrics import pool as pool_metrics
from service.web.middleware import EdgeMiddleware


def main() -> None:
    assert metrics_common.MULTIPROCESS, "PROMETHEUS_MULTIPROC_DIR must be set before the import"
    count, database = int(sys.argv[1]), sys.argv[2]
    app = FastAPI()

    @app.get("/mp/{name}")
    def hello(name: str) -> dict:
        return {"hello": name}

    metrics = http_metrics.install_metrics(app, Settings(environment="test"))
    app.add_middleware(EdgeMiddleware, max_bytes=2**20, metrics=metrics)
    client = TestClient(app)
    for index in range(count):
        assert client.get(f"/mp/{index}").status_code == 200
    engine = create_engine(f"sqlite:///{database}", poolclass=QueuePool, pool_size=2, max_overflow=1)
    pool_metrics.track_pool(engine)
    connection = engine.connect()
    connection.execute(text("SELECT 1"))
    print(f"ready {os.getpid()}", flush=True)
    sys.stdin.readline()
    connection.close()


if __name__ == "__main__":
    main()
