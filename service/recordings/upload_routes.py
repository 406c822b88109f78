from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from service.auth.caller import CallerDep
from service.core.clock import utcnow
from service.core.problems import InvalidRequest
from service.core.storage import Part, expires_at, normalize_etag
from service.recordings import service as recordings
from service.recordings import uploads as service
from service.recordings.schemas import RecordingOut
from service.recordings.uploads import MAX_PART_URLS_PER_BATCH, PART_NUMBERS_PATTERN
from service.web.openapi import PROBLEM
from service.web.responses import model_response

router = APIRouter(
    prefix="/v1/recordings/{recording_id}",
    tags=["uploads"],
    responses={401: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM, 503: PROBLEM},
)


class PartUrls(BaseModel):
    urls: dict[str, str]
    expires_at: datetime


class UploadedPart(BaseModel):
    part_number: int
    etag: str
    size: int


class UploadedParts(BaseModel):
    parts: list[UploadedPart]


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_number: Annotated[int, Field(ge=1, le=10_000)]
    etag: Annotated[str, Field(min_length=1, max_length=128)]


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: Annotated[list[CompletedPart], Field(min_length=1, max_length=10_000)]


def parse_part_numbers(raw: str) -> list[int]:
    try:
        numbers = [int(item) for item in raw.split(",") if item.strip()]
    except ValueError:
        raise InvalidRequest(
            "part_numbers must be comma-separated integers, e.g. 1,2,3.", slug="invalid-part-number"
        ) from None
    return numbers


@router.get("/upload/parts", response_model=PartUrls)
def sign_parts(
    recording_id: uuid.UUID,
    caller: CallerDep,
    part_numbers: Annotated[
        str,
        Query(
            pattern=PART_NUMBERS_PATTERN,
            max_length=1000,
            examples=["1,2,3"],
            description=f"Comma-separated part numbers (1-10000), at most {MAX_PART_URLS_PER_BATCH}.",
        ),
    ],
) -> Response:
    """Presigned PUT URLs for up to 100 parts of a multipart upload."""
    numbers = parse_part_numbers(part_numbers)
    with caller.connection() as connection:
        recording = recordings.get_owned(connection, principal=caller.principal, recording_id=recording_id)
    urls = service.presign_parts(storage=caller.storage, recording=recording, part_numbers=numbers)
    expires = expires_at(utcnow(), caller.settings.presign_expires_seconds)
    return model_response(PartUrls(urls=urls, expires_at=expires))


@router.get("/upload/parts/uploaded", response_model=UploadedParts)
def list_uploaded_parts(recording_id: uuid.UUID, caller: CallerDep) -> Response:
    """The parts S3 already holds, so an interrupted upload can resume where it stopped."""
    with caller.connection() as connection:
        recording = recordings.get_owned(connection, principal=caller.principal, recording_id=recording_id)
    parts = service.uploaded_parts(storage=caller.storage, recording=recording)
    return model_response(
        UploadedParts(parts=[UploadedPart(part_number=p.number, etag=p.etag, size=p.size or 0) for p in parts])
    )


@router.post("/complete", response_model=RecordingOut)
def complete_upload(
    recording_id: uuid.UUID,
    caller: CallerDep,
    body: Annotated[CompleteRequest | None, Body()] = None,
) -> Response:
    """Finish the upload and verify the object (size, type, checksum). Idempotent."""
    parts = [Part(number=part.part_number, etag=normalize_etag(part.etag)) for part in body.parts] if body else None
    with caller.session() as session:
        # Read with the row lock that completing takes anyway: one read instead of two.
        recording = recordings.get_owned(session, principal=caller.principal, recording_id=recording_id, lock=True)
        completed = service.complete_upload(
            session=session,
            storage=caller.storage,
            recording=recording,
            parts=parts,
            max_bytes=caller.settings.max_upload_bytes,
            locked=True,
        )
        out = recordings.to_out(completed)
    return model_response(out)
