"""Request and response models. The request models are the API's contract: the OpenAPI schema is
generated from them and they are what validates, so every rule a request must meet is written
here once, as a JSON-Schema-expressible constraint (pattern, length, bound) wherever possible.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema

from service.core.problems import describe_pattern
from service.recordings.models import Status, UploadMethod

MAX_FILENAME_CHARS = 1024  # hard schema bound; the configured limit (default 255) applies on top
MAX_SIZE_BYTES = 5 * 1024**4  # S3's largest object
MAX_TITLE_CHARS = 200

# Characters no name or title may hold: C0/C1 controls, and the invisible formatting characters
# that make a name display as something else (soft hyphen, zero-width and bidirectional marks,
# BOM, interlinear annotations) or private-use ones. Escapes that JSON Schema (ECMA-262), Python
# and pydantic's regex engine all read the same way.
_INVISIBLE = (
    r"\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ue000-\uf8ff"
)
_SPACES = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# A file name: no path separators, no invisible characters, and at least one character that is
# neither a space nor a dot (so not blank, ".", ".." or "...").
FILENAME_PATTERN = describe_pattern(
    rf"^[^/\\{_INVISIBLE}]*[^/\\.{_SPACES}{_INVISIBLE}][^/\\{_INVISIBLE}]*$",
    "a file name: no path separators, no control or invisible characters, not blank and not only dots",
)
TITLE_PATTERN = describe_pattern(rf"^[^{_INVISIBLE}]*$", "no control or invisible characters")
# PostgreSQL's JSON type cannot hold NUL (\u0000); everything else is the caller's business.
_NO_NUL = describe_pattern(r"^[^\x00]*$", "no NUL (\\u0000) characters")
# A media type without parameters (RFC 6838 names), any case; stored lower-cased.
_MEDIA_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
CONTENT_TYPE_PATTERN = describe_pattern(
    rf"^{_MEDIA_NAME}/{_MEDIA_NAME}$", "a media type like 'audio/mpeg' (no parameters)"
)
# The base64 of a 32-byte SHA-256 digest: 43 characters and one "=" of padding.
CHECKSUM_PATTERN = describe_pattern(r"^[A-Za-z0-9+/]{43}=$", "the base64 of a 32-byte SHA-256 digest")

# Metadata: a JSON object the caller owns, bounded in every direction so that storing and
# returning it can never fail (PostgreSQL's jsonb, the response serializer's recursion limit).
MAX_METADATA_BYTES = 16 * 1024  # as compact UTF-8 JSON; METADATA is at most this (settings)
MAX_METADATA_DEPTH = 4  # the metadata object is level 1; arrays and objects count a level each
MAX_METADATA_KEYS = 32  # per object
MAX_METADATA_ITEMS = 32  # per array
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_STRING_CHARS = 1024

MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY_CHARS, pattern=_NO_NUL)]
# Strict: a value is stored as it was sent (lax mode would turn a too-long "000..." into 0).
_MetadataScalar = (
    Annotated[StrictStr, StringConstraints(max_length=MAX_METADATA_STRING_CHARS, pattern=_NO_NUL)]
    | StrictInt
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | StrictBool
    | None
)


def metadata_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``{}`` is 1), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def metadata_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _metadata_limits(value: Any) -> Any:
    # Checked before the structure, so that a too-deep value gets one clear message rather
    # than one error per alternative at the level where it went too deep.
    if isinstance(value, dict) and metadata_depth(value) > MAX_METADATA_DEPTH:
        raise ValueError(f"metadata may nest at most {MAX_METADATA_DEPTH} levels of objects and arrays")
    return value


def _metadata_size(value: dict[str, Any]) -> dict[str, Any]:
    size = metadata_bytes(value)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata must be at most {MAX_METADATA_BYTES} bytes as JSON, got {size}")
    return value


def _keys_as_property_names(schema: dict[str, Any]) -> None:
    # pydantic states a pattern on keys as patternProperties, which leaves other keys
    # unconstrained; propertyNames says what is meant: every key matches.
    pattern_properties = schema.pop("patternProperties", None)
    if pattern_properties:
        ((pattern, value),) = pattern_properties.items()
        schema["additionalProperties"] = value
        schema.setdefault("propertyNames", {})["pattern"] = pattern


def _nested(inner: Any) -> Any:
    return (
        _MetadataScalar
        | Annotated[list[inner], Field(max_length=MAX_METADATA_ITEMS)]
        | Annotated[
            dict[MetadataKey, inner], Field(max_length=MAX_METADATA_KEYS, json_schema_extra=_keys_as_property_names)
        ]
    )


_value: Any = _MetadataScalar
for _ in range(MAX_METADATA_DEPTH - 1):
    _value = _nested(_value)


class _BuiltOnce:
    """The core schema of the type it annotates, generated the first time a model needs it and
    reused by every later model: the unrolled metadata type is a few hundred schema nodes, which
    pydantic would otherwise generate again for each model with a metadata field (several per
    app, built on every cold start)."""

    def __init__(self) -> None:
        self._schema: CoreSchema | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        if self._schema is None:
            self._schema = handler(source)
        return self._schema


Metadata = Annotated[
    dict[MetadataKey, _value],
    _BuiltOnce(),
    Field(
        max_length=MAX_METADATA_KEYS,
        json_schema_extra=_keys_as_property_names,
        description=(
            f"Your own JSON object: at most {MAX_METADATA_DEPTH} levels of objects and arrays, "
            f"{MAX_METADATA_KEYS} keys per object, {MAX_METADATA_ITEMS} items per array, keys of "
            f"1-{MAX_METADATA_KEY_CHARS} characters, strings of at most {MAX_METADATA_STRING_CHARS} "
            f"characters, no NUL characters, and at most {MAX_METADATA_BYTES} bytes as compact JSON."
        ),
    ),
]


def stored_metadata_is_servable(value: Any) -> bool:
    """Whether metadata read from the database can be serialized (rows stored before the limits
    may nest deeper than the serializer allows, or hold values JSON cannot)."""
    if not isinstance(value, dict):
        return False
    if not any(isinstance(child, (dict, list)) for child in value.values()):
        return True  # a flat object, as most are: nothing to walk
    return metadata_depth(value) <= 64


Filename = Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILENAME_CHARS, pattern=FILENAME_PATTERN)]
Title = Annotated[str, StringConstraints(max_length=MAX_TITLE_CHARS, pattern=TITLE_PATTERN)]
ContentType = Annotated[str, StringConstraints(min_length=3, max_length=255, pattern=CONTENT_TYPE_PATTERN)]
Checksum = Annotated[str, StringConstraints(min_length=44, max_length=44, pattern=CHECKSUM_PATTERN)]


def _single_upload_checksum_schema(schema: dict[str, Any], model: type[RecordingCreate]) -> None:
    threshold = model.multipart_threshold_bytes
    if threshold is not None:
        # Uploads above the threshold go in parts, and S3 cannot check a whole-object checksum.
        schema["not"] = {
            "required": ["size_bytes", "checksum_sha256"],
            "properties": {"size_bytes": {"minimum": threshold + 1}, "checksum_sha256": {"type": "string"}},
        }


class RecordingCreate(BaseModel):
    """The fixed part of the contract; ``recording_create_model`` narrows it to a deployment's
    settings (size, file name length, allowed types, single-upload threshold)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_single_upload_checksum_schema)
    multipart_threshold_bytes: ClassVar[int | None] = None

    filename: Filename
    content_type: ContentType
    size_bytes: Annotated[int, Field(ge=1, le=MAX_SIZE_BYTES)]
    title: Title | None = None
    metadata: Metadata = Field(default_factory=dict)
    checksum_sha256: Annotated[
        Checksum | None,
        Field(description="Base64 SHA-256 of the bytes, checked by S3; single (POST) uploads only."),
    ] = None

    _metadata_depth = field_validator("metadata", mode="before")(_metadata_limits)
    _metadata_size = field_validator("metadata")(_metadata_size)

    @field_validator("content_type")
    @classmethod
    def _lower_content_type(cls, value: str) -> str:
        return value.lower()

    @model_validator(mode="after")
    def _single_upload_checksum(self) -> RecordingCreate:
        threshold = self.multipart_threshold_bytes
        if threshold is not None and self.checksum_sha256 and self.size_bytes > threshold:
            raise ValueError(
                f"checksum_sha256 is checked by S3 for single uploads only; uploads above {threshold} "
                "bytes go in parts and cannot carry it"
            )
        return self


