"""Stock ``@uppy/aws-s3`` (the vendored Uppy bundle) configured as its own docs show: nothing but
``companionEndpoint``, then the common variations. Each file's bytes are hashed in the browser and
compared with what the recording's download serves."""

from __future__ import annotations

import hashlib
import re

import httpx
import pytest

from tests.conftest import MiB
from tests.e2e.test_browser_upload import sign_in

KiB = 1024

# Builds an Uppy with AwsS3 from plain options (functions cannot cross into the page), adds
# files of random bytes, and keeps everything on globalThis for the steps that follow.
SETUP = """
async ({ endpoint, options, sizes }) => {
  const { Uppy, AwsS3 } = globalThis.Uppy
  const plugin = { companionEndpoint: endpoint }
  if (options.multipart !== undefined) plugin.shouldUseMultipart = options.multipart
  if (options.threshold !== undefined) plugin.shouldUseMultipart = (file) => file.size > options.threshold
  if (options.chunk !== undefined) plugin.getChunkSize = () => options.chunk
  const uppy = new Uppy().use(AwsS3, plugin)
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('')
  const state = { uppy, hashes: {}, parts: {}, errors: [] }
  uppy.on('s3-multipart:part-uploaded', (file) => { state.parts[file.name] = (state.parts[file.name] || 0) + 1 })
  uppy.on('upload-error', (file, error) => state.errors.push(`${file.name}: ${error.message}`))
  for (const [i, size] of sizes.entries()) {
    const bytes = new Uint8Array(size)
    for (let at = 0; at < size; at += 65536) crypto.getRandomValues(bytes.subarray(at, Math.min(size, at + 65536)))
    const name = `take-${i}-${size}.wav`
    state.hashes[name] = hex(await crypto.subtle.digest('SHA-256', bytes))
    uppy.addFile({ name, type: 'audio/wav', data: new Blob([bytes], { type: 'audio/wav' }) })
  }
  globalThis.uppyUnderTest = state
}
"""

UPLOAD = """
async () => {
  const state = globalThis.uppyUnderTest
  const result = await state.uppy.upload()
  return { successful: result.successful.map((f) => f.name), failed: result.failed.map((f) => f.name),
           hashes: state.hashes, parts: state.parts, errors: state.errors }
}
"""


def uppy(page, live_server, options: dict, sizes: list[int]) -> None:
    page.evaluate(SETUP, {"endpoint": f"{live_server.url}/v1", "options": options, "sizes": sizes})


def recordings(page) -> dict[str, dict]:
    listed = page.request.get("/v1/recordings?limit=100")
    assert listed.ok, listed.text()
    return {item["filename"]: item for item in listed.json()["items"]}


def assert_intact(page, hashes: dict[str, str]) -> dict[str, dict]:
    """Every file is an available recording of its own size whose download has the same bytes."""
    found = recordings(page)
    assert set(found) == set(hashes)
    for name, recording in found.items():
        assert recording["status"] == "available", (name, recording["failure_reason"])
        link = page.request.get(f"/v1/recordings/{recording['id']}/download").json()["url"]
        data = httpx.get(link, timeout=60).content
        assert len(data) == recording["size_bytes"]
        assert hashlib.sha256(data).hexdigest() == hashes[name], name
    return found


