"""The upload lifecycle's pure parts: part planning, part numbers, verification verdicts."""

import uuid
from types import SimpleNamespace
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from service.core.problems import ProblemError
from service.core.settings import S3_MAX_OBJECT_BYTES, S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES
from service.core.storage import ObjectInfo, normalize_etag
from service.recordings.models import Status, UploadMethod
from service.recordings.uploads import (
    MAX_PART_URLS_PER_BATCH,
    PART_NUMBERS_PATTERN,
    MultipartPlan,
    Verdict,
    plan_parts,
    presign_parts,
    s3_key_for,
    verify_object,
)

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [5 * MiB + 1, 100 * MiB, 5 * 1024**3, 5 * 1024**4, 48_828 * MiB + 7])
def test_part_plan_respects_s3_limits(size):
    plan = plan_parts(size, 16 * MiB)
    assert plan.part_size >= 5 * MiB
    assert plan.part_size % MiB == 0
    assert plan.part_count <= 10_000
    assert (plan.part_count - 1) * plan.part_size < size <= plan.part_count * plan.part_size


@pytest.mark.parametrize(
    ("size", "preferred", "part_size", "part_count"),
    [
        (1, 16 * MiB, 16 * MiB, 1),
        (16 * MiB, 16 * MiB, 16 * MiB, 1),
        (16 * MiB + 1, 16 * MiB, 16 * MiB, 2),
        (100 * MiB, 16 * MiB, 16 * MiB, 7),
        # A preferred size below S3's minimum part is raised to it.
        (100 * MiB, 1 * MiB, 5 * MiB, 20),
        # Past 10,000 preferred parts, the part grows (in whole MiB) to fit in 10,000.
        (10_000 * 5 * MiB + 1, 5 * MiB, 6 * MiB, 8_334),
    ],
)
def test_part_plan_prefers_the_configured_part_size(size, preferred, part_size, part_count):
    assert plan_parts(size, preferred) == MultipartPlan(part_size=part_size, part_count=part_count)


@given(
    size=st.integers(min_value=1, max_value=S3_MAX_OBJECT_BYTES),
    preferred=st.integers(min_value=S3_MIN_PART_BYTES, max_value=S3_MAX_PART_BYTES),
)
def test_every_part_plan_covers_the_object_within_s3_limits(size, preferred):
    plan = plan_parts(size, preferred)
    assert S3_MIN_PART_BYTES <= plan.part_size <= S3_MAX_PART_BYTES
    assert 1 <= plan.part_count <= S3_MAX_PARTS
    assert (plan.part_count - 1) * plan.part_size < size <= plan.part_count * plan.part_size
    assert plan.part_size >= preferred  # never smaller than asked for


PART_NUMBERS = TypeAdapter(Annotated[str, StringConstraints(pattern=PART_NUMBERS_PATTERN)])


@pytest.mark.parametrize(
    "value",
    ["1", "9", "10", "999", "9999", "10000", "1,2,3", "3,1,2", "7,7", ",".join(["1"] * MAX_PART_URLS_PER_BATCH)],
)
def test_part_number_lists_that_are_accepted(value):
    assert PART_NUMBERS.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "01",
        "10001",
        "99999",
        "-1",
        "+1",
        "1.0",
        "1,",
        ",1",
        "1,,2",
        "1, 2",
        " 1",
        "1;2",
        "a",
        ",".join(["1"] * (MAX_PART_URLS_PER_BATCH + 1)),
    ],
)
def test_part_number_lists_that_are_refused(value):
    with pytest.raises(ValidationError):
        PART_NUMBERS.validate_python(value)


def test_the_object_key_is_the_tenant_and_the_recording_id_never_the_filename():
    recording_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert s3_key_for("alice", recording_id) == "alice/12345678-1234-5678-1234-567812345678"


@pytest.mark.parametrize("etag", ['"abc123"', "abc123", ' "abc123" ', "abc123\n"])
def test_etags_are_compared_without_quotes_or_spaces(etag):
    assert normalize_etag(etag) == "abc123"


# Verification verdicts: what S3 holds against what the recording declared.

CHECKSUM = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg="
OTHER_CHECKSUM = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


def declared(size_bytes: int | None = 10, content_type: str = "audio/wav", checksum_sha256: str | None = None):
    """A recording as verify_object reads it: the declared size, type and checksum."""
    return SimpleNamespace(size_bytes=size_bytes, content_type=content_type, checksum_sha256=checksum_sha256)


def stored(size: int = 10, content_type: str | None = "audio/wav", checksum_sha256: str | None = None) -> ObjectInfo:
    return ObjectInfo(size=size, content_type=content_type, version_id="v1", etag="e", checksum_sha256=checksum_sha256)


