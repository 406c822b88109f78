"""Benchmarks as ratios against a baseline measured in the same run. See bench/README.md.

Usage: python -m bench.run [--quick] [--only NAME ...]
Needs PostgreSQL (BENCH_DATABASE_URL, default the local server as postgres), wrk and PgBouncer.

Every figure is declared once below; its group function measures it together with the group's
other figures (one set of servers, one warm-up). Groups run in the order of their first figure.
"""

from __future__ import annotations

import sys

from bench import complete, growth, lambda_cold, memory, throughput, uppy, wire
from bench.harness import LAMBDA_MODULE, Spec, run

FIGURES: tuple[Spec, ...] = (
    # First: the load runs below add pending rows to the tenant, which the large copy would lack.
    Spec("list_growth", growth.measure, "list first page, 1,000,000 rows", "same with 1,000 rows", "<=", 1.2),
    Spec("get_growth", growth.measure, "get by id, 1,000,000 rows", "same with 1,000 rows", "<=", 1.2),
    Spec(
        "create_throughput",
        throughput.direct,
        "POST /v1/recordings throughput",
        "minimal route: same INSERT + presign",
        ">=",
        0.95,
    ),
    Spec(
        "get_throughput",
        throughput.direct,
        "GET /v1/recordings/{id} throughput",
        "minimal route: same SELECT",
        ">=",
        0.95,
    ),
    Spec("post_p99", throughput.direct, "POST p99 latency under load", "baseline p99", "<=", 1.25),
    Spec("get_p99", throughput.direct, "GET p99 latency under load", "baseline p99", "<=", 1.25),
    Spec(
        "pooled_create_throughput",
        throughput.pooled,
        "POST throughput, both through PgBouncer (transaction mode)",
        "minimal route through the same PgBouncer",
        ">=",
        0.95,
    ),
    Spec(
        "pooled_get_throughput",
        throughput.pooled,
        "GET by id throughput, both through PgBouncer",
        "minimal route through the same PgBouncer",
        ">=",
        0.95,
    ),
    Spec("pooled_post_p99", throughput.pooled, "POST p99 through PgBouncer", "baseline p99", "<=", 1.25),
    Spec("pooled_get_p99", throughput.pooled, "GET p99 through PgBouncer", "baseline p99", "<=", 1.25),
    Spec(
        "list_throughput",
        throughput.listing,
        "GET /v1/recordings?limit=50 throughput",
        "minimal route: same keyset SELECT, same page",
        ">=",
        0.90,
    ),
    Spec(
        "complete_throughput",
        complete.measure,
        "POST /v1/recordings/{id}/complete (single upload) throughput",
        "minimal route: row lock, same HeadObject, same UPDATE",
        ">=",
        0.90,
    ),
    Spec(
        "uppy_signing",
        uppy.signing,
        "Uppy: GET /v1/s3/params + 100 GET /v1/s3/multipart/{id}/{n}, time per file",
        "minimal routes: same INSERT / row lookup + raw boto3 presigning",
        "<=",
        1.25,
    ),
    Spec("presign_parts", uppy.presign_parts, "presign 100 part URLs in process", "100 raw presign calls", "<=", 1.25),
    Spec(
        "workers_scaling",
        throughput.workers,
        "GET throughput, serve --workers 2",
        "serve --workers 1",
        None,
    ),
    Spec(
        "import_time",
        lambda_cold.import_time,
        f"import {LAMBDA_MODULE} wall time",
        f"import {lambda_cold.BASELINE_LIBRARIES}",
        "<=",
        1.15,
    ),
    Spec(
        "cold_start",
        lambda_cold.cold_start,
        "Lambda cold start (source tree): import + first GET",
        "libraries + minimal app's first GET through Mangum",
        "<=",
        1.10,
    ),
    Spec(
        "cold_start_image",
        lambda_cold.image_cold_start,
        "Lambda cold start from the image's layout, read-only, with its bytecode",
        "the same for the minimal app from the same tree",
        "<=",
        1.10,
    ),
    Spec(
        "cold_start_no_bytecode",
        lambda_cold.image_cold_start,
        "Lambda cold start, image layout without bytecode",
        "the same with the image's bytecode",
        None,
    ),
    Spec(
        "lambda_request",
        lambda_cold.lambda_request,
        "Lambda handler p50 per request (v2 event)",
        "same request via httpx.ASGITransport",
        "<=",
        1.05,
    ),
    Spec(
        "wire_bytes",
        wire.measure,
        "API bytes for a 256 MiB multipart upload",
        "same for 8 MiB (and < 64 KiB in total)",
        "<=",
        1.1,
    ),
    Spec("rss_growth", memory.measure, "server RSS after 20,000 requests", "RSS after 1,000 requests", "<=", 1.10),
)


def main(argv: list[str] | None = None) -> int:
    return run(FIGURES, argv)


if __name__ == "__main__":
    sys.exit(main())
