"""Pure parts of the recordings service: Content-Disposition, the content-type allow list,
page cursors."""

from urllib.parse import unquote

import pytest

from service.core.problems import ProblemError
from service.recordings.service import content_disposition, content_type_allowed, decode_cursor


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
