"""Throughput and p99 under load: create, get and list, directly and through PgBouncer, and the
server's scaling from one worker to two."""

from __future__ import annotations

import json
import os

from bench.harness import (
    Context,
    Load,
    Measurement,
    MiB,
    app_server,
    auth_header,
    cpu_count,
    free_port,
    interleaved_loads,
    load_ratio,
    lua_list,
    paired_loads,
    pgbouncer,
    ratios,
    seed_tenant,
    server_pair,
    wrk,
)

CREATE_BODY = {
    "filename": "bench take.wav",
    "content_type": "audio/wav",
    "size_bytes": MiB,
    "title": "bench",
    "metadata": {"session": "bench", "take": 1},
}


def post_script(token: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = [[{json.dumps(CREATE_BODY)}]]\n"
        'wrk.headers["Content-Type"] = "application/json"\n' + auth_header(token) + 'wrk.path = "/v1/recordings"\n'
    )


def get_script(token: str, ids: list[str]) -> str:
    return (
        f"ids = {lua_list(ids)}\n"
        + auth_header(token)
        + "request = function()\n"
        + '  return wrk.format("GET", "/v1/recordings/" .. ids[math.random(#ids)])\n'
        + "end\n"
    )


def list_script(token: str) -> str:
    return auth_header(token) + 'wrk.path = "/v1/recordings?limit=50"\n'


def _create_and_get(ctx: Context, database_url: str, prefix: str) -> dict[str, Measurement]:
    scripts = {"create": post_script(ctx.token), "get": get_script(ctx.token, ctx.ids)}
    with server_pair(ctx.app_env(database_url), ctx.baseline_env(database_url)) as (app, base):
        _same_head(app, base, ctx.token, f"/v1/recordings/{ctx.ids[0]}")
        loads = paired_loads(app, base, scripts, ctx)
    return {
        f"{prefix}create_throughput": load_ratio(loads["app_create"], loads["base_create"], "rps"),
        f"{prefix}get_throughput": load_ratio(loads["app_get"], loads["base_get"], "rps"),
        f"{prefix}post_p99": load_ratio(loads["app_create"], loads["base_create"], "p99_ms"),
        f"{prefix}get_p99": load_ratio(loads["app_get"], loads["base_get"], "p99_ms"),
    }


def direct(ctx: Context) -> dict[str, Measurement]:
    """App and baseline each with their own connection pool straight to PostgreSQL."""
    return _create_and_get(ctx, ctx.database_url, "")


def pooled(ctx: Context) -> dict[str, Measurement]:
    """The production path: app and baseline both through one PgBouncer in transaction mode."""
    with pgbouncer(ctx.database_url) as through_pooler:
        return _create_and_get(ctx, through_pooler, "pooled_")


LIST_TENANT = "bench-list"


def listing(ctx: Context) -> dict[str, Measurement]:
    """First page of 50 of a tenant with 1,000 available recordings (no pending row to verify)."""
    token, _ = seed_tenant(ctx.settings, ctx.database_url, LIST_TENANT, 1000)
    script = list_script(token)
    with server_pair(ctx.app_env(), ctx.baseline_env(tenant=LIST_TENANT, token=token)) as (app, base):
        _same_page(app, base, token)
        loads = interleaved_loads(
            {"base": lambda: wrk(base, script, ctx.seconds), "app": lambda: wrk(app, script, ctx.seconds)},
            ctx.reps,
            warm_up=lambda: (wrk(app, script, 2), wrk(base, script, 2)),
        )
    return {"list_throughput": load_ratio(loads["app"], loads["base"], "rps")}


def _same_page(app: int, base: int, token: str) -> None:
    """The baseline must answer with the app's page: the same rows in order, cursor and fields."""
    import httpx

    pages = [
        httpx.get(f"http://127.0.0.1:{port}/v1/recordings?limit=50", headers={"Authorization": f"Bearer {token}"})
        for port in (app, base)
    ]
    for page in pages:
        page.raise_for_status()
    ours, theirs = (p.json() for p in pages)

    def shape(page: dict) -> tuple:
        return [item["id"] for item in page["items"]], page["next_cursor"], [sorted(i) for i in page["items"]]

    if shape(ours) != shape(theirs):
        raise RuntimeError(
            f"the baseline's list page differs from the app's:\n{ours['items'][0]}\n{theirs['items'][0]}"
        )


def _same_head(app: int, base: int, token: str, path: str) -> None:
    """The baseline must answer with the app's response head (the same header names) and a body
    of the same size within a few bytes."""
    import httpx

    auth = {"Authorization": f"Bearer {token}"}
    answers = [httpx.get(f"http://127.0.0.1:{port}{path}", headers=auth) for port in (app, base)]
    heads = [{k: v for k, v in a.headers.items() if k != "date"} for a in answers]
    sizes = [len(a.content) for a in answers]
    if heads[0].keys() != heads[1].keys() or abs(sizes[0] - sizes[1]) > 16:
        raise RuntimeError(f"the baseline's response differs from the app's: {heads}, {sizes} bytes")


def workers(ctx: Context) -> dict[str, Measurement]:
    """GET throughput of ``serve --workers 2`` over ``--workers 1``, no target. wrk is pinned to
    a CPU of its own when the machine has more CPUs than the server's workers."""
    cpus = sorted(os.sched_getaffinity(0))
    script = get_script(ctx.token, ctx.ids)
    if cpu_count() >= 3:
        wrk_cpus, server_cpus, note = str(cpus[0]), ",".join(map(str, cpus[1:])), "wrk pinned away from the server"
    else:
        wrk_cpus, server_cpus = None, None
        note = f"not pinned: only {len(cpus)} CPUs, wrk shares the server's CPUs"
    print(f"  workers: {note}", flush=True)
    env = ctx.app_env()
    loads: dict[int, list[Load]] = {1: [], 2: []}
    for _ in range(ctx.reps):
        for n in (1, 2):  # a fresh server per run: one at a time on the machine
            port = free_port()
            with app_server(env, port, workers=n, cpus=server_cpus):
                wrk(port, script, 2, cpus=wrk_cpus)  # warm-up (every worker: 16 connections)
                loads[n].append(wrk(port, script, ctx.seconds, cpus=wrk_cpus))
    if any(x.errors for n in loads for x in loads[n]):
        raise RuntimeError("failed requests in the workers run")
    per_rep = [two.rps / one.rps for one, two in zip(loads[1], loads[2], strict=True)]
    return {
        "workers_scaling": ratios(
            per_rep,
            detail={"rps_1_worker": [round(x.rps) for x in loads[1]], "rps_2_workers": [round(x.rps) for x in loads[2]]}
            | {"cpus": len(cpus), "pinning": note},
        )
    }
