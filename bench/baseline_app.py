"""The baseline: what a hand-rolled FastAPI app would do for the routes the benchmarks load.

Same database and table, same driver (psycopg2, a plain connection pool), same durability (one
committed transaction per change), an S3 client configured as the service's (one, cached), and
the same response (its headers, shape and size) as the service. No framework of ours: no
settings, middleware or metrics. The caller is authenticated as the service does for a key it has seen: one FastAPI
dependency that looks the bearer token's SHA-256 up in memory (BASELINE_TOKEN, the tenant
BASELINE_TENANT); reads are scoped to that tenant.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import boto3
import psycopg2.extras
import psycopg2.pool
from botocore.config import Config
from botocore.exceptions import ClientError
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel

psycopg2.extras.register_uuid()
app = FastAPI()
TENANT = os.environ.get("BASELINE_TENANT", "bench")
_KNOWN = {hashlib.sha256(os.environ.get("BASELINE_TOKEN", "").encode()).hexdigest(): TENANT}


async def caller(request: Request) -> str:
    """The caller's tenant, from the bearer token (401 for any other)."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    tenant = _KNOWN.get(hashlib.sha256(token.encode()).hexdigest()) if scheme.lower() == "bearer" else None
    if tenant is None:
        raise HTTPException(401)
    return tenant


Caller = Annotated[str, Depends(caller)]
# The headers the service sends on every response (security headers): the same response, byte
# for byte in its head, whatever middleware the service uses to add them.
HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


def _json(payload: object, status_code: int = 200) -> Response:
    """JSON as compact as the service's (pydantic's) encoding, with the service's headers."""
    body = json.dumps(payload, separators=(",", ":"))
    return Response(body, status_code=status_code, media_type="application/json", headers=HEADERS)