def _case_insensitive(literal: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in literal)


def _glob_part(part: str) -> str:
    if part == "*":
        return _MEDIA_NAME
    return "[A-Za-z0-9!#$&^_.+-]*".join(_case_insensitive(piece) for piece in part.split("*"))


def allowed_content_type_pattern(allowed: tuple[str, ...]) -> str:
    """CONTENT_TYPE_PATTERN narrowed to the configured globs (``audio/*``, ``application/pdf``)."""
    alternatives = []
    for glob in allowed:
        kind, _, subtype = glob.partition("/")
        alternatives.append(f"{_glob_part(kind)}/{_glob_part(subtype or '*')}")
    return describe_pattern(
        f"^(?:{'|'.join(alternatives)})$",
        f"a media type like 'audio/mpeg' (no parameters) that is allowed here: {', '.join(allowed)}",
    )


@lru_cache(maxsize=32)
def recording_create_model(
    *,
    max_filename_length: int,
    max_upload_bytes: int,
    allowed_content_types: tuple[str, ...],
    multipart_threshold_bytes: int,
) -> type[RecordingCreate]:
    """The create request of one deployment: its schema states the limits its settings set."""
    content_type = StringConstraints(
        min_length=3, max_length=255, pattern=allowed_content_type_pattern(allowed_content_types)
    )
    model = create_model(
        "RecordingCreate",
        __base__=RecordingCreate,
        __module__=__name__,
        filename=(
            Annotated[str, StringConstraints(min_length=1, max_length=max_filename_length, pattern=FILENAME_PATTERN)],
            ...,
        ),
        content_type=(
            Annotated[str, content_type],
            Field(description=f"A media type matching one of: {', '.join(allowed_content_types)}."),
        ),
        size_bytes=(Annotated[int, Field(ge=1, le=max_upload_bytes)], ...),
    )
    if multipart_threshold_bytes < max_upload_bytes:
        model.multipart_threshold_bytes = multipart_threshold_bytes
    return model


