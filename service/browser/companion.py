"""Companion-compatible S3 signing (the routes ``@uppy/aws-s3`` calls with ``companionEndpoint``).

Each Uppy upload is a recording: the server picks the key (``<tenant>/<recording id>``), pins the
declared size and type, and completes with the same verification as ``POST .../complete``.
Uppy does not send a file's size on its own; the client puts it into the file's meta
(``uppy.setFileMeta(id, {size})``), which arrives as ``metadata[size]``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from service.auth.principal import Principal
from service.config import Settings
from service.errors import Conflict, InvalidRequest, NotFound
from service.recordings import service as recordings
from service.recordings.models import Recording, Status
from service.recordings.schemas import RecordingCreate
from service.storage import Storage
from service.uploads import service as uploads

SIZE_HINT = (
    "Uppy does not send the file size by itself: add it to the file's meta, e.g. "
    "uppy.on('file-added', (f) => uppy.setFileMeta(f.id, { size: f.size }))."
)


def declared_size(metadata: dict[str, Any]) -> int:
    raw = metadata.get("size")
    try:
        size = int(str(raw))
    except (TypeError, ValueError):
        raise InvalidRequest(
            f"metadata.size (the file size in bytes) is required. {SIZE_HINT}", slug="size-required"
        ) from None
    if size < 1:
        raise InvalidRequest("metadata.size must be a positive number of bytes.", slug="size-required")
    return size


def _recording_input(*, filename: str, content_type: str, metadata: dict[str, Any]) -> RecordingCreate:
    size = declared_size(metadata)
    # The size is a column of its own; Uppy's own bookkeeping fields are not the user's metadata.
    kept = {k: v for k, v in metadata.items() if k not in ("size", "name", "type") and v is not None}
    try:
        return RecordingCreate(
            filename=filename, content_type=content_type or "application/octet-stream", size_bytes=size, metadata=kept
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


def _create(
    *,
    multipart: bool,
    connection: Connection,
    storage: Storage,
    settings: Settings,
    principal: Principal,
    filename: str,
    content_type: str,
    metadata: dict[str, Any],
):
    """A recording through the ordinary create path, refusing the other upload kind's sizes."""
    data = _recording_input(filename=filename, content_type=content_type, metadata=metadata)
    threshold = settings.multipart_threshold_bytes
    if multipart and data.size_bytes <= threshold:
        raise InvalidRequest(
            f"Files up to {threshold} bytes are uploaded in one request: let Uppy "
            "use a single upload for them (shouldUseMultipart).",
            slug="use-single-upload",
        )
    if not multipart and data.size_bytes > threshold:
        raise InvalidRequest(
            f"Files above {threshold} bytes are uploaded in parts: let Uppy use "
            "multipart for them (shouldUseMultipart).",
            slug="use-multipart",
        )
    return recordings.create_recording(
        connection=connection, storage=storage, settings=settings, principal=principal, data=data
    )


def create_single(**kwargs: Any) -> dict[str, Any]:
    created = _create(multipart=False, **kwargs)
    return {
        "method": "POST",
        "url": _with_slash(created.upload.url),  # the form's own URL: no second presign
        "fields": created.upload.fields,
        "expires": kwargs["settings"].presign_expires_seconds,
    }


def create_multipart(**kwargs: Any) -> dict[str, Any]:
    created = _create(multipart=True, **kwargs)
    return {"key": created.recording.key, "uploadId": created.upload.upload_id, "bucket": kwargs["storage"].bucket}


def owned_upload(session: Session, *, principal: Principal, upload_id: str, key: str) -> Recording:
    """The caller's recording behind ``key`` and ``upload_id``; anything else is a 404."""
    recording = session.scalars(
        select(Recording).where(Recording.s3_key == key, Recording.owner == principal.tenant)
    ).first()
    # A finished upload forgets its id (complete is idempotent); an open one must match it.
    if recording is None or (recording.upload_id is not None and recording.upload_id != upload_id):
        raise NotFound("Upload not found.")
    return recording


def list_parts(*, storage: Storage, recording: Recording) -> list[dict[str, Any]]:
    return [
        {"PartNumber": p["part_number"], "ETag": p["etag"], "Size": p["size"]}
        for p in uploads.uploaded_parts(storage=storage, recording=recording)
    ]


def sign_parts(*, storage: Storage, recording: Recording, part_numbers: list[int]) -> dict[str, str]:
    return uploads.presign_parts(storage=storage, recording=recording, part_numbers=part_numbers)


def complete(
    *, session: Session, storage: Storage, recording: Recording, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    given = [{"part_number": int(p["PartNumber"]), "etag": str(p["ETag"])} for p in parts] if parts else None
    recording = uploads.complete_upload(session=session, storage=storage, recording=recording, parts=given)
    return {"location": bucket_url(storage) + recording.s3_key, "key": recording.s3_key, "bucket": storage.bucket}


def abort(*, session: Session, storage: Storage, recording: Recording) -> None:
    if recording.status != Status.PENDING.value:
        raise Conflict(f"The upload is no longer open (recording is {recording.status}); delete the recording instead.")
    recordings.delete_recording(session=session, storage=storage, recording=recording)
