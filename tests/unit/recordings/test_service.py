"""Pure parts of the recordings service: Content-Disposition, the content-type allow list,
page cursors."""

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.problems import ProblemError
from service.recordings.schemas import CURSOR_PATTERN
from service.recordings.service import (
    content_disposition,
    content_type_allowed,
    decode_cursor,
    encode_cursor,
)


def test_content_disposition_is_attachment_with_ascii_fallback_and_utf8_name():
    header = content_disposition('Täst "quoted"; name.wav')
    assert header.startswith('attachment; filename="T_st _quoted__ name.wav"')
    assert unquote(header.split("filename*=UTF-8''")[1]) == 'Täst "quoted"; name.wav'


def test_content_type_allow_list_uses_wildcards():
    allowed = ["audio/*", "video/mp4"]
    assert content_type_allowed("audio/flac", allowed)
    assert content_type_allowed("video/mp4", allowed)
    assert not content_type_allowed("video/webm", allowed)
    assert not content_type_allowed("text/html", allowed)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WyJ4IiwgInkiXQ"])
def test_tampered_cursors_are_rejected(cursor):
    with pytest.raises(ProblemError) as error:
        decode_cursor(cursor)
    assert error.value.status == 422


def position(created_at: datetime, recording_id: uuid.UUID) -> SimpleNamespace:
    """A recording as encode_cursor reads it."""
    return SimpleNamespace(created_at=created_at, id=recording_id)


def test_a_cursor_names_the_creation_time_to_the_microsecond_and_the_id():
    created = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    recording_id = uuid.UUID("0123456789abcdef0123456789abcdef")
    cursor = encode_cursor(position(created, recording_id))
    assert cursor == f"{int(created.timestamp()) * 10**6 + 123456}.0123456789abcdef0123456789abcdef"
    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == (created, recording_id)


def test_a_naive_time_is_read_as_utc():
    """SQLite returns naive datetimes; they are stored in UTC and give the same cursor."""
    recording_id = uuid.uuid4()
    naive = datetime(2026, 3, 1, 12, 30, 15, 5)
    assert encode_cursor(position(naive, recording_id)) == encode_cursor(
        position(naive.replace(tzinfo=UTC), recording_id)
    )


def test_a_cursor_is_the_same_position_in_any_time_zone():
    recording_id = uuid.uuid4()
    utc = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    elsewhere = utc.astimezone(timezone(timedelta(hours=-7)))
    assert encode_cursor(position(elsewhere, recording_id)) == encode_cursor(position(utc, recording_id))


@given(
    created=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(3000, 1, 1), timezones=st.just(UTC)),
    recording_id=st.uuids(),
)
def test_every_cursor_decodes_to_its_position(created, recording_id):
    cursor = encode_cursor(position(created, recording_id))
    assert re.fullmatch(CURSOR_PATTERN, cursor)
    assert decode_cursor(cursor) == (created, recording_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "1.0123456789abcdef0123456789abcde",  # id one digit short
        "1.0123456789abcdef0123456789abcdef0",  # one digit long
        "1.0123456789ABCDEF0123456789ABCDEF",  # issued ids are lower-case
        "123456789012345678.0123456789abcdef0123456789abcdef",  # 18 digits of microseconds
        "-1.0123456789abcdef0123456789abcdef",
        ".0123456789abcdef0123456789abcdef",
        "1,0123456789abcdef0123456789abcdef",
        "1.0123456789abcdef0123456789abcdef\n",
        "1.01234567-89ab-cdef-0123-456789abcdef",
    ],
)
def test_cursors_of_another_shape_are_rejected(cursor):
    with pytest.raises(ProblemError) as error:
        decode_cursor(cursor)
    assert (error.value.status, error.value.slug) == (422, "invalid-cursor")


_TYPES = st.text(alphabet="abcAB/*?.+-[]!x\n", max_size=12)


@given(content_type=_TYPES, allowed=st.lists(_TYPES, max_size=4))
def test_allowed_content_types_match_as_each_glob_pattern_alone_would(content_type, allowed):
    import fnmatch

    expected = any(fnmatch.fnmatchcase(content_type, pattern.lower()) for pattern in allowed)
    assert content_type_allowed(content_type, allowed) is expected
