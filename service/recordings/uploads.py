"""The upload lifecycle: plan an upload, sign its parts, verify what arrived, reap what never did.

Every transition is a conditional UPDATE from ``pending``: whichever caller (``complete``, an S3
event, the reaper) gets there first makes the change, the others see it already made.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from botocore.exceptions import ClientError
from sqlalchemy import Connection

from service.core.clock import utcnow
from service.core.problems import Conflict, InvalidRequest
from service.core.settings import S3_MAX_OBJECT_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES, Settings
from service.core.storage import ObjectInfo, Part, Storage, StorageUnavailable
from service.observability import lifecycle as events
from service.recordings import store
from service.recordings.models import Status, UploadMethod
from service.recordings.store import RecordingRow

log = logging.getLogger("service.uploads")

MiB = 1024 * 1024
MAX_PART_URLS_PER_BATCH = 100
_PART_NUMBER = r"(?:[1-9][0-9]{0,3}|10000)"
# Comma-separated part numbers (1-10000), at most MAX_PART_URLS_PER_BATCH of them.
PART_NUMBERS_PATTERN = rf"^{_PART_NUMBER}(?:,{_PART_NUMBER}){{0,{MAX_PART_URLS_PER_BATCH - 1}}}$"


@dataclass(frozen=True)
class MultipartPlan:
    part_size: int
    part_count: int


def plan_parts(size_bytes: int, preferred_part_bytes: int) -> MultipartPlan:
    """Parts of at least 5 MiB (whole MiB), few enough to stay within S3's 10,000-part limit."""
    needed = math.ceil(size_bytes / S3_MAX_PARTS)
    part_size = max(S3_MIN_PART_BYTES, preferred_part_bytes, math.ceil(needed / MiB) * MiB)
    return MultipartPlan(part_size=part_size, part_count=math.ceil(size_bytes / part_size))


def s3_key_for(tenant: str, recording_id: uuid.UUID) -> str:
    """The server-chosen object key: tenant prefix + recording id, never the client's filename."""
    return f"{tenant}/{recording_id}"


def presign_parts(*, storage: Storage, recording: RecordingRow, part_numbers: list[int]) -> dict[str, str]:
    upload_id = require_open_multipart(recording)
    if not part_numbers:
        raise InvalidRequest("Name at least one part number.", slug="invalid-part-number")
    if len(part_numbers) > MAX_PART_URLS_PER_BATCH:
        raise InvalidRequest(f"At most {MAX_PART_URLS_PER_BATCH} part URLs per request.", slug="invalid-part-number")
    malformed = [n for n in part_numbers if not 1 <= n <= S3_MAX_PARTS]
    if malformed:
        raise InvalidRequest(
            f"Part numbers must be between 1 and {S3_MAX_PARTS}; got {malformed[:5]}.", slug="invalid-part-number"
        )
    # A planned upload has its part count; a browser's own plan may use any of S3's part numbers.
    out_of_range = [n for n in part_numbers if recording.part_count and n > recording.part_count]
    if out_of_range:
        # 409: any part number 1-10000 is well formed; this upload's plan has fewer parts.
        raise Conflict(
            f"Part numbers must be between 1 and {recording.part_count}; got {out_of_range[:5]}.",
            slug="invalid-part-number",
        )
    return {
        str(n): storage.presign_part(key=recording.s3_key, upload_id=upload_id, part_number=n)
        for n in dict.fromkeys(part_numbers)
    }


def require_open_multipart(recording: RecordingRow) -> str:
    """The id of the recording's open multipart upload (409 when there is none)."""
    if recording.upload_method != UploadMethod.MULTIPART:
        raise Conflict("This recording was not uploaded in parts.")
    if recording.status != Status.PENDING or not recording.upload_id:
        raise Conflict(f"The upload is no longer open (recording is {recording.status}).")
    return recording.upload_id


def uploaded_parts(*, storage: Storage, recording: RecordingRow) -> list[Part]:
    upload_id = require_open_multipart(recording)
    parts = storage.list_parts(key=recording.s3_key, upload_id=upload_id)
    if parts is None:
        raise Conflict("The multipart upload no longer exists; complete or recreate the recording.")
    return parts