EXPIRES = int(os.environ.get("BASELINE_PRESIGN_EXPIRES", "900"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Create(BaseModel):
    filename: str
    content_type: str
    size_bytes: int
    title: str | None = None
    metadata: dict = {}
    checksum_sha256: str | None = None


_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()
_KEPT_CONNECTIONS = int(os.environ.get("DB_POOL_SIZE") or os.environ["BASELINE_DEFAULT_POOL_SIZE"])


def pool() -> psycopg2.pool.ThreadedConnectionPool:
    # Keeps as many connections open as the service's pool (DB_POOL_SIZE, its default when
    # unset); allows one per threadpool thread (40) so that it never fails a request for want of
    # a connection.
    # Created once under a lock: the first requests arrive on several threadpool threads at once.
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = psycopg2.pool.ThreadedConnectionPool(_KEPT_CONNECTIONS, 40, os.environ["BASELINE_DSN"])
    return _pool


_s3 = None


def s3():
    # boto3 client creation is not thread-safe either: once, under the same lock.
    global _s3
    if _s3 is None:
        with _pool_lock:
            if _s3 is None:
                _s3 = _new_s3()
    return _s3


def _new_s3():
    # The service's client configuration (service/core/storage.py), values from the harness.
    config = Config(
        signature_version="s3v4",
        region_name="us-east-1",
        connect_timeout=float(os.environ.get("BASELINE_S3_CONNECT_TIMEOUT", "2")),
        read_timeout=float(os.environ.get("BASELINE_S3_READ_TIMEOUT", "10")),
        retries={"max_attempts": int(os.environ.get("BASELINE_S3_MAX_ATTEMPTS", "3")), "mode": "standard"},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=os.environ["S3_ENDPOINT_URL"], region_name="us-east-1", config=config
    )


@contextmanager
def connection():
    # Autocommit, as the service runs its single statements: one round trip each, no BEGIN and
    # COMMIT around them. A change of several statements opens its transaction itself.
    conn = pool().getconn()
    if not conn.autocommit:
        conn.autocommit = True
    try:
        yield conn
    finally:
        pool().putconn(conn)


COLUMNS = (
    "id, owner, title, filename, content_type, size_bytes, checksum_sha256, s3_key, s3_version_id, upload_method, "
    "upload_id, part_size, part_count, status, metadata, failure_reason, created_at, updated_at, completed_at, "
    "deleted_at"
)


def _utc(moment: datetime) -> str:
    """ISO 8601 with ``Z`` for UTC, as the service's timestamps (pydantic) read."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row_json(row: tuple) -> dict:
    (
        rid,
        _owner,
        title,
        filename,
        ctype,
        size,
        checksum,
        key,
        _version,
        method,
        _upload,
        part_size,
        part_count,
        status,
        metadata,
        failure,
        created,
        updated,
        completed,
        deleted,
    ) = row
    return {
        "id": str(rid),
        "title": title,
        "filename": filename,
        "content_type": ctype,
        "size_bytes": size,
        "checksum_sha256": checksum,
        "status": status,
        "key": key,
        "upload_method": method,
        "part_size": part_size,
        "part_count": part_count,
        "metadata": metadata,
        "failure_reason": failure,
        "created_at": _utc(created),
        "updated_at": _utc(updated),
        "completed_at": _utc(completed) if completed else None,
        "deleted_at": _utc(deleted) if deleted else None,
    }


@app.post("/v1/recordings", status_code=201)
def create(body: Create, tenant: Caller) -> Response:
    rid = uuid.uuid4()
    key = f"{tenant}/{rid}"
    now = datetime.now(UTC)
    row = (
        rid,
        tenant,
        body.title,
        body.filename,
        body.content_type,
        body.size_bytes,
        body.checksum_sha256,
        key,
        None,
        "POST",
        None,
        None,
        None,
        "pending",
        json.dumps(body.metadata),
        None,
        now,
        now,
        None,
        None,
    )
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"INSERT INTO recordings ({COLUMNS}) VALUES ({', '.join(['%s'] * 20)})", row)  # noqa: S608
    post = s3().generate_presigned_post(
        os.environ["S3_BUCKET"],
        key,
        Fields={"Content-Type": body.content_type},
        Conditions=[{"Content-Type": body.content_type}, ["content-length-range", body.size_bytes, body.size_bytes]],
        ExpiresIn=EXPIRES,
    )
    payload = {
        "recording": _row_json((*row[:14], body.metadata, *row[15:])),
        "upload": {
            "method": "POST",
            "url": post["url"],
            "fields": post["fields"],
            "expires_at": _utc(now + timedelta(seconds=EXPIRES)),
        },
    }
    return _json(payload, status_code=201)


@app.get("/v1/recordings")
def list_page(tenant: Caller, limit: int = Query(50, ge=1, le=200)) -> Response:
    """The tenant's newest recordings, keyset-ordered as the service's list."""
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {COLUMNS} FROM recordings WHERE owner = %s AND status <> 'deleted' "  # noqa: S608
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (tenant, limit + 1),
        )
        rows = cursor.fetchall()
    cursor_out = None
    if len(rows) > limit:
        last = rows[limit - 1]
        cursor_out = f"{(last[16] - _EPOCH) // timedelta(microseconds=1)}.{last[0].hex}"
    page = {"items": [_row_json(row) for row in rows[:limit]], "next_cursor": cursor_out}
    return _json(page)


@app.get("/v1/recordings/{recording_id}")
def get(recording_id: uuid.UUID, tenant: Caller) -> Response:
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM recordings WHERE id = %s AND owner = %s", (recording_id, tenant))  # noqa: S608
        row = cursor.fetchone()
    if row is None:
        raise HTTPException(404)
    return _json(_row_json(row))


MARK_AVAILABLE = (
    "UPDATE recordings SET status = 'available', s3_version_id = %s, completed_at = %s, size_bytes = %s, "  # noqa: S608
    f"updated_at = %s, upload_id = NULL WHERE id = %s AND status = 'pending' RETURNING {COLUMNS}"
)
MARK_FAILED = (
    "UPDATE recordings SET status = 'failed', failure_reason = 'verification failed', updated_at = %s, "  # noqa: S608
    f"upload_id = NULL WHERE id = %s AND status = 'pending' RETURNING {COLUMNS}"
)


@app.post("/v1/recordings/{recording_id}/complete")
def complete(recording_id: uuid.UUID, tenant: Caller) -> Response:
    """Verify a single upload: the row locked, HeadObject, then the conditional UPDATE."""
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute(
                f"SELECT {COLUMNS} FROM recordings WHERE id = %s AND owner = %s FOR UPDATE",  # noqa: S608
                (recording_id, tenant),
            )
            row = cursor.fetchone()
            if row is None:
                raise HTTPException(404)
            if row[13] == "pending":
                try:
                    head = s3().head_object(Bucket=os.environ["S3_BUCKET"], Key=row[7], ChecksumMode="ENABLED")
                except ClientError:
                    head = None
                ok = head is not None and head["ContentLength"] == row[5] and head.get("ContentType") == row[4]
                now = datetime.now(UTC)
                if ok:
                    cursor.execute(
                        MARK_AVAILABLE, (head.get("VersionId"), now, head["ContentLength"], now, recording_id)
                    )
                else:
                    cursor.execute(MARK_FAILED, (now, recording_id))
                row = cursor.fetchone() or row
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    if row[13] != "available":
        raise HTTPException(409)
    return _json(_row_json(row))


# Companion-style S3 signing (Uppy) ----------------------------------------------------------------


@app.get("/v1/s3/params")
def uppy_params(tenant: Caller, filename: str, type: str = "") -> Response:
    """A pending recording of undeclared size and a presigned POST for 1 byte up to the limit."""
    rid = uuid.uuid4()
    key = f"{tenant}/{rid}"
    now = datetime.now(UTC)
    content_type = type or "application/octet-stream"
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO recordings (id, owner, filename, content_type, s3_key, upload_method, status, metadata, "
            "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, 'POST', 'pending', '{}', %s, %s)",
            (rid, tenant, filename, content_type, key, now, now),
        )
    post = s3().generate_presigned_post(
        os.environ["S3_BUCKET"],
        key,
        Fields={"Content-Type": content_type},
        Conditions=[
            {"Content-Type": content_type},
            ["content-length-range", 1, int(os.environ.get("BASELINE_MAX_UPLOAD_BYTES", str(5 * 1024**3)))],
        ],
        ExpiresIn=EXPIRES,
    )
    url = post["url"] if post["url"].endswith("/") else post["url"] + "/"
    payload = {"method": "POST", "url": url, "fields": post["fields"], "expires": EXPIRES}
    return _json(payload)


@app.get("/v1/s3/multipart/{upload_id}/{part_number}")
def uppy_sign_part(upload_id: str, part_number: int, key: str, tenant: Caller) -> Response:
    """The tenant's open upload behind ``key`` (its row), then one presigned UploadPart URL."""
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {COLUMNS} FROM recordings WHERE s3_key = %s AND owner = %s LIMIT 1",  # noqa: S608
            (key, tenant),
        )
        row = cursor.fetchone()
    if row is None or (row[10] is not None and row[10] != upload_id):
        raise HTTPException(404)
    url = s3().generate_presigned_url(
        "upload_part",
        Params={"Bucket": os.environ["S3_BUCKET"], "Key": key, "UploadId": upload_id, "PartNumber": part_number},
        ExpiresIn=EXPIRES,
    )
    return _json({"url": url, "expires": EXPIRES})