def _metadata_has_no_default(schema: dict[str, Any]) -> None:
    schema["properties"]["metadata"].pop("default", None)


class BrowserUpload(BaseModel):
    """An upload started by a browser client (Uppy): the size is optional, no checksum, no title."""

    filename: Filename
    content_type: ContentType
    size_bytes: Annotated[int | None, Field(ge=1, le=MAX_SIZE_BYTES)] = None
    metadata: Metadata = Field(default_factory=dict)
    title: None = None
    checksum_sha256: None = None

    _metadata_depth = field_validator("metadata", mode="before")(_metadata_limits)
    _metadata_size = field_validator("metadata")(_metadata_size)

    @field_validator("content_type")
    @classmethod
    def _lower_content_type(cls, value: str) -> str:
        return value.lower()


class RecordingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_metadata_has_no_default)

    title: Title | None = None
    # Not nullable: send {} to clear it.
    metadata: Metadata = None  # type: ignore[assignment]

    _metadata_depth = field_validator("metadata", mode="before")(_metadata_limits)
    _metadata_size = field_validator("metadata")(_metadata_size)


# The opaque page cursor is a keyset position: the last item's creation time (microseconds since
# the Unix epoch) and id. Every string of this shape is a position, so the schema is exact.
CURSOR_PATTERN = describe_pattern(
    r"^[0-9]{1,17}\.[0-9a-f]{32}$", "cursor is not valid; use next_cursor from a previous page"
)
Cursor = Annotated[str, StringConstraints(pattern=CURSOR_PATTERN)]


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
    upload_method: UploadMethod
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
