"""Recordings: create (with its upload), read, list, update, delete, restore, download."""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection

from service.auth.principal import Principal
from service.core.clock import as_utc, utcnow
from service.core.problems import Conflict, InvalidRequest, NotFound
from service.core.settings import S3_MAX_OBJECT_BYTES, S3_MAX_PART_BYTES, Settings
from service.core.storage import Storage, expires_at
from service.observability import lifecycle as events
from service.recordings import pending, store, uploads
from service.recordings.models import Status, UploadMethod
from service.recordings.schemas import (
    CURSOR_PATTERN,
    BrowserUpload,
    CreatedRecording,
    MultipartUpload,
    PostUpload,
    RecordingCreate,
    RecordingOut,
    RecordingPage,
    RecordingUpdate,
    metadata_bytes,
    stored_metadata_is_servable,
)
from service.recordings.store import RecordingRow

log = logging.getLogger("service.recordings")


def _out_fields(recording: RecordingRow) -> dict[str, Any]:
    """The fields of the API's view of a recording, for RecordingOut to validate."""
    metadata = recording.metadata
    if not stored_metadata_is_servable(metadata):
        # Stored before the metadata limits existed and too deep to serialize: the recording
        # stays readable (and its metadata replaceable with PATCH) rather than failing every read.
        log.warning("recording %s: stored metadata cannot be served; answering {}", recording.id)
        metadata = {}
    return {
        "id": recording.id,
        "title": recording.title,
        "filename": recording.filename,
        "content_type": recording.content_type,
        "size_bytes": recording.size_bytes,
        "checksum_sha256": recording.checksum_sha256,
        "status": recording.status,
        "key": recording.s3_key,
        "upload_method": recording.upload_method,
        "part_size": recording.part_size,
        "part_count": recording.part_count,
        "metadata": metadata,
        "failure_reason": recording.failure_reason,
        "created_at": as_utc(recording.created_at),
        "updated_at": as_utc(recording.updated_at),
        "completed_at": as_utc(recording.completed_at),
        "deleted_at": as_utc(recording.deleted_at),
    }


def to_out(recording: RecordingRow) -> RecordingOut:
    """The API's view of a recording. (Validated: in pydantic-core that costs about half of what
    ``model_construct``, which runs in Python, would.)"""
    return RecordingOut.model_validate(_out_fields(recording))


def page_out(recordings: Sequence[RecordingRow], next_cursor: str | None) -> RecordingPage:
    """A page of recordings, validated in one call: pydantic-core walks the whole page, where a
    model built per item costs a call into it (and its Python wrapper) each."""
    return RecordingPage.model_validate(
        {"items": [_out_fields(recording) for recording in recordings], "next_cursor": next_cursor}
    )


def content_type_allowed(content_type: str, allowed: list[str]) -> bool:
    """Whether ``content_type`` matches one of the ``allowed`` glob patterns (``audio/*``)."""
    return _allowed_pattern(tuple(allowed)).fullmatch(content_type) is not None


@functools.lru_cache(maxsize=8)
def _allowed_pattern(allowed: tuple[str, ...]) -> re.Pattern[str]:
    # The patterns of one deployment, compiled once into one expression (fnmatch's own
    # translation, the matching fnmatchcase does pattern by pattern).
    return re.compile("|".join(f"(?:{fnmatch.translate(pattern.lower())})" for pattern in allowed) or "(?!)")


def get_owned(db: Connection, *, principal: Principal, recording_id: uuid.UUID, lock: bool = False) -> RecordingRow:
    """The caller's recording; another tenant's is indistinguishable from a missing one (404)."""
    recording = store.owned(db, tenant=principal.tenant, recording_id=recording_id, lock=lock)
    if recording is None:
        raise NotFound()
    return recording


# Read-repair ----------------------------------------------------------------------------------

# Checks per list page: each is one HeadObject, so a page of stale uploads stays cheap.
MAX_REPAIRS_PER_READ = 10


def may_need_repair(recording: RecordingRow) -> bool:
    return recording.status == Status.PENDING and recording.upload_method == UploadMethod.POST


