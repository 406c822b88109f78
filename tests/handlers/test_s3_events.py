"""S3 ObjectCreated notifications reconcile uploads: at least once, in any order, idempotent."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from tests.api.uploading import complete, create, payload, upload_single
from tests.conftest import new_tenant
from tests.transports import invoke, load_event


def s3_event(settings, *keys: str, event_name: str = "ObjectCreated:Post", bucket: str | None = None) -> dict:
    """The recorded notification, one record per key, keys URL-encoded as S3 sends them."""
    template = load_event("s3-object-created.json")["Records"][0]
    records = []
    for key in keys:
        record = load_event("s3-object-created.json")["Records"][0] | {"eventName": event_name}
        record["s3"]["bucket"]["name"] = bucket or settings.s3_bucket
        record["s3"]["object"]["key"] = quote_plus(key, safe="/")
        records.append(record)
    assert template["eventSource"] == "aws:s3"
    return {"Records": records}


def notify(settings, *keys: str, **options) -> dict:
    from handlers.s3_events import handler

    return invoke(handler, s3_event(settings, *keys, **options))


def stored_status(settings, rid: str) -> str:
    """The row as stored (reading through the API may verify a pending upload on its own)."""
    from sqlalchemy import select

    from service.core.db import session_scope
    from service.recordings.models import recordings

    with session_scope(settings) as session:
        return session.execute(select(recordings).where(recordings.c.id == rid)).one().status


def status(api, tenant, rid: str) -> dict:
    response = api.get(f"/v1/recordings/{rid}", headers=tenant.headers)
    assert response.status_code == 200
    return response.json()


def test_first_event_completes_the_upload(handler_settings, api, alice, emf):
    emf()
    recording = upload_single(api, alice, payload(2048))["recording"]

    assert notify(handler_settings, recording["key"]) == {"available": 1}

    assert status(api, alice, recording["id"])["status"] == "available"
    metrics = emf()
    assert metrics["UploadsCompleted"] == 1
    assert metrics["VerificationLatency"] >= 0


def test_duplicate_and_late_events_change_nothing(handler_settings, api, alice, emf):
    recording = upload_single(api, alice, payload(100))["recording"]
    notify(handler_settings, recording["key"])
    first = status(api, alice, recording["id"])
    emf()

    # GIVEN the upload is already available WHEN the same event arrives again, and `complete` too
    assert notify(handler_settings, recording["key"]) == {"available": 1}
    assert complete(api, alice, recording["id"]).status_code == 200

    again = status(api, alice, recording["id"])
    assert again == first
    assert "UploadsCompleted" not in emf()


def test_event_after_a_failed_complete_keeps_it_failed(handler_settings, api, alice, s3):
    created = create(api, alice, size=100)["recording"]
    assert complete(api, alice, created["id"]).status_code in (409, 422)  # nothing uploaded yet
    s3.put_object(Bucket=handler_settings.s3_bucket, Key=created["key"], Body=payload(100), ContentType="audio/wav")

    assert notify(handler_settings, created["key"]) == {"failed": 1}
    assert status(api, alice, created["id"])["status"] == "failed"


def test_wrong_size_fails_the_upload_and_removes_the_object(handler_settings, api, alice, s3, emf):
    created = create(api, alice, size=100)["recording"]
    # A writer that bypassed the presigned policy (e.g. a leaked credential) stored other bytes.
    s3.put_object(Bucket=handler_settings.s3_bucket, Key=created["key"], Body=payload(99), ContentType="audio/wav")
    emf()

    assert notify(handler_settings, created["key"]) == {"failed": 1}

    body = status(api, alice, created["id"])
    assert body["status"] == "failed"
    versions = s3.list_object_versions(Bucket=handler_settings.s3_bucket, Prefix=created["key"])
    assert not versions.get("Versions")
    assert not versions.get("DeleteMarkers")
    assert emf()["UploadsFailed"] == 1


def test_unknown_key_is_counted_not_an_error(handler_settings, emf):
    emf()
    assert notify(handler_settings, "nobody/00000000-0000-0000-0000-000000000000") == {"unknown": 1}
    assert emf()["UnknownObjects"] == 1


def test_url_encoded_keys_are_decoded(handler_settings, api):
    tenant = new_tenant(handler_settings, "studio+one@example.com")
    recording = upload_single(api, tenant, payload(10))["recording"]
    assert "%2B" in s3_event(handler_settings, recording["key"])["Records"][0]["s3"]["object"]["key"]

    assert notify(handler_settings, recording["key"]) == {"available": 1}
    assert status(api, tenant, recording["id"])["status"] == "available"


def test_batch_with_several_records(handler_settings, api, alice, bob, s3):
    good = [upload_single(api, tenant, payload(64))["recording"] for tenant in (alice, bob)]
    bad = create(api, alice, size=10)["recording"]
    s3.put_object(Bucket=handler_settings.s3_bucket, Key=bad["key"], Body=b"x", ContentType="audio/wav")
    keys = [good[0]["key"], bad["key"], "ghost/1", good[1]["key"], good[0]["key"]]

    assert notify(handler_settings, *keys) == {"available": 3, "failed": 1, "unknown": 1}

    assert status(api, alice, good[0]["id"])["status"] == "available"
    assert status(api, bob, good[1]["id"])["status"] == "available"
    assert status(api, alice, bad["id"])["status"] == "failed"


@pytest.mark.parametrize(("event_name", "bucket"), [("ObjectRemoved:Delete", None), ("ObjectCreated:Put", "other")])
def test_other_events_and_buckets_are_ignored(handler_settings, api, alice, event_name, bucket):
    recording = upload_single(api, alice, payload(10))["recording"]
    assert notify(handler_settings, recording["key"], event_name=event_name, bucket=bucket) == {"ignored": 1}
    assert stored_status(handler_settings, recording["id"]) == "pending"


def test_a_record_that_cannot_be_checked_fails_the_invocation_for_a_retry(handler_settings, api, alice, monkeypatch):
    recording = upload_single(api, alice, payload(10))["recording"]
    from service.core.storage import Storage, StorageUnavailable

    def unavailable(self, **_):
        raise StorageUnavailable()

    with monkeypatch.context() as patched:
        patched.setattr(Storage, "head", unavailable)
        with pytest.raises(RuntimeError, match="retry"):
            notify(handler_settings, recording["key"], "ghost/2")
    # The retry (same event) completes it.
    assert notify(handler_settings, recording["key"])["available"] == 1
