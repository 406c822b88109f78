from __future__ import annotations

import base64
import binascii
import json
import re
import unicodedata
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from service.recordings.models import Status

_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
MAX_FILENAME_CHARS = 1024  # hard schema bound; the configured limit (default 255) applies on top
MAX_METADATA_BYTES = 16 * 1024


def _has_control_chars(value: str) -> bool:
    if value.isprintable():  # the common case, in C: printable excludes every category below
        return False
    return any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") for char in value)


def check_filename(value: str) -> str:
    if not value.strip():
        raise ValueError("filename must not be blank")
    if "/" in value or "\\" in value:
        raise ValueError("filename must not contain path separators")
    if value in (".", ".."):
        raise ValueError("filename must name a file")
    if _has_control_chars(value):
        raise ValueError("filename must not contain control or invisible characters")
    return value


def check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON, got {len(encoded)}")
    return value


def check_content_type(value: str) -> str:
    value = value.strip().lower()
    if not _CONTENT_TYPE.fullmatch(value):
        raise ValueError("content_type must be a media type like 'audio/mpeg' (no parameters)")
    return value


def check_title(value: str | None) -> str | None:
    if value is not None and _has_control_chars(value):
        raise ValueError("title must not contain control characters")
    return value


class RecordingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Annotated[str, Field(min_length=1, max_length=MAX_FILENAME_CHARS)]
    content_type: Annotated[str, Field(min_length=3, max_length=255)]
    size_bytes: Annotated[int, Field(ge=1, le=5 * 1024**4)]
    title: Annotated[str | None, Field(max_length=200)] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    checksum_sha256: Annotated[str | None, Field(min_length=44, max_length=44)] = None

    _filename = field_validator("filename")(check_filename)
    _metadata = field_validator("metadata")(check_metadata)
    _title = field_validator("title")(check_title)

    _content_type = field_validator("content_type")(check_content_type)

    @field_validator("checksum_sha256")
    @classmethod
    def _checksum(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("checksum_sha256 must be the base64 of a SHA-256 digest") from None
        if len(digest) != 32:
            raise ValueError("checksum_sha256 must be the base64 of a 32-byte SHA-256 digest")
        return value


class BrowserUpload(BaseModel):
    """An upload started by a browser client (Uppy): the size is optional, no checksum, no title."""

    filename: Annotated[str, Field(min_length=1, max_length=MAX_FILENAME_CHARS)]
    content_type: Annotated[str, Field(min_length=3, max_length=255)]
    size_bytes: Annotated[int | None, Field(ge=1, le=5 * 1024**4)] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    title: None = None
    checksum_sha256: None = None

    _filename = field_validator("filename")(check_filename)
    _metadata = field_validator("metadata")(check_metadata)
    _content_type = field_validator("content_type")(check_content_type)


class RecordingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, Field(max_length=200)] = None
    metadata: dict[str, Any] | None = None

    _metadata = field_validator("metadata")(check_metadata)
    _title = field_validator("title")(check_title)


class RecordingOut(BaseModel):
    id: uuid.UUID
    title: str | None
    filename: str
    content_type: str
    # null while a browser upload that did not declare its size is pending
    size_bytes: int | None
    checksum_sha256: str | None
    status: Status
    key: str
    upload_method: Literal["POST", "MULTIPART"]
    part_size: int | None
    part_count: int | None
    metadata: dict[str, Any]
    failure_reason: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    completed_at: AwareDatetime | None
    deleted_at: AwareDatetime | None


class PostUpload(BaseModel):
    method: Literal["POST"] = "POST"
    url: str
    fields: dict[str, str]
    expires_at: datetime


class MultipartUpload(BaseModel):
    method: Literal["MULTIPART"] = "MULTIPART"
    upload_id: str
    part_size: int
    part_count: int
    expires_at: datetime


class CreatedRecording(BaseModel):
    recording: RecordingOut
    upload: PostUpload | MultipartUpload


class RecordingPage(BaseModel):
    items: list[RecordingOut]
    next_cursor: str | None


class DownloadLink(BaseModel):
    url: str
    expires_at: datetime