# Verification ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None


def verify_object(recording: RecordingRow, info: ObjectInfo | None, max_bytes: int = S3_MAX_OBJECT_BYTES) -> Verdict:
    if info is None:
        return Verdict(False, "No object was uploaded.")
    if recording.size_bytes is None:
        # Undeclared size (a browser upload): anything from 1 byte to the largest allowed.
        if not 1 <= info.size <= max_bytes:
            return Verdict(False, f"Uploaded size {info.size} bytes is outside 1..{max_bytes} bytes.")
    elif info.size != recording.size_bytes:
        return Verdict(False, f"Uploaded size {info.size} bytes differs from the declared {recording.size_bytes}.")
    if (info.content_type or "").lower() != recording.content_type:
        return Verdict(
            False, f"Uploaded content type {info.content_type!r} differs from the declared {recording.content_type!r}."
        )
    if recording.checksum_sha256 and info.checksum_sha256 != recording.checksum_sha256:
        return Verdict(False, "Uploaded content does not match the declared SHA-256 checksum.")
    return Verdict(True)


def inspect_object(*, storage: Storage, recording: RecordingRow) -> ObjectInfo | None:
    """HeadObject, plus the checksum where the store does not report one (S3 does, for uploads
    that declared one; S3-compatible servers may not). Only single uploads carry a checksum, so
    the read is bounded by the multipart threshold."""
    started = time.perf_counter()
    info = storage.head(key=recording.s3_key)
    if (
        info is not None
        and recording.checksum_sha256
        and info.checksum_sha256 is None
        and info.size == recording.size_bytes
    ):
        info = replace(info, checksum_sha256=storage.sha256(key=recording.s3_key, version_id=info.version_id))
    events.verification_seconds(time.perf_counter() - started)
    return info


def finalize(
    *,
    session: Connection,
    storage: Storage,
    recording: RecordingRow,
    info: ObjectInfo | None,
    max_bytes: int = S3_MAX_OBJECT_BYTES,
) -> RecordingRow:
    """Apply the verdict once (pending -> available | failed) and return the current row. The
    change is committed on ``session`` (a session, or a connection whose statements autocommit)."""
    verdict = verify_object(recording, info, max_bytes)
    values: dict[str, object] = {"updated_at": utcnow(), "upload_id": None}
    if verdict.ok and info is not None:
        values.update(
            status=Status.AVAILABLE,
            s3_version_id=info.version_id,
            completed_at=values["updated_at"],
            size_bytes=info.size,
        )
    else:
        values.update(status=Status.FAILED, failure_reason=verdict.reason)
    changed = store.transition(session, recording_id=recording.id, expected=Status.PENDING, **values)
    session.commit()
    if changed is None:
        # Another caller applied its verdict first: answer with the row as it is now.
        return store.at_key(session, key=recording.s3_key) or recording
    events.upload_transition("completed" if verdict.ok else "failed")
    log.info("recording %s %s", recording.id, "available" if verdict.ok else f"failed: {verdict.reason}")
    if not verdict.ok:
        _discard_bytes(storage, key=recording.s3_key, upload_id=recording.upload_id)
    return changed


def _discard_bytes(storage: Storage, *, key: str, upload_id: str | None) -> None:
    """Remove what a failed or abandoned upload left behind (parts and every object version).

    S3 unavailable: the row is already final and a later delete of the recording retries, so
    that is only a warning. S3 refusing (StorageRejected: a permission or configuration error,
    already logged with the missing action) propagates: bytes that must go would silently stay.
    """
    try:
        if upload_id:
            storage.abort_multipart(key=key, upload_id=upload_id)
        storage.purge(key=key)
    except StorageUnavailable:
        log.warning("could not remove the object at %s (S3 unavailable); deleting the recording retries", key)


