"""Routes for browsers: the page's configuration and Companion-style S3 signing for Uppy.
(No ``from __future__ import annotations``: the Uppy create routes are defined inside
``build_uppy_create_router`` and annotated with its local types.)"""

import re
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, create_model

from service.auth.caller import CallerDep
from service.auth.sessions import require_origin_proof
from service.browser import companion
from service.core.problems import InvalidRequest, describe_pattern, pattern_meaning
from service.core.settings import S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES, Settings
from service.core.storage import Part, normalize_etag
from service.recordings.schemas import FILENAME_PATTERN, allowed_content_type_pattern
from service.recordings.schemas import Metadata as BrowserMetadata
from service.recordings.service import content_type_allowed
from service.recordings.uploads import PART_NUMBERS_PATTERN
from service.web.deps import SettingsDep
from service.web.openapi import PROBLEM
from service.web.responses import adapted_response, model_response

_METADATA_PARAM = re.compile(r"^metadata\[([^\]]{1,100})\]$")

s3_router = APIRouter(
    prefix="/v1/s3",
    tags=["uppy (companion s3 routes)"],
    responses={401: PROBLEM, 403: PROBLEM, 404: PROBLEM, 409: PROBLEM, 422: PROBLEM, 503: PROBLEM},
)
config_router = APIRouter(prefix="/v1/browser", tags=["browser sessions"])


class BrowserConfig(BaseModel):
    multipart_threshold_bytes: int
    multipart_part_bytes: int
    min_part_bytes: int
    max_parts: int
    max_upload_bytes: int
    allowed_content_types: list[str]
    restore_window_days: int


@config_router.get("/config", response_model=BrowserConfig)
def browser_config(settings: SettingsDep) -> Response:
    """Upload limits the page needs before it picks single or multipart (no credentials needed)."""
    config = BrowserConfig(
        multipart_threshold_bytes=settings.multipart_threshold_bytes,
        multipart_part_bytes=settings.multipart_part_bytes,
        min_part_bytes=S3_MIN_PART_BYTES,
        max_parts=S3_MAX_PARTS,
        max_upload_bytes=settings.max_upload_bytes,
        allowed_content_types=settings.allowed_content_types,
        restore_window_days=settings.restore_window_days,
    )
    return model_response(config)


# Companion's S3 routes ---------------------------------------------------------------------------


class PresignedPost(BaseModel):
    method: str = "POST"
    url: str
    fields: dict[str, str]
    expires: int


class MultipartCreated(BaseModel):
    key: str
    uploadId: str
    bucket: str


class PartOut(BaseModel):
    PartNumber: int
    ETag: str
    Size: int


class SignedPart(BaseModel):
    url: str
    expires: int


class SignedBatch(BaseModel):
    presignedUrls: dict[str, str]


_PARTS = TypeAdapter(list[PartOut])


class CompletedPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    PartNumber: Annotated[int, Field(ge=1, le=S3_MAX_PARTS)]
    ETag: Annotated[str, Field(min_length=1, max_length=128)]


class CompleteMultipart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    parts: Annotated[list[CompletedPart], Field(min_length=1, max_length=S3_MAX_PARTS)]


class Completed(BaseModel):
    location: str
    key: str
    bucket: str


# PostgreSQL text cannot hold NUL: the schema says so rather than the database refusing it.
KeyQuery = Annotated[str, Query(min_length=1, max_length=512, pattern=r"^[^\x00]+$")]
UploadId = Annotated[str, Path(max_length=1024, pattern=r"^[^\x00]+$")]


@s3_router.get("/multipart/{upload_id}", response_model=list[PartOut])
def list_uploaded_parts(upload_id: UploadId, key: KeyQuery, caller: CallerDep) -> Response:
    """The parts S3 holds already (Uppy resumes from these)."""
    with caller.connection() as connection:
        recording = companion.owned_upload(connection, principal=caller.principal, upload_id=upload_id, key=key)
    return adapted_response(_PARTS, companion.list_parts(storage=caller.storage, recording=recording))


@s3_router.get("/multipart/{upload_id}/batch", response_model=SignedBatch)
def sign_part_batch(
    upload_id: UploadId,
    key: KeyQuery,
    part_numbers: Annotated[str, Query(alias="partNumbers", pattern=PART_NUMBERS_PATTERN, max_length=1000)],
    caller: CallerDep,
) -> Response:
    with caller.connection() as connection:
        recording = companion.owned_upload(connection, principal=caller.principal, upload_id=upload_id, key=key)
    try:
        numbers = [int(item) for item in part_numbers.split(",") if item.strip()]
    except ValueError:
        raise InvalidRequest("partNumbers must be comma-separated integers.", slug="invalid-part-number") from None
    urls = companion.sign_parts(storage=caller.storage, recording=recording, part_numbers=numbers)
    return model_response(SignedBatch(presignedUrls=urls))


# ":int": only digits route here, so ".../complete" is not taken for a part number.
@s3_router.get("/multipart/{upload_id}/{part_number:int}", response_model=SignedPart)
def sign_part(
    upload_id: UploadId,
    part_number: Annotated[int, Path(ge=1, le=S3_MAX_PARTS)],
    key: KeyQuery,
    caller: CallerDep,
) -> Response:
    with caller.connection() as connection:
        recording = companion.owned_upload(connection, principal=caller.principal, upload_id=upload_id, key=key)
    urls = companion.sign_parts(storage=caller.storage, recording=recording, part_numbers=[part_number])
    return model_response(SignedPart(url=urls[str(part_number)], expires=caller.settings.presign_expires_seconds))