CONFIGURATIONS = {
    # Uppy's defaults: multipart above 100 MiB, parts of max(5 MiB, size / 10,000).
    "defaults": ({}, [300 * KiB, 12 * MiB, 101 * MiB]),
    # Multipart always: Uppy still sends files of 5 MiB or less in one POST.
    "multipart-always": ({"multipart": True}, [300 * KiB, 16 * MiB]),
    "custom-threshold": ({"threshold": 6 * MiB}, [5 * MiB + 512 * KiB, 7 * MiB]),
    "custom-chunk-size": ({"multipart": True, "chunk": 7 * MiB}, [20 * MiB]),
}
EXPECTED = {
    "defaults": {"POST": 2, "MULTIPART": 1},
    "multipart-always": {"POST": 1, "MULTIPART": 1},
    "custom-threshold": {"POST": 1, "MULTIPART": 1},
    "custom-chunk-size": {"MULTIPART": 1},
}
PARTS = {
    "defaults": {"take-2-105906176.wav": 21},  # 101 MiB in parts of 5 MiB (the last 1 MiB)
    "multipart-always": {"take-1-16777216.wav": 4},
    "custom-threshold": {"take-1-7340032.wav": 2},
    "custom-chunk-size": {"take-0-20971520.wav": 3},  # 7 + 7 + 6 MiB
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_stock_uppy_configuration(page, live_server, name):
    options, sizes = CONFIGURATIONS[name]
    sign_in(page, live_server.tenant(f"uppy-{name}").token)
    uppy(page, live_server, options, sizes)

    result = page.evaluate(UPLOAD)

    assert result["failed"] == []
    assert result["errors"] == []
    assert sorted(result["successful"]) == sorted(result["hashes"])
    found = assert_intact(page, result["hashes"])
    methods: dict[str, int] = {}
    for recording in found.values():
        methods[recording["upload_method"]] = methods.get(recording["upload_method"], 0) + 1
    assert methods == EXPECTED[name]
    assert result["parts"] == PARTS[name]


def test_a_multipart_upload_that_fails_midway_resumes_with_retry(page, live_server):
    sign_in(page, live_server.tenant("uppy-retry").token)
    uppy(page, live_server, {"multipart": True}, [16 * MiB])
    puts: list[str] = []
    failed_once: list[str] = []

    def cut_part_three(route):
        # Uppy retries a failed request three times: the connection drops on all four tries.
        if len(failed_once) < 4:
            failed_once.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.on("request", lambda r: r.method == "PUT" and "partNumber=" in r.url and puts.append(r.url))
    page.route(re.compile(r"[?&]partNumber=3(&|$)"), cut_part_three)

    first = page.evaluate(UPLOAD)
    assert first["successful"] == []
    assert len(first["failed"]) == 1
    assert first["parts"] == {"take-0-16777216.wav": 2}
    (pending,) = recordings(page).values()
    assert pending["status"] == "pending"

    retried = page.evaluate(
        """async () => {
          const state = globalThis.uppyUnderTest
          const [file] = state.uppy.getFiles()
          const result = await state.uppy.retryUpload(file.id)
          return { successful: result.successful.map((f) => f.name), parts: state.parts }
        }"""
    )

    assert retried["successful"] == ["take-0-16777216.wav"]
    first_two = [url for url in puts if re.search(r"[?&]partNumber=[12](&|$)", url)]
    assert len(first_two) == 2  # the parts S3 had were not sent again
    assert_intact(page, first["hashes"])


def test_an_aborted_multipart_upload_is_removed_and_the_file_uploads_again(page, live_server):
    sign_in(page, live_server.tenant("uppy-abort").token)
    uppy(page, live_server, {"multipart": True}, [16 * MiB])
    aborted = page.evaluate(
        """async () => {
          const state = globalThis.uppyUnderTest
          const [file] = state.uppy.getFiles()
          const removed = new Promise((resolve) => {
            state.uppy.on('s3-multipart:part-uploaded', () => { state.uppy.removeFile(file.id); resolve() })
          })
          state.uppy.upload()
          await removed
          // Give the abort request a moment to reach the service before looking.
          for (let i = 0; i < 50; i++) {
            const listed = await (await fetch('/v1/recordings?status=deleted')).json()
            if (listed.items.length) return listed.items.map((r) => r.status)
            await new Promise((r) => setTimeout(r, 100))
          }
          return []
        }"""
    )
    assert aborted == ["deleted"]  # DELETE /s3/multipart/{id}: the upload and its recording are gone
    assert recordings(page) == {}

    uppy(page, live_server, {"multipart": True}, [16 * MiB])
    again = page.evaluate(UPLOAD)
    assert again["failed"] == []
    assert_intact(page, again["hashes"])
