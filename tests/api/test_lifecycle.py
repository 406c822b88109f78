"""Concurrency of completes, and the reaper of abandoned uploads."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from service.core.clock import utcnow
from service.core.db import session_scope
from service.core.storage import Storage
from service.recordings.uploads import reap
from tests.api.uploading import MiB, complete, create, payload, put_parts, upload_single


@pytest.fixture
def transitions(monkeypatch):
    recorded = Counter()
    monkeypatch.setattr(
        "service.observability.metrics.domain.record_upload", lambda outcome: recorded.update([outcome])
    )
    return recorded


def test_concurrent_completes_make_exactly_one_transition(client, alice, transitions):
    data = payload(12 * MiB)
    recording = create(client, alice, size=len(data))["recording"]
    put_parts(client, alice, recording, data, [1, 2, 3])
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda _: complete(client, alice, recording["id"]), range(10)))
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses if r.status_code != 200]
    assert {r.json()["status"] for r in responses} == {"available"}
    assert transitions["completed"] == 1
    assert transitions["failed"] == 0


def test_concurrent_completes_of_a_bad_upload_fail_once(client, alice, transitions):
    created = create(client, alice, size=100)
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: complete(client, alice, created["recording"]["id"]), range(8)))
    assert {r.status_code for r in responses} <= {409, 422}
    assert transitions["failed"] == 1


def _age(settings, recording_id: str, hours: int) -> None:
    from sqlalchemy import update

    from service.recordings.models import recordings

    with session_scope(settings) as session:
        session.execute(
            update(recordings)
            .where(recordings.c.id == recording_id)
            .values(created_at=utcnow() - timedelta(hours=hours))
        )
        session.commit()


def _reap(settings):
    with session_scope(settings) as session:
        return reap(session=session, storage=Storage.from_settings(settings), settings=settings)


def test_reaper_expires_stale_uploads_and_removes_their_bytes(client, alice, settings, s3, transitions):
    stale_single = upload_single(client, alice, payload(100))["recording"]
    stale_multi = create(client, alice, size=11 * MiB)["recording"]
    put_parts(client, alice, stale_multi, payload(11 * MiB), [1])
    fresh = create(client, alice, size=10)["recording"]
    done = upload_single(client, alice, payload(10))["recording"]
    assert complete(client, alice, done["id"]).status_code == 200
    for recording in (stale_single, stale_multi, done):
        _age(settings, recording["id"], hours=48)

    result = _reap(settings)
    assert result.expired == 2

    def status(rid):
        return client.get(f"/v1/recordings/{rid}", headers=alice.headers).json()["status"]

    assert status(stale_single["id"]) == "expired"
    assert status(stale_multi["id"]) == "expired"
    assert status(fresh["id"]) == "pending"
    assert status(done["id"]) == "available"
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")
    keys = {v["Key"] for v in s3.list_object_versions(Bucket=settings.s3_bucket).get("Versions", [])}
    assert keys == {done["key"]}, "only the available recording's object remains"
    assert transitions["expired"] == 2
    # Idempotent: a second run finds nothing more to do.
    assert _reap(settings).expired == 0


def test_concurrent_reapers_expire_each_upload_once(client, alice, settings, transitions):
    ids = [create(client, alice, size=10)["recording"]["id"] for _ in range(6)]
    for rid in ids:
        _age(settings, rid, hours=48)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: _reap(settings), range(3)))
    assert sum(r.expired for r in results) == 6
    assert transitions["expired"] == 6


def test_complete_after_expiry_is_conflict(client, alice, settings):
    created = upload_single(client, alice, payload(10))["recording"]
    _age(settings, created["id"], hours=48)
    _reap(settings)
    response = complete(client, alice, created["id"])
    assert response.status_code == 409
