"""Prometheus metrics for the server path, one module per job:

- ``http``: request counts, latency and in-flight requests (ASGI middleware), and ``GET /metrics``.
- ``domain``: upload lifecycle, S3 errors, stale connections and routed reads; the signal bus's
  Prometheus listener.
- ``pool``: the SQLAlchemy pool's usage, read at scrape time.
- ``exposition``: rendering, with several uvicorn workers aggregated (``PROMETHEUS_MULTIPROC_DIR``).
- ``common``: the multiprocess switch and the cached label children the others share.

The metric names are a contract with ``ops/prometheus/alerts.yml`` and the Grafana dashboard;
``exposition.EXPORTED_METRICS`` lists them and the ops tests cross-check them.
"""
