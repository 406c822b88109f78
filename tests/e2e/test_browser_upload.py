"""The upload page in real Chromium: sign in, upload single and multipart files, resume, download."""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect
from sqlalchemy import func, select

from service.core.db import session_scope
from service.recordings.models import recordings
from tests.conftest import MiB

SMALL = 256 * 1024  # one presigned POST
LARGE = 16 * MiB  # four 5 MiB parts (5 + 5 + 5 + 1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sign_in(page, token: str) -> None:
    page.goto("/")
    page.get_by_label("API key or token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("banner")).to_contain_text("Signed in as")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def pick(page, *files: tuple[str, bytes]) -> None:
    page.get_by_label("Choose files to upload").set_input_files(
        [{"name": name, "mimeType": "audio/wav", "buffer": data} for name, data in files]
    )


def upload_row(page, name: str):
    return page.locator("#uploads li", has=page.get_by_text(name, exact=True))


def recording_row(page, name: str):
    return page.locator("#recording-list li", has=page.get_by_text(name, exact=True))


def download(page, name: str) -> bytes:
    with page.expect_download() as info:
        recording_row(page, name).get_by_role("link", name=f"Download {name}").click()
    return open(info.value.path(), "rb").read()


def test_page_uploads_a_small_and_a_multipart_file_and_downloads_them(page, live_server, artifacts):
    small, large = os.urandom(SMALL), os.urandom(LARGE)
    sign_in(page, live_server.tenant("page").token)
    part_puts = []
    page.on("request", lambda r: r.method == "PUT" and "partNumber=" in r.url and part_puts.append(r.url))

    pick(page, ("voice-memo.wav", small), ("concert.wav", large))

    for name in ("voice-memo.wav", "concert.wav"):
        expect(upload_row(page, name).get_by_text("Uploaded and verified")).to_be_visible()
        expect(recording_row(page, name).get_by_text("available", exact=True)).to_be_visible()
    expect(upload_row(page, "concert.wav")).to_contain_text("in 4 parts")
    expect(upload_row(page, "voice-memo.wav")).to_contain_text("single upload")
    assert len(part_puts) == 4
    expect(page.get_by_role("status")).to_have_text("2 files uploaded.")
    page.screenshot(path=str(artifacts / "upload-page.png"), full_page=True)

    assert sha256(download(page, "voice-memo.wav")) == sha256(small)
    assert sha256(download(page, "concert.wav")) == sha256(large)


def test_interrupted_multipart_upload_resumes_without_resending_parts(page, live_server):
    data = os.urandom(LARGE)
    sign_in(page, live_server.tenant("resume").token)
    sent = Counter()
    listed = []

    def part_number(url: str) -> int:
        return int(parse_qs(urlsplit(url).query)["partNumber"][0])

    page.on("request", lambda r: r.method == "PUT" and "partNumber=" in r.url and sent.update([part_number(r.url)]))
    page.on("request", lambda r: re.search(r"/v1/s3/multipart/[^/?]+\?key=", r.url) and listed.append(r.method))
    # The connection drops while part 3 is on its way (and on every retry Uppy makes).
    page.route(re.compile(r".*partNumber=3.*"), lambda route: route.abort("connectionreset"))

    pick(page, ("interview.wav", data))
    row = upload_row(page, "interview.wav")
    expect(row.get_by_text("Upload failed")).to_be_visible(timeout=30_000)
    assert sent[1] == 1
    assert sent[2] == 1
    assert sent[4] == 0

    page.unroute(re.compile(r".*partNumber=3.*"))
    row.get_by_role("button", name="Retry interview.wav").click()

    expect(row.get_by_text("Uploaded and verified")).to_be_visible()
    expect(recording_row(page, "interview.wav").get_by_text("available", exact=True)).to_be_visible()
    assert "GET" in listed  # Uppy asked the service which parts S3 already holds
    assert (sent[1], sent[2]) == (1, 1), f"parts re-sent after resuming: {dict(sent)}"
    assert sent[4] == 1
    assert sha256(download(page, "interview.wav")) == sha256(data)


def test_wrong_token_shows_a_clear_error_and_leaves_nothing_pending(page, live_server):
    with session_scope(live_server.settings) as session:
        before = session.scalar(select(func.count()).select_from(recordings))
    page.goto("/")
    page.get_by_label("API key or token").fill("rk_000000000000_not-a-real-key")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text(
        "Sign-in failed: The credentials are invalid, expired or revoked."
    )
    expect(page.get_by_label("API key or token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Choose files to upload")).to_be_hidden()
    with session_scope(live_server.settings) as session:
        assert session.scalar(select(func.count()).select_from(recordings)) == before


def test_delete_removes_a_recording_from_the_list(page, live_server):
    sign_in(page, live_server.tenant("delete").token)
    pick(page, ("draft.wav", os.urandom(4096)))
    expect(recording_row(page, "draft.wav").get_by_text("available", exact=True)).to_be_visible()

    recording_row(page, "draft.wav").get_by_role("button", name="Delete draft.wav").click()

    expect(page.get_by_role("status")).to_contain_text("Deleted draft.wav.")
    expect(recording_row(page, "draft.wav")).to_have_count(0)


def test_signing_out_ends_the_session(page, live_server):
    sign_in(page, live_server.tenant("signout").token)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key or token")).to_be_visible()
    assert page.request.get("/v1/recordings").status == 401
    page.reload()
    expect(page.get_by_label("API key or token")).to_be_visible()
