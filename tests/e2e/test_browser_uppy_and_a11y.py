"""Uppy's own AwsS3 plugin with ``companionEndpoint`` against the service, and an axe-core check."""

from __future__ import annotations

from playwright.sync_api import expect
from sqlalchemy import select

from service.core.db import session_scope
from service.recordings.models import recordings
from tests.e2e.conftest import ROOT, axe_source
from tests.e2e.test_browser_upload import sign_in

UPPY_UPLOAD = """
async ({ endpoint, threshold, partBytes, sizes }) => {
  const { Uppy, AwsS3 } = globalThis.Uppy
  const uppy = new Uppy({ autoProceed: false })
  uppy.use(AwsS3, {
    companionEndpoint: endpoint,
    shouldUseMultipart: (file) => file.size > threshold,
    getChunkSize: () => partBytes,
  })
  sizes.forEach((size, i) => {
    const bytes = new Uint8Array(size).map((_, j) => (j * 31 + i) % 251)
    uppy.addFile({ name: `uppy-${i}.wav`, type: 'audio/wav', data: new Blob([bytes], { type: 'audio/wav' }),
                   meta: { size } })
  })
  const result = await uppy.upload()
  return {
    successful: result.successful.map((f) => ({ name: f.name, key: f.response.body.key })),
    failed: result.failed.map((f) => `${f.name}: ${f.error}`),
  }
}
"""


def test_uppy_with_a_declared_size_uploads_single_and_multipart(page, live_server):
    # The size in each file's meta is optional; declared, it is pinned in the policy and checked.
    tenant = live_server.tenant("uppy")
    sign_in(page, tenant.token)
    sizes = [300 * 1024, 11 * 1024 * 1024]  # a presigned POST, and a 3-part multipart upload

    result = page.evaluate(
        UPPY_UPLOAD,
        {
            "endpoint": f"{live_server.url}/v1",
            "threshold": 5 * 1024 * 1024,
            "partBytes": 5 * 1024 * 1024,
            "sizes": sizes,
        },
    )

    assert result["failed"] == []
    assert sorted(f["name"] for f in result["successful"]) == ["uppy-0.wav", "uppy-1.wav"]
    assert all(f["key"].startswith(f"{tenant.name}/") for f in result["successful"])
    # The single upload never calls back; reading the list verifies it (read-repair).
    listed = page.request.get("/v1/recordings").json()["items"]
    assert {(r["filename"], r["size_bytes"], r["status"], r["upload_method"]) for r in listed} == {
        ("uppy-0.wav", sizes[0], "available", "POST"),
        ("uppy-1.wav", sizes[1], "available", "MULTIPART"),
    }
    with session_scope(live_server.settings) as session:
        rows = session.execute(select(recordings).where(recordings.c.owner == tenant.name)).all()
        # The client chose its parts: the service kept no plan, and verified the object's size.
        assert {(row.part_count, row.size_bytes) for row in rows} == {(None, sizes[0]), (None, sizes[1])}


def test_the_page_has_no_accessibility_violations(browser, live_server):
    # axe is injected as an inline script, which the page's CSP rightly forbids: bypass it here only.
    context = browser.new_context(base_url=live_server.url, bypass_csp=True, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        results = []
        page.goto("/")
        results.append(_axe(page))  # signed out: the sign-in form
        sign_in(page, live_server.tenant("a11y").token)
        page.get_by_label("Choose files to upload").set_input_files(
            [{"name": "phone.wav", "mimeType": "audio/wav", "buffer": b"x" * 2048}]
        )
        expect(page.locator("#recording-list li").get_by_text("available", exact=True)).to_be_visible()
        results.append(_axe(page))  # signed in, on a phone-sized screen, with an upload and a recording
        page.screenshot(path=str(ROOT / "docs" / "screenshots" / "phone.png"), full_page=True)
        # Nothing is wider than the phone's screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()
    violations = [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']]}"
        for result in results
        for v in result["violations"]
    ]
    assert violations == []


def _axe(page) -> dict:
    page.add_script_tag(content=axe_source())
    return page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")


def test_keyboard_alone_signs_in_and_reaches_the_file_picker(page, live_server):
    page.goto("/")
    expect(page.get_by_label("API key or token")).to_be_visible()
    page.keyboard.press("Tab")  # skip link
    page.keyboard.press("Tab")
    expect(page.get_by_label("API key or token")).to_be_focused()
    page.keyboard.type(live_server.tenant("keys").token)
    page.keyboard.press("Enter")
    expect(page.get_by_label("Choose files to upload")).to_be_focused()