def repair_pending(
    *, db: Connection, storage: Storage, recordings: list[RecordingRow], max_bytes: int = S3_MAX_OBJECT_BYTES
) -> list[RecordingRow]:
    """Verify pending single (POST) uploads whose object has arrived, exactly as ``complete`` does;
    the recordings as they are afterwards.

    Browser single uploads (Uppy) never call back after their POST to S3; in AWS the S3 event
    handler verifies them, and where no events arrive (the local run) reading them does. The read
    routes (get, list, download) call this; changes act on the state they were aimed at. An object
    that is not there yet leaves the recording pending.
    """
    checked = {r.id for r in [r for r in recordings if may_need_repair(r)][:MAX_REPAIRS_PER_READ]}
    if not checked:
        return recordings
    repaired = []
    for recording in recordings:
        if recording.id in checked:
            info = uploads.inspect_object(storage=storage, recording=recording)
            if info is not None:
                recording = uploads.finalize(
                    session=db, storage=storage, recording=recording, info=info, max_bytes=max_bytes
                )
        repaired.append(recording)
    return repaired


def create_recording(
    *, connection: Connection, storage: Storage, settings: Settings, principal: Principal, data: RecordingCreate
) -> CreatedRecording:
    """The API's create: the service picks single or multipart by the threshold and plans the parts."""
    multipart = data.size_bytes > settings.multipart_threshold_bytes
    if multipart and data.checksum_sha256:
        raise InvalidRequest(
            "checksum_sha256 is verified by S3 for single uploads only; uploads above "
            f"{settings.multipart_threshold_bytes} bytes are sent in parts and cannot carry it.",
            slug="checksum-not-supported",
        )
    plan = uploads.plan_parts(data.size_bytes, settings.multipart_part_bytes) if multipart else None
    recording, opened = open_upload(
        connection=connection, storage=storage, settings=settings, principal=principal, data=data, plan=plan
    )
    deadline = expires_at(recording.created_at, settings.presign_expires_seconds)
    upload: PostUpload | MultipartUpload
    if isinstance(opened, OpenedPost):
        upload = PostUpload(url=opened.url, fields=opened.fields, expires_at=deadline)
    elif plan is not None:
        upload = MultipartUpload(
            upload_id=opened.upload_id, part_size=plan.part_size, part_count=plan.part_count, expires_at=deadline
        )
    return CreatedRecording(recording=to_out(recording), upload=upload)


@dataclass(frozen=True, slots=True)
class OpenedPost:
    """A single upload: the presigned POST form the client sends the bytes with."""

    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class OpenedMultipart:
    """A multipart upload: the id its parts are signed and completed with."""

    upload_id: str


