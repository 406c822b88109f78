"""The recordings list on the page: play in place, rename, delete and restore, page through a long
list, see why an upload failed; with the keyboard alone, and with no axe-core violations.
The screenshots in the README come from here (docs/screenshots/)."""

from __future__ import annotations

import io
import math
import struct
import wave

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT, axe_source
from tests.e2e.test_browser_upload import pick, recording_row, sign_in

SCREENSHOTS = ROOT / "docs" / "screenshots"


def tone(seconds: float = 1.0, rate: int = 8000) -> bytes:
    """A real WAV file (a 440 Hz tone), so the browser can decode and play it."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return buffer.getvalue()


def press_tab_until(page, locator, limit: int = 60) -> None:
    """Move focus with Tab alone until ``locator`` has it (fails if it never does)."""
    for _ in range(limit):
        if locator.evaluate("(node) => node === document.activeElement"):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {locator}")


def axe_violations(page) -> list[str]:
    page.add_script_tag(content=axe_source())
    result = page.evaluate("async () => await axe.run(document, { resultTypes: ['violations'] })")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']]}" for v in result["violations"]
    ]


def test_keyboard_alone_plays_renames_deletes_and_restores(browser, live_server):
    # axe is injected as an inline script, which the page's CSP forbids: bypass it in this test only.
    context = browser.new_context(base_url=live_server.url, bypass_csp=True, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        tenant = live_server.tenant("keyboard")
        violations = []
        page.goto("/")
        violations += axe_violations(page)
        sign_in(page, tenant.token)
        pick(page, ("morning-take.wav", tone()), ("interview.wav", tone(0.5)))
        row = recording_row(page, "morning-take.wav")
        expect(row.get_by_text("available", exact=True)).to_be_visible()
        expect(recording_row(page, "interview.wav").get_by_text("available", exact=True)).to_be_visible()

        # Play in place.
        play = row.get_by_role("button", name="Play morning-take.wav")
        press_tab_until(page, play)
        page.keyboard.press("Enter")
        player = row.get_by_label("Player for morning-take.wav", exact=True)
        expect(player).to_be_focused()
        page.wait_for_function(
            "() => { const a = document.querySelector('audio'); return a && a.readyState >= 1 && a.duration > 0.9 }"
        )
        src = player.get_attribute("src")
        served = httpx.get(src)
        assert served.headers["content-type"] == "audio/wav"
        assert served.headers["content-disposition"].startswith("inline;")
        violations += axe_violations(page)
        page.screenshot(path=str(SCREENSHOTS / "recordings.png"), full_page=True)

        # Rename.
        rename = row.get_by_role("button", name="Rename morning-take.wav")
        press_tab_until(page, rename)
        page.keyboard.press("Enter")
        title = row.get_by_label("New title for morning-take.wav")
        expect(title).to_be_focused()
        violations += axe_violations(page)
        page.keyboard.type("Morning session")
        page.keyboard.press("Enter")
        renamed = recording_row(page, "Morning session")
        expect(renamed.get_by_role("button", name="Rename Morning session")).to_be_focused()

        # Delete, then find it among the deleted recordings and restore it.
        delete = renamed.get_by_role("button", name="Delete Morning session")
        press_tab_until(page, delete)
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Deleted Morning session.")
        expect(recording_row(page, "Morning session")).to_have_count(0)
        press_tab_until(page, page.get_by_role("button", name="Show deleted recordings"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Deleted recordings")).to_be_visible()
        restore = recording_row(page, "Morning session").get_by_role("button", name="Restore Morning session")
        violations += axe_violations(page)
        page.screenshot(path=str(SCREENSHOTS / "deleted.png"), full_page=True)
        press_tab_until(page, restore)
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("Restored Morning session.")
        # Focus is back on the toggle: Enter shows the current recordings again.
        expect(page.get_by_role("button", name="Show current recordings")).to_be_focused()
        page.keyboard.press("Enter")
        expect(recording_row(page, "Morning session").get_by_text("available", exact=True)).to_be_visible()
        assert violations == []
    finally:
        context.close()


def test_a_long_list_pages_and_failures_say_why(page, live_server):
    tenant = live_server.tenant("paging")
    body = {"content_type": "audio/wav", "size_bytes": 10}
    for i in range(22):
        created = httpx.post(
            f"{live_server.url}/v1/recordings", json={**body, "filename": f"take-{i:02d}.wav"}, headers=tenant.headers
        )
        assert created.status_code == 201
    failed = httpx.post(
        f"{live_server.url}/v1/recordings", json={**body, "filename": "broken.wav"}, headers=tenant.headers
    ).json()["recording"]
    # Completing with nothing uploaded fails it, with a reason.
    assert (
        httpx.post(f"{live_server.url}/v1/recordings/{failed['id']}/complete", headers=tenant.headers).status_code
        == 422
    )

    sign_in(page, tenant.token)
    expect(recording_row(page, "broken.wav")).to_contain_text("Why it failed: No object was uploaded.")
    expect(page.locator("#recording-list li")).to_have_count(20)
    page.get_by_role("button", name="Show more recordings").click()
    expect(page.locator("#recording-list li")).to_have_count(23)
    expect(page.get_by_role("button", name="Show more recordings")).to_be_hidden()
    expect(recording_row(page, "take-00.wav")).to_be_visible()