@pytest.mark.parametrize(
    ("recording", "info", "max_bytes"),
    [
        (declared(), stored(), S3_MAX_OBJECT_BYTES),
        # The stored content type is compared case-insensitively (the declared one is lower-case).
        (declared(), stored(content_type="Audio/WAV"), S3_MAX_OBJECT_BYTES),
        (declared(checksum_sha256=CHECKSUM), stored(checksum_sha256=CHECKSUM), S3_MAX_OBJECT_BYTES),
        # No declared checksum: whatever S3 reports is not compared.
        (declared(), stored(checksum_sha256=OTHER_CHECKSUM), S3_MAX_OBJECT_BYTES),
        # An undeclared size (a browser upload) accepts 1 byte up to the largest allowed.
        (declared(size_bytes=None), stored(size=1), 100),
        (declared(size_bytes=None), stored(size=100), 100),
    ],
)
def test_a_matching_object_is_accepted(recording, info, max_bytes):
    assert verify_object(recording, info, max_bytes) == Verdict(True)


@pytest.mark.parametrize(
    ("recording", "info", "max_bytes", "reason"),
    [
        (declared(), None, S3_MAX_OBJECT_BYTES, "No object was uploaded."),
        (declared(), stored(size=11), S3_MAX_OBJECT_BYTES, "Uploaded size 11 bytes differs from the declared 10."),
        (declared(size_bytes=None), stored(size=0), 100, "Uploaded size 0 bytes is outside 1..100 bytes."),
        (declared(size_bytes=None), stored(size=101), 100, "Uploaded size 101 bytes is outside 1..100 bytes."),
        (
            declared(),
            stored(content_type="audio/mpeg"),
            S3_MAX_OBJECT_BYTES,
            "Uploaded content type 'audio/mpeg' differs from the declared 'audio/wav'.",
        ),
        (
            declared(),
            stored(content_type=None),
            S3_MAX_OBJECT_BYTES,
            "Uploaded content type None differs from the declared 'audio/wav'.",
        ),
        (
            declared(checksum_sha256=CHECKSUM),
            stored(checksum_sha256=OTHER_CHECKSUM),
            S3_MAX_OBJECT_BYTES,
            "Uploaded content does not match the declared SHA-256 checksum.",
        ),
        (
            declared(checksum_sha256=CHECKSUM),
            stored(checksum_sha256=None),
            S3_MAX_OBJECT_BYTES,
            "Uploaded content does not match the declared SHA-256 checksum.",
        ),
    ],
)
def test_a_mismatch_is_refused_with_its_reason(recording, info, max_bytes, reason):
    assert verify_object(recording, info, max_bytes) == Verdict(False, reason)


def test_the_size_is_checked_before_the_content_type_and_the_checksum():
    recording = declared(checksum_sha256=CHECKSUM)
    verdict = verify_object(recording, stored(size=11, content_type="text/html", checksum_sha256=OTHER_CHECKSUM))
    assert verdict.reason == "Uploaded size 11 bytes differs from the declared 10."


class SigningStorage:
    """Signs part URLs without S3: the URL names the part."""

    def presign_part(self, *, key: str, upload_id: str, part_number: int) -> str:
        return f"https://s3.example/{key}?uploadId={upload_id}&partNumber={part_number}"


def open_multipart(part_count: int | None = 3) -> SimpleNamespace:
    return SimpleNamespace(
        upload_method=UploadMethod.MULTIPART.value,
        status=Status.PENDING.value,
        upload_id="u1",
        s3_key="alice/r1",
        part_count=part_count,
    )


def test_part_urls_are_signed_once_per_part_in_the_order_asked():
    urls = presign_parts(storage=SigningStorage(), recording=open_multipart(), part_numbers=[3, 1, 3])
    assert list(urls) == ["3", "1"]
    assert urls["1"] == "https://s3.example/alice/r1?uploadId=u1&partNumber=1"


def test_an_unplanned_upload_takes_any_of_s3s_part_numbers():
    urls = presign_parts(storage=SigningStorage(), recording=open_multipart(None), part_numbers=[S3_MAX_PARTS])
    assert list(urls) == [str(S3_MAX_PARTS)]


@pytest.mark.parametrize(
    ("part_numbers", "status"),
    [
        ([], 422),
        ([0], 422),
        ([S3_MAX_PARTS + 1], 422),
        ([1] * (MAX_PART_URLS_PER_BATCH + 1), 422),
        # Well formed, but beyond this upload's plan of 3 parts.
        ([4], 409),
    ],
)
def test_part_numbers_outside_the_plan_are_refused(part_numbers, status):
    with pytest.raises(ProblemError) as error:
        presign_parts(storage=SigningStorage(), recording=open_multipart(), part_numbers=part_numbers)
    assert (error.value.status, error.value.slug) == (status, "invalid-part-number")


@pytest.mark.parametrize(
    "changes",
    [
        {"upload_method": UploadMethod.POST.value},
        {"status": Status.AVAILABLE.value},
        {"upload_id": None},
    ],
)
def test_only_an_open_multipart_upload_signs_parts(changes):
    recording = open_multipart()
    vars(recording).update(changes)
    with pytest.raises(ProblemError) as error:
        presign_parts(storage=SigningStorage(), recording=recording, part_numbers=[1])
    assert error.value.status == 409
