"""A client abandons its upload at every stage; the reaper leaves bucket and database consistent
and never touches an available recording."""

from __future__ import annotations

from datetime import timedelta

from service.core.clock import utcnow
from service.core.db import session_scope
from service.core.storage import Storage
from service.recordings.uploads import reap
from tests.api.uploading import MiB, complete, create, payload, post_form, put_parts, upload_single
from tests.reliability.conftest import client_for


def _versions(s3, bucket: str, key: str) -> list:
    listed = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listed.get("Versions", []) + listed.get("DeleteMarkers", []) if v["Key"] == key]


def _open_uploads(s3, bucket: str) -> set[str]:
    return {u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


def test_reaper_cleans_every_abandoned_stage_and_spares_the_rest(settings, alice_key, s3, transitions):
    bucket, tenant = settings.s3_bucket, alice_key
    data = payload(11 * MiB)
    with client_for(settings) as api:
        abandoned = {}
        abandoned["after-create-single"] = create(api, tenant, size=10)["recording"]
        abandoned["after-create-multipart"] = create(api, tenant, size=len(data))["recording"]
        mid = create(api, tenant, size=len(data))["recording"]
        put_parts(api, tenant, mid, data, [1])
        abandoned["mid-multipart"] = mid
        all_parts = create(api, tenant, size=len(data))["recording"]
        put_parts(api, tenant, all_parts, data, [1, 2, 3])
        abandoned["all-parts-no-complete"] = all_parts
        bytes_no_complete = create(api, tenant, size=10)
        post_form(bytes_no_complete["upload"], payload(10))
        abandoned["bytes-no-complete"] = bytes_no_complete["recording"]

        available = upload_single(api, tenant, payload(20))["recording"]
        assert complete(api, tenant, available["id"]).status_code == 200
        deleted = upload_single(api, tenant, payload(30))["recording"]
        assert complete(api, tenant, deleted["id"]).status_code == 200
        assert api.delete(f"/v1/recordings/{deleted['id']}", headers=tenant.headers).status_code == 204
        kept_versions = {
            r["key"]: sorted(v["VersionId"] for v in _versions(s3, bucket, r["key"])) for r in (available, deleted)
        }
        assert len(_open_uploads(s3, bucket)) == 3

        later = utcnow() + timedelta(seconds=settings.upload_ttl_seconds + 60)
        with session_scope(settings) as session:
            result = reap(session=session, storage=Storage.from_settings(settings), settings=settings, now=later)
        assert result.expired == len(abandoned)
        # A second run (or a concurrent one) finds nothing left to do.
        with session_scope(settings) as session:
            assert (
                reap(session=session, storage=Storage.from_settings(settings), settings=settings, now=later).expired
                == 0
            )
        # A recent pending upload is inside its TTL: left alone.
        fresh = create(api, tenant, size=10)["recording"]
        with session_scope(settings) as session:
            assert reap(session=session, storage=Storage.from_settings(settings), settings=settings).expired == 0

        for stage, recording in abandoned.items():
            now = api.get(f"/v1/recordings/{recording['id']}", headers=tenant.headers).json()
            assert now["status"] == "expired", stage
            assert _versions(s3, bucket, recording["key"]) == [], stage
            late = complete(api, tenant, recording["id"])
            assert late.status_code == 409, (stage, late.text)
        assert _open_uploads(s3, bucket) == set()

        # Available and deleted recordings: rows and every object version exactly as before.
        assert api.get(f"/v1/recordings/{available['id']}", headers=tenant.headers).json()["status"] == "available"
        assert api.get(f"/v1/recordings/{deleted['id']}", headers=tenant.headers).status_code == 404
        listed = api.get("/v1/recordings", params={"status": "deleted"}, headers=tenant.headers).json()["items"]
        assert deleted["id"] in {item["id"] for item in listed}
        for key, versions in kept_versions.items():
            assert sorted(v["VersionId"] for v in _versions(s3, bucket, key)) == versions
        link = api.get(f"/v1/recordings/{available['id']}/download", headers=tenant.headers)
        assert link.status_code == 200
        assert api.get(f"/v1/recordings/{fresh['id']}", headers=tenant.headers).json()["status"] == "pending"
    assert transitions["expired"] == len(abandoned)
