"""Completing single uploads under load: ``POST /v1/recordings/{id}/complete`` (the row, HeadObject,
the conditional UPDATE) against the baseline's route doing the same on the same S3 server.

A second complete of an available recording answers 200 without HeadObject or UPDATE, so every
request must complete a recording once: each run gets its own pool of pending recordings whose
objects are in the bucket, sized from a warm-up run, and the run fails when its pool ran out."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import create_engine, text

from bench.harness import (
    Context,
    Load,
    Measurement,
    auth_header,
    interleaved_loads,
    load_ratio,
    lua_list,
    new_api_key,
    s3_client,
    server_pair,
    wrk,
)

TENANT = "bench-complete"
SIZE = 16
THREADS = 2

INSERT_PENDING = """
INSERT INTO recordings (id, owner, filename, content_type, size_bytes, s3_key, upload_method, status, metadata,
                        created_at, updated_at)
SELECT id, :owner, 'take.wav', 'audio/wav', :size, :owner || '/' || id, 'POST', 'pending', '{}'::jsonb, now(), now()
FROM unnest(CAST(:ids AS uuid[])) AS id
"""


def complete_script(token: str, ids: list[str]) -> str:
    # Each wrk thread takes every THREADS-th id, so no recording is completed twice.
    return (
        f"ids = {lua_list(ids)}\n"
        + auth_header(token)
        + "local started = 0\n"
        + "function setup(thread) thread:set('tid', started); started = started + 1 end\n"
        + "sent = 0\n"
        + "request = function()\n"
        + f"  local i = (sent * {THREADS} + tid) % #ids + 1\n"
        + "  sent = sent + 1\n"
        + '  return wrk.format("POST", "/v1/recordings/" .. ids[i] .. "/complete")\n'
        + "end\n"
    )


class Pool:
    """Pending recordings of TENANT with their objects in the bucket."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.engine = create_engine(ctx.database_url)
        self.s3 = s3_client(ctx.settings)

    def make(self, count: int) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        with self.engine.begin() as connection:
            connection.execute(text(INSERT_PENDING), {"owner": TENANT, "size": SIZE, "ids": ids})
        body = b"x" * SIZE

        def put(rid: str) -> None:
            self.s3.put_object(Bucket=self.ctx.bucket, Key=f"{TENANT}/{rid}", Body=body, ContentType="audio/wav")

        with ThreadPoolExecutor(8) as executor:
            list(executor.map(put, ids))
        return ids

    def still_pending(self, ids: list[str]) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                text("SELECT count(*) FROM recordings WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending'"),
                {"ids": ids},
            ).scalar_one()


def measure(ctx: Context) -> dict[str, Measurement]:
    token = new_api_key(ctx.settings, TENANT)
    pool = Pool(ctx)
    with server_pair(ctx.app_env(), ctx.baseline_env(tenant=TENANT, token=token)) as (app, base):
        warm = {port: wrk(port, complete_script(token, pool.make(400)), 2) for port in (app, base)}
        if any(load.errors for load in warm.values()):
            raise RuntimeError("failed completes in the warm-up")
        # Room for twice the warm-up's best rate over a whole run.
        size = int(max(load.rps for load in warm.values()) * ctx.seconds * 2) + 200
        left: dict[str, list[int]] = {"app": [], "base": []}

        def run(name: str, port: int) -> Load:
            ids = pool.make(size)
            load = wrk(port, complete_script(token, ids), ctx.seconds, threads=THREADS)
            remaining = pool.still_pending(ids)
            if remaining == 0:
                raise RuntimeError(f"the pool of {size} pending recordings ran out during a {name} run")
            left[name].append(remaining)
            return load

        loads = interleaved_loads({"base": lambda: run("base", base), "app": lambda: run("app", app)}, ctx.reps)
    result = load_ratio(loads["app"], loads["base"], "rps")
    result.detail |= {"pool_per_run": size, "left_pending": left}
    return {"complete_throughput": result}