def complete_upload(
    *,
    session: Connection,
    storage: Storage,
    recording: RecordingRow,
    parts: list[Part] | None,
    max_bytes: int = S3_MAX_OBJECT_BYTES,
    locked: bool = False,
) -> RecordingRow:
    """Finish an upload and verify it. Idempotent: an available recording is returned unchanged.

    Concurrent completes of one recording take turns on its row (``SELECT ... FOR UPDATE``, held
    until ``finalize`` commits): otherwise a second call could find the multipart upload already
    gone and the object not yet there while the first is still assembling it, and fail a good
    upload. The second call then sees the first one's verdict. ``locked``: ``recording`` was
    read with that lock in this session already, so it is not read again.
    """
    if recording.status == Status.PENDING and not locked:
        current = store.owned(session, tenant=recording.owner, recording_id=recording.id, lock=True)
        recording = current or recording
    if recording.status == Status.AVAILABLE:
        return recording
    if recording.status != Status.PENDING:
        raise Conflict(f"Only pending uploads can be completed; this recording is {recording.status}.")
    if recording.upload_method == UploadMethod.MULTIPART and recording.upload_id:
        too_large = _assemble(storage=storage, recording=recording, parts=parts, max_bytes=max_bytes)
        if too_large:
            # Never assembled: the parts go, and the recording fails with the reason.
            recording = finalize(
                session=session, storage=storage, recording=recording, info=too_large, max_bytes=max_bytes
            )
    if recording.status == Status.PENDING:
        info = inspect_object(storage=storage, recording=recording)
        recording = finalize(session=session, storage=storage, recording=recording, info=info, max_bytes=max_bytes)
    if recording.status == Status.FAILED:
        # 409, not 422: the request was well formed; what S3 holds conflicts with the declaration.
        raise Conflict(
            f"Upload verification failed: {recording.failure_reason}",
            slug="verification-failed",
            recording_id=str(recording.id),
        )
    if recording.status != Status.AVAILABLE:
        raise Conflict(f"Only pending uploads can be completed; this recording is {recording.status}.")
    return recording


def _assemble(
    *, storage: Storage, recording: RecordingRow, parts: list[Part] | None, max_bytes: int
) -> ObjectInfo | None:
    """Complete the multipart upload from the parts S3 holds, after checking them against S3's
    rules and the recording. Returns the would-be object when it would be too large (and leaves
    the upload unassembled), else None."""
    upload_id = recording.upload_id
    listed = storage.list_parts(key=recording.s3_key, upload_id=upload_id) if upload_id else None
    if upload_id is None or listed is None:
        return None  # already assembled by a concurrent call (or aborted): verification decides
    uploaded = {p.number: (p.etag, p.size or 0) for p in listed}
    planned = recording.part_count
    if parts is not None:
        given = {p.number: p.etag for p in parts}  # Part ETags come without quotes
        count = planned or len(given)
        # 409 for every check against what S3 holds: the request is well formed, the upload is not
        # in a state to complete.
        if len(given) != len(parts) or sorted(given) != list(range(1, count + 1)):
            raise Conflict(f"List every part from 1 to {count} exactly once.", slug="invalid-parts")
        wrong = [n for n, etag in given.items() if n not in uploaded or uploaded[n][0] != etag]
        if wrong:
            raise Conflict(f"Parts {wrong[:10]} were not uploaded or their ETags differ.", slug="invalid-parts")
    else:
        count = planned or max(uploaded, default=0)
    expected = range(1, count + 1)
    missing = [n for n in expected if n not in uploaded]
    if missing or not count:
        raise Conflict(
            f"{len(missing)} of {count} parts are not uploaded yet (first missing: {missing[:10]}).",
            slug="parts-missing",
            missing_parts=missing[:100],
        )
    small = [n for n in expected[:-1] if uploaded[n][1] < S3_MIN_PART_BYTES]
    if small:
        raise Conflict(
            f"Every part but the last must be at least {S3_MIN_PART_BYTES} bytes; parts {small[:10]} are smaller.",
            slug="invalid-parts",
        )
    total = sum(uploaded[n][1] for n in expected)
    if planned is None and recording.size_bytes is not None and total != recording.size_bytes:
        # The client chose the parts: one may still be missing. Nothing changes, it can add it.
        raise Conflict(
            f"The parts add up to {total} bytes, not the declared {recording.size_bytes}.", slug="invalid-parts"
        )
    if recording.size_bytes is None and total > max_bytes:
        return ObjectInfo(
            size=total, content_type=recording.content_type, version_id=None, etag=None, checksum_sha256=None
        )
    try:
        storage.complete_multipart(
            key=recording.s3_key, upload_id=upload_id, parts=[Part(number=n, etag=uploaded[n][0]) for n in expected]
        )
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "EntityTooLarge"):
            raise Conflict(f"S3 rejected the parts: {code}.", slug="invalid-parts") from exc
        raise
    return None