def open_upload(
    *,
    connection: Connection,
    storage: Storage,
    settings: Settings,
    principal: Principal,
    data: RecordingCreate | BrowserUpload,
    multipart: bool = False,
    plan: uploads.MultipartPlan | None = None,
) -> tuple[RecordingRow, OpenedPost | OpenedMultipart]:
    """Check the request, open the upload in S3 and store the pending recording. A ``plan``
    (the API's create) makes it a multipart upload of those parts.

    A ``BrowserUpload`` (Uppy) may leave the size undeclared and chooses its own part size: its
    multipart upload (``multipart``) has no plan, and the client names the parts it signs and
    completes.
    """
    multipart = multipart or plan is not None
    size = data.size_bytes
    if len(data.filename) > settings.max_filename_length:
        raise InvalidRequest(f"filename must be at most {settings.max_filename_length} characters.")
    if size is not None and size > settings.max_upload_bytes:
        raise InvalidRequest(
            f"size_bytes {size} exceeds the maximum of {settings.max_upload_bytes} bytes.", slug="too-large"
        )
    if not multipart and size is not None and size > S3_MAX_PART_BYTES:
        raise InvalidRequest(
            f"S3 takes at most {S3_MAX_PART_BYTES} bytes in one request; upload this file in parts.",
            slug="use-multipart",
        )
    if not content_type_allowed(data.content_type, settings.allowed_content_types):
        raise InvalidRequest(
            f"content_type {data.content_type!r} is not allowed; allowed: {', '.join(settings.allowed_content_types)}.",
            slug="content-type-not-allowed",
        )
    check_metadata_size(data.metadata, settings)
    pending.enforce_pending_cap(connection, settings, principal.tenant)
    recording_id = uuid.uuid4()
    key = uploads.s3_key_for(principal.tenant, recording_id)
    now = utcnow()
    values = {
        "id": recording_id,
        "owner": principal.tenant,
        "title": data.title,
        "filename": data.filename,
        "content_type": data.content_type,
        "size_bytes": size,
        "checksum_sha256": data.checksum_sha256,
        "s3_key": key,
        "upload_method": UploadMethod.MULTIPART if multipart else UploadMethod.POST,
        "upload_id": None,
        "part_size": None,
        "part_count": None,
        "metadata": data.metadata,
        "created_at": now,
        "updated_at": now,
    }
    if multipart:
        # Open the upload before the row exists: a failure here leaves no row behind, and an
        # upload without a row is aborted by the bucket's lifecycle rule.
        upload_id = storage.create_multipart(key=key, content_type=data.content_type)
        values["upload_id"] = upload_id
        if plan is not None:
            values.update(part_size=plan.part_size, part_count=plan.part_count)
        opened: OpenedPost | OpenedMultipart = OpenedMultipart(upload_id=upload_id)
    else:
        post = storage.presign_post(
            key=key,
            content_type=data.content_type,
            size=size,
            checksum_sha256=data.checksum_sha256,
            max_size=min(settings.max_upload_bytes, S3_MAX_PART_BYTES),
        )
        opened = OpenedPost(url=post["url"], fields=post["fields"])
    try:
        with pending.pending_slot(connection, settings, principal.tenant):
            recording = store.insert_row(connection, values)
    except Exception:
        if isinstance(opened, OpenedMultipart):
            storage.abort_multipart(key=key, upload_id=opened.upload_id)
        raise
    events.upload_transition("created")
    return recording, opened


# Listing with keyset pagination ---------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(recording: RecordingRow) -> str:
    """The keyset position after ``recording``: its creation time in microseconds, and its id."""
    micros = (as_utc(recording.created_at) - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}.{recording.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; anything not of the issued shape is a 422 (the query schema
    states the same pattern)."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor is not valid; use next_cursor from a previous page.", slug="invalid-cursor")
    micros, recording_id = cursor.split(".")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(hex=recording_id)


def list_recordings(
    db: Connection, *, principal: Principal, limit: int, cursor: str | None, status: Status | None
) -> tuple[list[RecordingRow], str | None]:
    """A page of the caller's recordings, newest first, and the cursor of the next page."""
    after = decode_cursor(cursor) if cursor else None
    rows = store.page(db, tenant=principal.tenant, limit=limit + 1, after=after, status=status)
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


# Changes --------------------------------------------------------------------------------------


def check_metadata_size(metadata: dict[str, Any], settings: Settings) -> None:
    """MAX_METADATA_BYTES, when a deployment sets it below the schema's 16 KiB bound."""
    size = metadata_bytes(metadata)
    if size > settings.max_metadata_bytes:
        raise InvalidRequest(
            f"metadata must be at most {settings.max_metadata_bytes} bytes as JSON, got {size}.",
            slug="metadata-too-large",
        )


def update_recording(
    *, session: Connection, settings: Settings, recording: RecordingRow, data: RecordingUpdate
) -> RecordingRow:
    if recording.status == Status.DELETED:
        raise Conflict("A deleted recording cannot be changed; restore it first.")
    changes = data.model_dump(exclude_unset=True)
    if "metadata" in changes:
        if changes["metadata"] is None:
            raise InvalidRequest("metadata must be an object; send {} to clear it.")
        check_metadata_size(changes["metadata"], settings)
    if not changes:
        return recording
    updated = store.change(session, recording_id=recording.id, updated_at=utcnow(), **changes)
    session.commit()
    return updated or recording