@s3_router.post("/multipart/{upload_id}/complete", response_model=Completed)
def complete_multipart_upload(
    upload_id: UploadId,
    key: KeyQuery,
    caller: CallerDep,
    body: Annotated[CompleteMultipart, Body()],
) -> Response:
    """Assemble the listed parts (1..N, each but the last at least 5 MiB) and verify the object
    exactly as ``POST /v1/recordings/{id}/complete``; a declared size must match."""
    parts = [Part(number=p.PartNumber, etag=normalize_etag(p.ETag)) for p in body.parts]
    with caller.session() as session:
        recording = companion.owned_upload(session, principal=caller.principal, upload_id=upload_id, key=key)
        completed = companion.complete(
            session=session, storage=caller.storage, settings=caller.settings, recording=recording, parts=parts
        )
    return model_response(Completed(**completed))


@s3_router.delete("/multipart/{upload_id}")
def abort_multipart_upload(upload_id: UploadId, key: KeyQuery, caller: CallerDep) -> dict[str, Any]:
    with caller.session() as session:
        recording = companion.owned_upload(session, principal=caller.principal, upload_id=upload_id, key=key)
        companion.abort(session=session, storage=caller.storage, recording=recording)
    return {}


class MultipartStart(BaseModel):
    """The fields of a multipart start; ``build_uppy_create_router`` narrows ``filename`` and
    ``type`` to the deployment's limits."""

    model_config = ConfigDict(extra="ignore")

    filename: str
    type: str = ""
    metadata: Annotated[
        BrowserMetadata,
        Field(
            description="the file's meta; an optional `size` (bytes) pins the recording's size, the "
            "rest (except Uppy's `name`, `type`, `relativePath`) becomes the recording's metadata",
        ),
    ] = Field(default_factory=dict)


def build_uppy_create_router(settings: Settings) -> APIRouter:
    """The two Uppy routes that create a recording, built per application: their schemas state
    that deployment's limits (file name length, allowed media types, largest upload), as
    ``POST /v1/recordings`` does, so a request the schema allows is one the service accepts."""
    router = APIRouter(prefix=s3_router.prefix, tags=s3_router.tags, responses=s3_router.responses)
    filename_pattern = FILENAME_PATTERN
    types = allowed_content_type_pattern(tuple(settings.allowed_content_types))
    if content_type_allowed(companion.DEFAULT_CONTENT_TYPE, settings.allowed_content_types):
        # Uppy sends an empty type for files the browser cannot name; they are stored as
        # application/octet-stream, which this deployment allows.
        types = describe_pattern(f"^(?:|{types[1:-1]})$", "empty, or " + pattern_meaning(types))
    Filename = Annotated[
        str, StringConstraints(min_length=1, max_length=settings.max_filename_length, pattern=filename_pattern)
    ]
    MediaType = Annotated[str, StringConstraints(max_length=255, pattern=types)]

    CreateMultipart = create_model(
        "CreateMultipart",
        __base__=MultipartStart,
        __doc__="What ``@uppy/aws-s3`` sends to start a multipart upload. No size and no part plan: the "
        "client chooses its part size (5 MiB to 5 GiB, the last part smaller, at most 10,000 parts).",
        filename=(Filename, ...),
        type=(MediaType, ""),
    )

    @router.get("/params", response_model=PresignedPost, dependencies=[Depends(require_origin_proof)])
    def sign_single_upload(
        request: Request,
        caller: CallerDep,
        filename: Annotated[
            str,
            Query(
                min_length=1,
                max_length=settings.max_filename_length,
                pattern=filename_pattern,
                description="the file's name (kept as is)",
            ),
        ],
        type: Annotated[str, Query(max_length=255, pattern=types, description="the file's media type")] = "",
        size: Annotated[
            int | None,
            Query(
                alias="metadata[size]",
                ge=1,
                le=min(settings.max_upload_bytes, S3_MAX_PART_BYTES),
                description="optional: the file size in bytes, pinned in the policy. Without it the policy "
                "allows 1 byte up to the largest upload and the recording takes the uploaded object's size.",
            ),
        ] = None,
    ) -> Response:
        """Create a recording and a presigned POST for its bytes (one request, up to 5 GiB).

        Other ``metadata[<name>]`` parameters become the recording's metadata (Uppy's own ``name``
        and ``type`` are left out). With a session cookie this changes data, so it needs proof of
        origin like any other change: ``Origin`` of an allowed origin, or ``Sec-Fetch-Site: same-origin``.
        """
        metadata: dict[str, Any] = {
            match.group(1): value
            for name, value in request.query_params.multi_items()
            if (match := _METADATA_PARAM.match(name))
        }
        if size is not None:
            metadata["size"] = size
        with caller.connection() as connection:
            signed = companion.create_single(
                connection=connection,
                storage=caller.storage,
                settings=caller.settings,
                principal=caller.principal,
                filename=filename,
                content_type=type,
                metadata=metadata,
            )
        return model_response(PresignedPost(**signed))

    @router.post("/multipart", response_model=MultipartCreated)
    def create_multipart_upload(data: CreateMultipart, caller: CallerDep) -> Response:
        """Create a recording and open its multipart upload; sign parts with ``GET .../{partNumber}``."""
        with caller.connection() as connection:
            created = companion.create_multipart(
                connection=connection,
                storage=caller.storage,
                settings=caller.settings,
                principal=caller.principal,
                filename=data.filename,
                content_type=data.type,
                metadata=data.metadata,
            )
        return model_response(MultipartCreated(**created))

    return router