def reconcile_key(
    *,
    session: Connection,
    storage: Storage,
    key: str,
    version_id: str | None = None,
    max_bytes: int = S3_MAX_OBJECT_BYTES,
) -> RecordingRow | None:
    """Verify the recording stored at ``key`` after S3 reported an object there (at least once).

    Unknown keys return None. Bytes for a recording that is no longer pending, or a version that
    is not the recorded one (a second POST with a still-valid form), are removed.
    """
    recording = store.at_key(session, key=key)
    if recording is None:
        return None
    if recording.status != Status.PENDING:
        if version_id is None or version_id != recording.s3_version_id:
            remove_untracked(storage=storage, recording=recording)
        return recording
    info = inspect_object(storage=storage, recording=recording)
    if info is None:
        # No object (yet): an early, replayed or misdirected event proves nothing. Failing here
        # would abort a multipart upload still in progress; `complete` or the reaper decides.
        return recording
    return finalize(session=session, storage=storage, recording=recording, info=info, max_bytes=max_bytes)


def remove_untracked(*, storage: Storage, recording: RecordingRow) -> int:
    """Remove what the bucket holds at a settled recording's key beyond what the row records:
    every version of a failed or expired one; every version but the recorded one otherwise
    (delete markers stay, so a deleted recording stays deleted and restorable)."""
    if recording.status == Status.PENDING:
        return 0
    keep = recording.s3_version_id if recording.status in (Status.AVAILABLE, Status.DELETED) else None
    if keep is None:
        return storage.purge(key=recording.s3_key)
    # Delete markers stay: a concurrent delete of an available recording must not be undone.
    removed = storage.remove_untracked(key=recording.s3_key, keep_version_id=keep, keep_delete_markers=True)
    if removed:
        log.warning("removed %d untracked object versions at %s", removed, recording.s3_key)
    return removed


# Reaper ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReapResult:
    expired: int
    examined: int
    swept: int = 0


def reap(
    *, session: Connection, storage: Storage, settings: Settings, now: datetime | None = None, batch_size: int = 500
) -> ReapResult:
    """Expire pending uploads older than the TTL: claim each row first, then remove its bytes.
    Then sweep the keys of settled recordings whose upload forms have expired (see ``sweep``).

    Safe to run concurrently: the conditional claim lets exactly one reaper handle each row.
    The recorded version of an available or deleted recording is never touched.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.upload_ttl_seconds)
    stale = store.stale_uploads(session, created_before=cutoff, limit=batch_size)
    session.commit()
    expired = 0
    for recording in stale:
        claimed = store.transition(
            session,
            recording_id=recording.id,
            expected=Status.PENDING,
            status=Status.EXPIRED,
            updated_at=utcnow(),
            upload_id=None,
            failure_reason="The upload was not completed in time.",
        )
        session.commit()
        if claimed is None:
            continue
        expired += 1
        events.upload_transition("expired")
        _discard_bytes(storage, key=recording.s3_key, upload_id=recording.upload_id)
    swept = sweep(session=session, storage=storage, settings=settings, now=now, batch_size=batch_size)
    return ReapResult(expired=expired, examined=len(stale), swept=swept)


def sweep(*, session: Connection, storage: Storage, settings: Settings, now: datetime, batch_size: int) -> int:
    """Remove bytes that reached a settled recording's key through a form still valid after it
    settled (failed, deleted, expired, or a second POST to an available one). Each key is swept
    once, after its presigned form expired: no upload can start there afterwards; one that had
    started and finishes later is removed by the S3 event handler."""
    closed = now - timedelta(seconds=settings.presign_expires_seconds)
    settled = store.unswept_settled(session, created_before=closed, limit=batch_size)
    session.commit()
    for recording in settled:
        remove_untracked(storage=storage, recording=recording)
        store.change(session, recording_id=recording.id, swept_at=now)
        session.commit()
    return len(settled)
