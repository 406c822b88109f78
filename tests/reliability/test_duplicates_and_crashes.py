"""Duplicate, late and concurrent completion signals make exactly one transition, and an upload
whose process died before ``complete`` is reconciled by a later event or ``complete``."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY

from service.core import storage as storage_module
from service.core.db import dispose_engines, session_scope
from service.core.storage import Part, Storage
from service.recordings.uploads import reconcile_key
from tests.api.uploading import MiB, complete, create, payload, put_parts, upload_single
from tests.reliability.conftest import client_for

WORKERS = 20


def _counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("recordings_uploads_total", {"outcome": outcome}) or 0.0


def _event(settings, key: str):
    """What the S3 ObjectCreated handler does for one (possibly duplicated) notification."""
    with session_scope(settings) as session:
        recording = reconcile_key(session=session, storage=Storage.from_settings(settings), key=key)
        return None if recording is None else recording.status


def _uploaded(api, key, kind: str) -> dict:
    """A recording whose bytes are in S3 and not yet completed: one POST, or three parts."""
    if kind == "single":
        return upload_single(api, key, payload(100))["recording"]
    data = payload(11 * MiB)
    recording = create(api, key, size=len(data))["recording"]
    put_parts(api, key, recording, data, [1, 2, 3])
    return recording


@pytest.mark.parametrize("kind", ["single", "multipart"])
def test_twenty_completes_and_duplicate_events_make_one_transition(settings, alice_key, transitions, kind):
    before = _counter("completed")
    with client_for(settings) as api:
        recording = _uploaded(api, alice_key, kind)
        barrier = threading.Barrier(WORKERS * 2)

        def call_complete(_):
            barrier.wait()
            return complete(api, alice_key, recording["id"])

        def deliver_event(_):
            barrier.wait()
            return _event(settings, recording["key"])

        with ThreadPoolExecutor(max_workers=WORKERS * 2) as pool:
            completes = [pool.submit(call_complete, i) for i in range(WORKERS)]
            events = [pool.submit(deliver_event, i) for i in range(WORKERS)]
            responses = [f.result() for f in completes]
            event_results = [f.result() for f in events]
        # For a multipart upload, events can only arrive once the object exists; before that they
        # see no object yet and must leave the recording pending (or see it finished).
        assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200]
        assert {r.json()["status"] for r in responses} == {"available"}
        assert set(event_results) <= {"available", "pending"} if kind == "multipart" else {"available"}
        # Late duplicates after the fact change nothing.
        assert _event(settings, recording["key"]) == "available"
        assert complete(api, alice_key, recording["id"]).json()["status"] == "available"
    assert transitions["completed"] == 1
    assert transitions["failed"] == 0
    assert _counter("completed") - before == 1


def test_late_event_after_delete_does_not_revive(settings, alice_key, transitions):
    with client_for(settings) as api:
        recording = upload_single(api, alice_key, payload(10))["recording"]
        assert complete(api, alice_key, recording["id"]).status_code == 200
        assert api.delete(f"/v1/recordings/{recording['id']}", headers=alice_key.headers).status_code == 204
    assert _event(settings, recording["key"]) == "deleted"
    assert _event(settings, "alice/00000000-0000-4000-8000-000000000000") is None
    assert transitions["completed"] == 1


def _kill_process_state(settings) -> None:
    """What a killed process loses: its pooled connections and its S3 clients."""
    dispose_engines()
    storage_module._clients.clear()


@pytest.mark.parametrize("recover_by", ["complete", "event"])
@pytest.mark.parametrize("kind", ["single", "multipart"])
def test_process_killed_between_upload_and_complete_is_reconciled(settings, alice_key, recover_by, kind):
    with client_for(settings) as api:
        recording = _uploaded(api, alice_key, kind)
    _kill_process_state(settings)
    if kind == "multipart" or recover_by == "complete":
        # A multipart object exists only once assembled: the client's retried complete does it.
        with client_for(settings) as fresh:
            response = complete(fresh, alice_key, recording["id"])
        assert response.status_code == 200, response.text
    else:
        assert _event(settings, recording["key"]) == "available"
    with client_for(settings) as fresh:
        now = fresh.get(f"/v1/recordings/{recording['id']}", headers=alice_key.headers).json()
        assert now["status"] == "available"
        assert fresh.get(f"/v1/recordings/{recording['id']}/download", headers=alice_key.headers).status_code == 200


def test_killed_after_s3_assembled_but_before_the_row_changed(settings, alice_key, transitions):
    """The process died between CompleteMultipartUpload and the UPDATE: the retry (or the event
    S3 sends for the assembled object) verifies the object that is already there."""
    data = payload(11 * MiB)
    with client_for(settings) as api:
        recording = create(api, alice_key, size=len(data))["recording"]
        etags = put_parts(api, alice_key, recording, data, [1, 2, 3])
    upload_id = recording_upload_id(settings, recording["id"])
    Storage.from_settings(settings).complete_multipart(
        key=recording["key"],
        upload_id=upload_id,
        parts=[Part(number=n, etag=etags[n]) for n in (1, 2, 3)],
    )
    _kill_process_state(settings)
    assert _event(settings, recording["key"]) == "available"
    with client_for(settings) as fresh:
        assert complete(fresh, alice_key, recording["id"]).json()["status"] == "available"
    assert transitions["completed"] == 1


def recording_upload_id(settings, recording_id: str) -> str:
    from sqlalchemy import select

    from service.recordings.models import recordings

    with session_scope(settings) as session:
        return (
            session.execute(select(recordings).where(recordings.c.id == __import__("uuid").UUID(recording_id)))
            .one()
            .upload_id
        )
