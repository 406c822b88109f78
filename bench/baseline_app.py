"""The baseline: what a hand-rolled FastAPI app would do for the same two routes.

Same database and table, same driver (psycopg2, a plain connection pool), same durability (one
committed INSERT), one ``generate_presigned_post`` on a cached client, and the same response
shape and size as the service. No framework of ours: no settings, auth, middleware or metrics.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import boto3
import psycopg2.extras
import psycopg2.pool
from botocore.config import Config
from fastapi import FastAPI, HTTPException, Response
from pydantic import BaseModel

psycopg2.extras.register_uuid()
app = FastAPI()


class Create(BaseModel):
    filename: str
    content_type: str
    size_bytes: int
    title: str | None = None
    metadata: dict = {}
    checksum_sha256: str | None = None


_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_lock = threading.Lock()


def pool() -> psycopg2.pool.ThreadedConnectionPool:
    # Keeps 10 connections open, like the service's pool; allows one per threadpool thread (40)
    # so that it never fails a request for want of a connection.
    # Created once under a lock: the first requests arrive on several threadpool threads at once.
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = psycopg2.pool.ThreadedConnectionPool(10, 40, os.environ["BASELINE_DSN"])
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
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


@contextmanager
def connection():
    conn = pool().getconn()
    try:
        yield conn
    finally:
        pool().putconn(conn)


COLUMNS = (
    "id, owner, title, filename, content_type, size_bytes, checksum_sha256, s3_key, s3_version_id, upload_method, "
    "upload_id, part_size, part_count, status, metadata, failure_reason, created_at, updated_at, completed_at, "
    "deleted_at"
)


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
        "created_at": created.isoformat(),
        "updated_at": updated.isoformat(),
        "completed_at": completed.isoformat() if completed else None,
        "deleted_at": deleted.isoformat() if deleted else None,
    }


@app.post("/v1/recordings", status_code=201)
def create(body: Create) -> Response:
    rid = uuid.uuid4()
    key = f"bench/{rid}"
    now = datetime.now(UTC)
    row = (
        rid,
        "bench",
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
        conn.commit()
    post = s3().generate_presigned_post(
        os.environ["S3_BUCKET"],
        key,
        Fields={"Content-Type": body.content_type},
        Conditions=[{"Content-Type": body.content_type}, ["content-length-range", body.size_bytes, body.size_bytes]],
        ExpiresIn=900,
    )
    payload = {
        "recording": _row_json((*row[:14], body.metadata, *row[15:])),
        "upload": {
            "method": "POST",
            "url": post["url"],
            "fields": post["fields"],
            "expires_at": (now + timedelta(seconds=900)).isoformat(),
        },
    }
    return Response(json.dumps(payload), status_code=201, media_type="application/json")


@app.get("/v1/recordings/{recording_id}")
def get(recording_id: uuid.UUID) -> Response:
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS} FROM recordings WHERE id = %s", (recording_id,))  # noqa: S608
        row = cursor.fetchone()
        conn.commit()
    if row is None:
        raise HTTPException(404)
    return Response(json.dumps(_row_json(row)), media_type="application/json")
