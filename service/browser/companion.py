"""Companion-compatible S3 signing (the routes ``@uppy/aws-s3`` calls with ``companionEndpoint``).

Each Uppy upload is a recording: the server picks the key (``<tenant>/<recording id>``) and
completes with the same verification as ``POST .../complete``. The client decides single or
multipart within S3's rules, and its own part size. Uppy sends no file size: then a single
upload's policy allows 1 byte to the largest upload, a multipart upload is checked at
completion, and the recording's size is the verified object's. A size declared in the file's
meta (``metadata[size]``) pins it exactly.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from service.auth.principal import Principal
from service.core.problems import Conflict, InvalidRequest, NotFound
from service.core.settings import Settings
from service.core.storage import Part, Storage
from service.recordings import service as recordings
from service.recordings import store, uploads
from service.recordings.models import Status
from service.recordings.schemas import BrowserUpload
from service.recordings.service import OpenedMultipart, OpenedPost
from service.recordings.store import RecordingRow

# Fields Uppy keeps in every file's meta for itself; they are not the user's metadata.
UPPY_META_FIELDS = frozenset({"size", "name", "type", "relativePath"})

# What a file the browser could not name a type for is stored as (Uppy then sends an empty type).
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def declared_size(metadata: dict[str, Any]) -> int | None:
    raw = metadata.get("size")
    if raw is None or raw == "":
        return None
    try:
        size = int(str(raw))
    except ValueError:
        raise InvalidRequest("metadata.size must be the file size in bytes.", slug="invalid-size") from None
    if size < 1:
        raise InvalidRequest("metadata.size must be a positive number of bytes.", slug="invalid-size")
    return size


def _upload_input(*, filename: str, content_type: str, metadata: dict[str, Any]) -> BrowserUpload:
    kept = {k: v for k, v in metadata.items() if k not in UPPY_META_FIELDS and v is not None}
    try:
        return BrowserUpload(
            filename=filename,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            size_bytes=declared_size(metadata),
            metadata=kept,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        raise InvalidRequest(f"{where}: {first.get('msg', 'invalid')}", slug="validation-error") from None


def _with_slash(url: str) -> str:
    # Uppy appends the key to the bucket's URL to name the object.
    return url if url.endswith("/") else f"{url}/"


def bucket_url(storage: Storage) -> str:
    """The bucket's URL (the URL a presigned POST goes to), with a trailing slash."""
    return _with_slash(storage.client.generate_presigned_post(Bucket=storage.bucket, Key="k", ExpiresIn=60)["url"])


def _open(
    *,
    multipart: bool,
    connection: Connection,
    storage: Storage,
    settings: Settings,
    principal: Principal,
    filename: str,
    content_type: str,
    metadata: dict[str, Any],
) -> tuple[RecordingRow, OpenedPost | OpenedMultipart]:
    data = _upload_input(filename=filename, content_type=content_type, metadata=metadata)
    return recordings.open_upload(
        connection=connection, storage=storage, settings=settings, principal=principal, data=data, multipart=multipart
    )


def create_single(**kwargs: Any) -> dict[str, Any]:
    _, opened = _open(multipart=False, **kwargs)
    if not isinstance(opened, OpenedPost):
        raise TypeError("a single upload is opened with a presigned POST")
    return {
        "method": "POST",
        "url": _with_slash(opened.url),  # the form's own URL: no second presign
        "fields": opened.fields,
        "expires": kwargs["settings"].presign_expires_seconds,
    }


def create_multipart(**kwargs: Any) -> dict[str, Any]:
    recording, opened = _open(multipart=True, **kwargs)
    if not isinstance(opened, OpenedMultipart):
        raise TypeError("a multipart upload is opened with an upload id")
    return {"key": recording.s3_key, "uploadId": opened.upload_id, "bucket": kwargs["storage"].bucket}


def owned_upload(db: Connection, *, principal: Principal, upload_id: str, key: str) -> RecordingRow:
    """The caller's recording behind ``key`` and ``upload_id``; anything else is a 404."""
    recording = store.at_key(db, key=key, tenant=principal.tenant)
    # A finished upload forgets its id (complete is idempotent); an open one must match it.
    if recording is None or (recording.upload_id is not None and recording.upload_id != upload_id):
        raise NotFound("Upload not found.")
    return recording


def list_parts(*, storage: Storage, recording: RecordingRow) -> list[dict[str, Any]]:
    return [
        {"PartNumber": p.number, "ETag": p.etag, "Size": p.size}
        for p in uploads.uploaded_parts(storage=storage, recording=recording)
    ]


def sign_parts(*, storage: Storage, recording: RecordingRow, part_numbers: list[int]) -> dict[str, str]:
    return uploads.presign_parts(storage=storage, recording=recording, part_numbers=part_numbers)


def complete(
    *, session: Connection, storage: Storage, settings: Settings, recording: RecordingRow, parts: list[Part]
) -> dict[str, Any]:
    recording = uploads.complete_upload(
        session=session, storage=storage, recording=recording, parts=parts, max_bytes=settings.max_upload_bytes
    )
    return {"location": bucket_url(storage) + recording.s3_key, "key": recording.s3_key, "bucket": storage.bucket}


def abort(*, session: Connection, storage: Storage, recording: RecordingRow) -> None:
    if recording.status != Status.PENDING:
        raise Conflict(f"The upload is no longer open (recording is {recording.status}); delete the recording instead.")
    recordings.delete_recording(session=session, storage=storage, recording=recording)
