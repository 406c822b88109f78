"""Nothing untracked stays in the bucket: bytes that reach a recording's key through a form that
was still valid after the recording settled are removed by the S3 event handler and the reaper,
and restore never leaves S3 and the database disagreeing."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from service.core.clock import utcnow
from service.core.db import session_scope
from service.core.storage import Storage
from service.recordings.uploads import reap
from tests.api.uploading import complete, create, payload, post_form
from tests.handlers.test_s3_events import s3_event, stored_status
from tests.transports import invoke


def notify_version(settings, key: str, version_id: str | None) -> dict:
    from handlers.s3_events import handler

    event = s3_event(settings, key)
    event["Records"][0]["s3"]["object"]["versionId"] = version_id
    return invoke(handler, event)


def versions(s3, settings, key: str) -> tuple[list[str], list[str]]:
    listed = s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=key)
    return (
        [v["VersionId"] for v in listed.get("Versions", []) if v["Key"] == key],
        [m["VersionId"] for m in listed.get("DeleteMarkers", []) if m["Key"] == key],
    )


def recorded_version(settings, rid: str) -> str:
    from sqlalchemy import select

    from service.recordings.models import recordings

    with session_scope(settings) as session:
        return session.execute(select(recordings).where(recordings.c.id == rid)).one().s3_version_id


def download(api, tenant, rid: str) -> bytes:
    link = api.get(f"/v1/recordings/{rid}/download", headers=tenant.headers)
    assert link.status_code == 200, link.text
    return httpx.get(link.json()["url"]).content


def available_with_form(api, alice, data: bytes) -> tuple[dict, dict]:
    created = create(api, alice, size=len(data))
    post_form(created["upload"], data)
    assert complete(api, alice, created["recording"]["id"]).status_code == 200
    return created["recording"], created["upload"]


def reap_after_forms_expired(settings) -> int:
    later = utcnow() + timedelta(seconds=settings.presign_expires_seconds + 1)
    with session_scope(settings) as session:
        return reap(session=session, storage=Storage.from_settings(settings), settings=settings, now=later).swept


def test_a_second_post_to_an_available_recording_is_removed_by_the_event(handler_settings, api, alice, s3):
    data, other = payload(64), payload(64)
    recording, form = available_with_form(api, alice, data)
    post_form(form, other)  # the form is still valid: S3 stores a second version
    stray = s3.head_object(Bucket=handler_settings.s3_bucket, Key=recording["key"])["VersionId"]

    assert notify_version(handler_settings, recording["key"], stray) == {"available": 1}

    assert versions(s3, handler_settings, recording["key"]) == (
        [recorded_version(handler_settings, recording["id"])],
        [],
    )
    assert download(api, alice, recording["id"]) == data


def test_the_event_for_the_recorded_version_changes_nothing(handler_settings, api, alice, s3):
    recording, _ = available_with_form(api, alice, payload(64))
    kept = recorded_version(handler_settings, recording["id"])
    assert notify_version(handler_settings, recording["key"], kept) == {"available": 1}
    assert versions(s3, handler_settings, recording["key"]) == ([kept], [])


@pytest.mark.parametrize("how", ["failed", "deleted-before-upload"])
def test_bytes_for_a_recording_that_stopped_taking_uploads_are_removed(handler_settings, api, alice, s3, how):
    data = payload(100)
    created = create(api, alice, size=len(data))
    rid, key = created["recording"]["id"], created["recording"]["key"]
    if how == "failed":
        assert complete(api, alice, rid).status_code == 409  # nothing uploaded yet: failed
    else:
        assert api.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
    post_form(created["upload"], data)
    version = s3.head_object(Bucket=handler_settings.s3_bucket, Key=key)["VersionId"]

    notify_version(handler_settings, key, version)

    assert versions(s3, handler_settings, key) == ([], [])
    assert stored_status(handler_settings, rid) == ("failed" if how == "failed" else "deleted")


def test_bytes_on_top_of_a_deleted_recording_go_and_it_stays_restorable(handler_settings, api, alice, s3):
    data = payload(64)
    recording, form = available_with_form(api, alice, data)
    assert api.delete(f"/v1/recordings/{recording['id']}", headers=alice.headers).status_code == 204
    post_form(form, payload(64))  # lands above the delete marker and would be served as current
    stray = s3.head_object(Bucket=handler_settings.s3_bucket, Key=recording["key"])["VersionId"]

    notify_version(handler_settings, recording["key"], stray)

    kept, markers = versions(s3, handler_settings, recording["key"])
    assert kept == [recorded_version(handler_settings, recording["id"])]
    assert len(markers) == 1  # still deleted in S3 as in the database
    assert stored_status(handler_settings, recording["id"]) == "deleted"
    assert api.post(f"/v1/recordings/{recording['id']}/restore", headers=alice.headers).status_code == 200
    assert download(api, alice, recording["id"]) == data


def test_the_reaper_sweeps_keys_once_their_forms_expired(handler_settings, api, alice, s3):
    data = payload(64)
    available, form = available_with_form(api, alice, data)
    post_form(form, payload(64))
    failed = create(api, alice, size=10)
    assert complete(api, alice, failed["recording"]["id"]).status_code == 409  # nothing there yet: failed
    post_form(failed["upload"], payload(10))  # then the bytes arrive, and no event reports them

    assert reap_after_forms_expired(handler_settings) == 2

    assert versions(s3, handler_settings, available["key"])[0] == [recorded_version(handler_settings, available["id"])]
    assert download(api, alice, available["id"]) == data
    assert versions(s3, handler_settings, failed["recording"]["key"]) == ([], [])
    assert stored_status(handler_settings, failed["recording"]["id"]) == "failed"
    assert reap_after_forms_expired(handler_settings) == 0  # each key is swept once


def test_a_refused_restore_leaves_s3_deleted(handler_settings, api, alice, s3):
    recording, _ = available_with_form(api, alice, payload(64))
    rid, key = recording["id"], recording["key"]
    api.delete(f"/v1/recordings/{rid}", headers=alice.headers)
    api.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    api.delete(f"/v1/recordings/{rid}", headers=alice.headers)
    with session_scope(handler_settings) as session:
        from sqlalchemy import update

        from service.recordings.models import recordings

        # Past the retention window: restore must refuse before touching S3.
        session.execute(
            update(recordings).where(recordings.c.id == rid).values(deleted_at=utcnow() - timedelta(days=365))
        )
        session.commit()
    before = versions(s3, handler_settings, key)

    assert api.post(f"/v1/recordings/{rid}/restore", headers=alice.headers).status_code == 409

    assert versions(s3, handler_settings, key) == before
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=handler_settings.s3_bucket, Key=key)


def test_a_restore_the_database_cannot_record_puts_the_delete_marker_back(
    handler_settings, api, alice, s3, monkeypatch
):
    from sqlalchemy import Connection

    recording, _ = available_with_form(api, alice, payload(64))
    rid, key = recording["id"], recording["key"]
    api.delete(f"/v1/recordings/{rid}", headers=alice.headers)

    def failing_commit(self):
        raise RuntimeError("database went away")

    # The key was verified moments ago (cached), so restore's commit is the only one in the request.
    monkeypatch.setattr(Connection, "commit", failing_commit)
    with pytest.raises(RuntimeError):
        api.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    monkeypatch.undo()

    assert stored_status(handler_settings, rid) == "deleted"
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket=handler_settings.s3_bucket, Key=key)  # deleted in S3 too
