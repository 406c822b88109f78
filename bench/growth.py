"""Table growth: the first list page and a get by id with 1,000,000 rows against 1,000."""

from __future__ import annotations

import statistics
import time

from bench.harness import INSERT_ROWS, Context, Measurement, create_app, migrate_database, ratios, scratch_database

BULK_ROWS = """
INSERT INTO recordings (id, owner, title, filename, content_type, size_bytes, s3_key, s3_version_id, upload_method,
                        status, metadata, created_at, updated_at, completed_at)
SELECT md5('bulk' || g::text)::uuid, 'tenant-' || (g % 999), 'take', 'take.wav', 'audio/wav', 1048576,
       'tenant-' || (g % 999) || '/' || md5('bulk' || g::text)::uuid, 'v1', 'POST', 'available', '{}'::jsonb,
       now() - (g || ' seconds')::interval, now(), now()
FROM generate_series(1, 999000) AS g
"""


def measure(ctx: Context, rounds: int = 7, samples: int = 60) -> dict[str, Measurement]:
    """Two databases with the same tenant's 1,000 rows, one with 999,000 more of other tenants;
    two app instances queried alternately, so machine noise falls on both alike."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from sqlalchemy import create_engine, text

    settings, token = ctx.settings, ctx.token
    rid = ctx.ids[len(ctx.ids) // 2]
    out: dict[str, Measurement] = {}
    headers = {"Authorization": f"Bearer {token}"}
    paths = {"list": "/v1/recordings?limit=50", "get": f"/v1/recordings/{rid}"}

    with scratch_database() as large_url:
        large_settings = settings.model_copy(update={"database_url": SecretStr(large_url)})
        migrate_database(large_settings)
        small_engine, large_engine = create_engine(ctx.database_url), create_engine(large_url)
        with small_engine.connect() as small, large_engine.begin() as large:
            key = small.execute(text("SELECT * FROM api_keys WHERE owner = :o"), {"o": ctx.tenant}).mappings().one()
            large.execute(
                text(
                    "INSERT INTO api_keys (id, owner, name, prefix, secret_hash, created_at) "
                    "VALUES (:id, :owner, :name, :prefix, :secret_hash, :created_at)"
                ),
                dict(key),
            )
            large.execute(text(INSERT_ROWS), {"owner": ctx.tenant, "n": len(ctx.ids)})
            # Longer than the statement timeout the migration sets on the database.
            large.execute(text("SET LOCAL statement_timeout = 0"))
            large.execute(text(BULK_ROWS))
            total = large.execute(text("SELECT count(*) FROM recordings")).scalar()
        for engine in (small_engine, large_engine):
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("SET statement_timeout = 0"))
                connection.execute(text("VACUUM ANALYZE recordings"))
                connection.execute(text("CHECKPOINT"))
            engine.dispose()

        def median_time(client: TestClient, path: str) -> float:
            runs = []
            for _ in range(samples):
                started = time.perf_counter()
                response = client.get(path, headers=headers)
                runs.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
            return statistics.median(runs)

        with TestClient(create_app(settings)) as small_client, TestClient(create_app(large_settings)) as large_client:
            for client in (small_client, large_client):
                for path in paths.values():
                    median_time(client, path)  # warm-up: caches, pools, buffers
            for name, path in paths.items():
                per_round, small_ms, large_ms = [], [], []
                for _ in range(rounds):
                    small_t, large_t = median_time(small_client, path), median_time(large_client, path)
                    per_round.append(large_t / small_t)
                    small_ms.append(round(small_t * 1000, 3))
                    large_ms.append(round(large_t * 1000, 3))
                out[f"{name}_growth"] = ratios(
                    per_round,
                    detail={
                        "rows_small": len(ctx.ids),
                        "rows_large": total,
                        "small_ms": small_ms,
                        "large_ms": large_ms,
                    },
                )

    return out