def delete_recording(*, session: Connection, storage: Storage, recording: RecordingRow) -> None:
    """Pending: abort and purge the partial bytes. Available: delete (restorable). Idempotent."""
    previous = recording.status
    if previous == Status.DELETED:
        return
    if previous == Status.AVAILABLE:
        storage.delete(key=recording.s3_key)
    else:
        if recording.upload_id:
            storage.abort_multipart(key=recording.s3_key, upload_id=recording.upload_id)
        storage.purge(key=recording.s3_key)
    now = utcnow()
    deleted = store.transition(
        session,
        recording_id=recording.id,
        expected=previous,
        status=Status.DELETED,
        deleted_at=now,
        updated_at=now,
        upload_id=None,
    )
    session.commit()
    if deleted is not None:
        events.upload_transition("deleted")


def restore_recording(
    *, session: Connection, storage: Storage, settings: Settings, recording: RecordingRow
) -> RecordingRow:
    if recording.status != Status.DELETED:
        raise Conflict(f"Only deleted recordings can be restored; this one is {recording.status}.")
    deleted_at = as_utc(recording.deleted_at)
    if not recording.s3_version_id or recording.completed_at is None:
        raise Conflict("Nothing to restore: the upload never completed.")
    if deleted_at and utcnow() - deleted_at > timedelta(days=settings.restore_window_days):
        raise Conflict(f"Nothing to restore: deleted more than {settings.restore_window_days} days ago.")
    # Every check that can refuse comes before S3 changes, so a refusal leaves it deleted.
    if storage.head(key=recording.s3_key, version_id=recording.s3_version_id) is None:
        raise Conflict("Nothing to restore: the stored version no longer exists.")
    # The recorded version becomes the current one: the delete markers above it go, and so do
    # bytes nothing tracks (a later POST with a form that was still valid).
    storage.remove_untracked(key=recording.s3_key, keep_version_id=recording.s3_version_id, keep_delete_markers=False)
    try:
        restored = store.transition(
            session,
            recording_id=recording.id,
            expected=Status.DELETED,
            status=Status.AVAILABLE,
            deleted_at=None,
            updated_at=utcnow(),
        )
        session.commit()
    except Exception:
        # The database still says deleted: so must S3.
        session.rollback()
        storage.delete(key=recording.s3_key)
        raise
    if restored is None:
        # Restored (or changed) by a concurrent call first: answer with what it is now.
        current = store.owned(session, tenant=recording.owner, recording_id=recording.id)
        return current or recording
    events.upload_transition("restored")
    return restored


# Downloads ------------------------------------------------------------------------------------


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """``attachment`` (or ``inline``) with an ASCII fallback and the exact name in RFC 5987 form (RFC 6266)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in filename) or "download"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def download_link(*, storage: Storage, settings: Settings, recording: RecordingRow) -> tuple[str, datetime]:
    if recording.status != Status.AVAILABLE:
        raise Conflict(f"Only available recordings can be downloaded; this one is {recording.status}.")
    url = storage.presign_get(
        key=recording.s3_key,
        version_id=recording.s3_version_id,
        content_disposition=content_disposition(recording.filename),
        content_type=recording.content_type,
    )
    return url, expires_at(utcnow(), settings.presign_expires_seconds)


PLAYABLE_TYPES = ("audio/", "video/")


def play_link(*, storage: Storage, settings: Settings, recording: RecordingRow) -> tuple[str, datetime]:
    """A presigned GET that browsers play in place: ``inline``, and only for audio and video,
    whose media type (verified at upload) S3 is told to send, so nothing else renders from it."""
    if recording.status != Status.AVAILABLE:
        raise Conflict(f"Only available recordings can be played; this one is {recording.status}.")
    if not recording.content_type.startswith(PLAYABLE_TYPES):
        raise Conflict(f"Only audio and video play in the page; download this {recording.content_type} file instead.")
    url = storage.presign_get(
        key=recording.s3_key,
        version_id=recording.s3_version_id,
        content_disposition=content_disposition(recording.filename, "inline"),
        content_type=recording.content_type,
    )
    return url, expires_at(utcnow(), settings.presign_expires_seconds)
