"""Presigning: the service's part-URL code path in process, and Uppy's signing routes under load."""

from __future__ import annotations

from urllib.parse import quote

from bench.harness import (
    Context,
    Measurement,
    auth_header,
    interleaved_timings,
    open_multipart,
    paired_loads,
    ratios,
    s3_client,
    server_pair,
    service_presign_parts,
)

PARTS = 100


def presign_parts(ctx: Context) -> dict[str, Measurement]:
    """One batch of 100 part URLs through the service's code path vs 100 raw presign calls."""
    settings = ctx.settings
    key = "bench/presign"
    upload_id = open_multipart(settings, key=key)
    client = s3_client(settings)
    numbers = list(range(1, PARTS + 1))

    def ours() -> None:
        service_presign_parts(settings, key=key, upload_id=upload_id, part_numbers=numbers)

    def raw() -> None:
        for n in numbers:
            client.generate_presigned_url(
                "upload_part",
                Params={"Bucket": settings.s3_bucket, "Key": key, "UploadId": upload_id, "PartNumber": n},
                ExpiresIn=settings.presign_expires_seconds,
            )

    return {"presign_parts": ratios(interleaved_timings(ours, raw, 30))}


def params_script(token: str) -> str:
    return auth_header(token) + 'wrk.path = "/v1/s3/params?filename=take.wav&type=audio%2Fwav"\n'


def parts_script(token: str, uploads: list[tuple[str, str]]) -> str:
    listed = ",".join(f'{{"{quote(upload_id, safe="")}", "{quote(key, safe="")}"}}' for upload_id, key in uploads)
    return (
        f"uploads = {{{listed}}}\n"
        + auth_header(token)
        + "sent = 0\n"
        + "request = function()\n"
        + "  sent = sent + 1\n"
        + "  local u = uploads[sent % #uploads + 1]\n"
        + f"  local part = sent % {PARTS} + 1\n"
        + '  return wrk.format("GET", "/v1/s3/multipart/" .. u[1] .. "/" .. part .. "?key=" .. u[2])\n'
        + "end\n"
    )


def signing(ctx: Context) -> dict[str, Measurement]:
    """What Uppy asks for one file: ``GET /v1/s3/params`` (a recording and its presigned POST),
    and for a multipart file ``GET /v1/s3/multipart/{uploadId}/{n}`` per part. The figure is the
    time per request of one params call plus 100 part calls, from the throughput of each under
    load, over the same from the baseline's routes (the same INSERT, row lookup and presigning)."""
    import httpx

    headers = {"Authorization": f"Bearer {ctx.token}"}
    with server_pair(ctx.app_env(), ctx.baseline_env()) as (app, base):
        uploads = []
        for n in range(10):  # open multipart uploads, created through the app as Uppy does
            created = httpx.post(
                f"http://127.0.0.1:{app}/v1/s3/multipart",
                json={"filename": f"take {n}.wav", "type": "audio/wav"},
                headers=headers,
            )
            created.raise_for_status()
            uploads.append((created.json()["uploadId"], created.json()["key"]))
        scripts = {"params": params_script(ctx.token), "parts": parts_script(ctx.token, uploads)}

        loads = paired_loads(app, base, scripts, ctx)

    def per_file_ms(side: str, rep: int) -> float:
        return 1000 / loads[f"{side}_params"][rep].rps + PARTS * 1000 / loads[f"{side}_parts"][rep].rps

    app_ms = [per_file_ms("app", i) for i in range(ctx.reps)]
    base_ms = [per_file_ms("base", i) for i in range(ctx.reps)]
    return {
        "uppy_signing": ratios(
            [a / b for a, b in zip(app_ms, base_ms, strict=True)],
            detail={
                "app_ms_per_file": [round(x, 1) for x in app_ms],
                "baseline_ms_per_file": [round(x, 1) for x in base_ms],
                "app_params_rps": [round(x.rps) for x in loads["app_params"]],
                "baseline_params_rps": [round(x.rps) for x in loads["base_params"]],
                "app_parts_rps": [round(x.rps) for x in loads["app_parts"]],
                "baseline_parts_rps": [round(x.rps) for x in loads["base_parts"]],
            },
        )
    }
