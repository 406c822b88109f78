"""The whole upload lifecycle against S3 that enforces IAM, with each piece of the service holding
exactly the S3 statements CDK synthesizes for the role that runs it in AWS.

The HTTP API runs once as the API function's role and once as the EC2 instance role; the S3
event handler, the reaper and the host commands run as their own roles. Bytes go through the
presigned URLs the API signs, so S3 authorizes them as the signing role too.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from botocore.exceptions import ClientError
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from service.core.clock import utcnow
from service.core.db import session_scope
from service.recordings.models import recordings
from tests.api.uploading import MiB, complete, create, payload, post_form, put_parts, sha256_b64, upload_single
from tests.conftest import new_tenant
from tests.iam.conftest import Roles
from tests.transports import invoke, load_event

MULTIPART = 11 * MiB  # three parts of 5 MiB (the test settings' part size)


@pytest.fixture
def alice(iam_settings):
    return new_tenant(iam_settings, "alice")


@pytest.fixture(params=["api", "ec2"])
def api_role(request) -> str:
    """The API runs as the Lambda function's role and as the EC2 instance role."""
    return request.param


@pytest.fixture
def api(iam_settings, roles: Roles, api_role: str) -> Iterator[TestClient]:
    from service.api.app import create_app

    with (
        roles.running_as(api_role),
        TestClient(create_app(iam_settings), base_url="http://testserver", raise_server_exceptions=False) as client,
    ):
        yield client


@pytest.fixture
def handlers_use(iam_settings, monkeypatch):
    import handlers.jobs
    import handlers.s3_events

    for module in (handlers.s3_events, handlers.jobs):
        monkeypatch.setattr(module, "get_settings", lambda: iam_settings)
    return iam_settings


def versions(admin_s3, bucket: str, key: str) -> list[str]:
    listing = admin_s3.list_object_versions(Bucket=bucket, Prefix=key)
    entries = listing.get("Versions", []) + listing.get("DeleteMarkers", [])
    return [entry["VersionId"] for entry in entries if entry["Key"] == key]


def recording(api, tenant, rid: str) -> dict:
    response = api.get(f"/v1/recordings/{rid}", headers=tenant.headers)
    if response.status_code == 404:  # a deleted recording is listed with ?status=deleted, not read
        listed = api.get("/v1/recordings", params={"status": "deleted"}, headers=tenant.headers).json()["items"]
        (found,) = [item for item in listed if item["id"] == rid]
        return found
    assert response.status_code == 200, response.text
    return response.json()


def download(api, tenant, rid: str) -> bytes:
    link = api.get(f"/v1/recordings/{rid}/download", headers=tenant.headers)
    assert link.status_code == 200, link.text
    response = httpx.get(link.json()["url"])
    assert response.status_code == 200, response.text
    return response.content


def backdate(settings, rid: str) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(recordings).where(recordings.c.id == rid).values(created_at=utcnow() - timedelta(days=2))
        )
        session.commit()


def rejected(operation: str) -> float:
    value = REGISTRY.get_sample_value(
        "recordings_storage_errors_total", {"operation": operation, "outcome": "rejected"}
    )
    return value or 0.0


# ---- the server enforces what the policies say ------------------------------------------------


def test_the_server_refuses_what_a_role_was_not_granted(roles: Roles, iam_settings, iam_s3) -> None:
    bucket = iam_settings.s3_bucket
    key = f"alice/{uuid.uuid4()}"
    api_s3, reaper_s3 = roles.s3("api"), roles.s3("reaper")
    api_s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    assert api_s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 1
    assert api_s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]

    def refused(call, code: str = "AccessDenied") -> None:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["Error"]["Code"] in (code, "403"), caught.value.response

    refused(lambda: api_s3.put_bucket_policy(Bucket=bucket, Policy="{}"))
    refused(lambda: api_s3.delete_bucket(Bucket=bucket))
    refused(lambda: api_s3.get_bucket_versioning(Bucket=bucket))  # the backup-verification role only
    refused(lambda: roles.s3("ec2").get_bucket_versioning(Bucket=bucket))
    refused(lambda: api_s3.list_object_versions(Bucket=bucket))  # versions of one key, never all
    refused(lambda: api_s3.list_object_versions(Bucket=bucket, Prefix="alice/"))
    refused(lambda: reaper_s3.head_object(Bucket=bucket, Key=key))
    refused(lambda: reaper_s3.delete_object(Bucket=bucket, Key=key))  # only specific versions
    refused(lambda: reaper_s3.head_bucket(Bucket=bucket))  # HeadBucket is s3:ListBucket
    roles.s3("api").head_bucket(Bucket=bucket)
    stranger = iam_s3.client("s3", type(roles.keys("api"))("AKIAIOSFODNN7EXAMPLE", "not-a-secret"))
    refused(lambda: stranger.head_object(Bucket=bucket, Key=key), "InvalidAccessKeyId")


def test_a_missing_key_is_403_without_list_bucket_and_404_with_it(roles: Roles, iam_settings) -> None:
    bucket, key = iam_settings.s3_bucket, f"alice/{uuid.uuid4()}"
    with pytest.raises(ClientError) as with_list:
        roles.s3("s3-events").head_object(Bucket=bucket, Key=key)
    assert with_list.value.response["Error"]["Code"] == "404"
    statements = [st for st in roles.policy("s3-events")["Statement"] if st["Action"] != "s3:ListBucket"]
    without_list = roles.iam_s3.client(
        "s3", roles.keys("s3-events", {"Version": "2012-10-17", "Statement": statements})
    )
    with pytest.raises(ClientError) as caught:
        without_list.head_object(Bucket=bucket, Key=key)
    assert caught.value.response["Error"]["Code"] == "403"


def test_presigned_requests_are_authorized_as_their_signer(roles: Roles, iam_settings) -> None:
    bucket, key = iam_settings.s3_bucket, f"alice/{uuid.uuid4()}"
    for role, allowed in (("api", True), ("reaper", False)):
        s3 = roles.s3(role)
        post = s3.generate_presigned_post(Bucket=bucket, Key=key, ExpiresIn=60)
        response = httpx.post(post["url"], data=post["fields"], files={"file": ("blob", b"bytes")})
        assert (response.status_code == 204) is allowed, (role, response.text)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
        assert (httpx.get(url).status_code == 200) is allowed, role
    tampered = roles.s3("api").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    assert httpx.get(tampered.replace(key, f"alice/{uuid.uuid4()}")).status_code == 403


# ---- the lifecycle, as each role ----------------------------------------------------------------


def test_single_upload_checksum_download_and_readiness(api, alice) -> None:
    data = payload(4096)
    created = upload_single(api, alice, data, checksum_sha256=sha256_b64(data))
    rid = created["recording"]["id"]
    done = complete(api, alice, rid)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available"
    assert download(api, alice, rid) == data
    ready = api.get("/health/ready")
    assert ready.status_code == 200, ready.text


def test_multipart_upload_resumes_and_completes(api, alice) -> None:
    data = payload(MULTIPART)
    created = create(api, alice, size=len(data))
    rec = created["recording"]
    put_parts(api, alice, rec, data, [1, 2])
    uploaded = api.get(f"/v1/recordings/{rec['id']}/upload/parts/uploaded", headers=alice.headers)
    assert uploaded.status_code == 200, uploaded.text
    assert [p["part_number"] for p in uploaded.json()["parts"]] == [1, 2]
    put_parts(api, alice, rec, data, [3])
    done = complete(api, alice, rec["id"])  # no body: the server lists the parts
    assert done.status_code == 200, done.text
    assert download(api, alice, rec["id"]) == data


def test_failed_verification_removes_every_version(api, alice, admin_s3, iam_settings) -> None:
    declared = MULTIPART
    data = payload(declared - 1024)  # the last part is short: the object is not what was declared
    rec = create(api, alice, size=declared)["recording"]
    put_parts(api, alice, rec, data, [1, 2, 3])
    failed = complete(api, alice, rec["id"])
    assert failed.status_code == 409, failed.text
    assert failed.json()["type"] == "/problems/verification-failed"
    assert recording(api, alice, rec["id"])["status"] == "failed"
    assert versions(admin_s3, iam_settings.s3_bucket, rec["key"]) == []


def test_deleting_pending_uploads_aborts_and_purges(api, alice, admin_s3, iam_settings) -> None:
    bucket = iam_settings.s3_bucket
    multipart = create(api, alice, size=MULTIPART)["recording"]
    put_parts(api, alice, multipart, payload(MULTIPART), [1])
    single = create(api, alice, size=100)
    post_form(single["upload"], payload(100))  # bytes arrived, never completed
    for rec in (multipart, single["recording"]):
        deleted = api.delete(f"/v1/recordings/{rec['id']}", headers=alice.headers)
        assert deleted.status_code == 204, deleted.text
        assert versions(admin_s3, bucket, rec["key"]) == []
    assert not admin_s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_delete_then_restore(api, alice, admin_s3, iam_settings) -> None:
    data = payload(300)
    rid = upload_single(api, alice, data)["recording"]["id"]
    assert complete(api, alice, rid).status_code == 200
    assert api.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
    assert api.get(f"/v1/recordings/{rid}/download", headers=alice.headers).status_code == 409
    key = recording(api, alice, rid)["key"]
    assert len(versions(admin_s3, iam_settings.s3_bucket, key)) == 2  # the bytes and a delete marker
    restored = api.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "available"
    assert download(api, alice, rid) == data


def test_uppy_routes(api, alice, admin_s3, iam_settings) -> None:
    data = payload(1234)
    query = {"filename": "memo.wav", "type": "audio/wav", "metadata[size]": str(len(data))}
    signed = api.get("/v1/s3/params", params=query, headers=alice.headers)
    assert signed.status_code == 200, signed.text
    form = signed.json()
    response = httpx.post(form["url"], data=form["fields"], files={"file": ("blob", data, "audio/wav")})
    assert response.status_code == 204, response.text
    (single,) = api.get("/v1/recordings", headers=alice.headers).json()["items"]
    assert single["status"] == "available"  # read-repair: HeadObject as the API's role

    big = payload(MULTIPART)
    body = {"filename": "long.wav", "type": "audio/wav", "metadata": {"size": len(big)}}
    upload = api.post("/v1/s3/multipart", json=body, headers=alice.headers).json()
    where = {"key": upload["key"]}
    batch = api.get(
        f"/v1/s3/multipart/{upload['uploadId']}/batch", params={**where, "partNumbers": "1,2,3"}, headers=alice.headers
    )
    assert batch.status_code == 200, batch.text
    parts = []
    for number, url in sorted(batch.json()["presignedUrls"].items()):
        put = httpx.put(url, content=big[(int(number) - 1) * 5 * MiB : int(number) * 5 * MiB])
        assert put.status_code == 200, put.text
        parts.append({"PartNumber": int(number), "ETag": put.headers["ETag"]})
    listed = api.get(f"/v1/s3/multipart/{upload['uploadId']}", params=where, headers=alice.headers)
    assert listed.status_code == 200, listed.text
    assert [p["PartNumber"] for p in listed.json()] == [1, 2, 3]
    done = api.post(
        f"/v1/s3/multipart/{upload['uploadId']}/complete", params=where, json={"parts": parts}, headers=alice.headers
    )
    assert done.status_code == 200, done.text

    other = api.post("/v1/s3/multipart", json=body, headers=alice.headers).json()
    aborted = api.delete(f"/v1/s3/multipart/{other['uploadId']}", params={"key": other["key"]}, headers=alice.headers)
    assert aborted.status_code == 200, aborted.text
    assert not admin_s3.list_multipart_uploads(Bucket=iam_settings.s3_bucket).get("Uploads")


def test_reaper_runs_as_its_role(api, alice, roles: Roles, handlers_use, admin_s3) -> None:
    from handlers.jobs import reap_handler

    multipart = create(api, alice, size=MULTIPART)["recording"]
    put_parts(api, alice, multipart, payload(MULTIPART), [1, 2])
    single = create(api, alice, size=100)
    post_form(single["upload"], payload(100))
    for rec in (multipart, single["recording"]):
        backdate(handlers_use, rec["id"])

    with roles.running_as("reaper"):
        result = invoke(reap_handler, load_event("eventbridge-scheduled.json"))
    # Both expired keys are also swept for untracked bytes under the reaper's role.
    assert result == {"expired": 2, "examined": 2, "swept": 2, "expired_sessions": 0}
    for rec in (multipart, single["recording"]):
        assert versions(admin_s3, handlers_use.s3_bucket, rec["key"]) == []
    assert not admin_s3.list_multipart_uploads(Bucket=handlers_use.s3_bucket).get("Uploads")


def _stored_status(settings, rid: str) -> str:
    with session_scope(settings) as session:
        return session.execute(select(recordings.c.status).where(recordings.c.id == rid)).scalar_one()


def test_s3_event_reconciler_runs_as_its_role(api, alice, roles: Roles, handlers_use, admin_s3) -> None:
    from handlers.s3_events import handler
    from tests.handlers.test_s3_events import s3_event

    good_data = payload(2048)
    good = upload_single(api, alice, good_data, checksum_sha256=sha256_b64(good_data))["recording"]
    bad = create(api, alice, size=100)
    post_form(bad["upload"], payload(101))  # S3 would refuse it by the policy; moto stores it
    early = create(api, alice, size=10)["recording"]  # the event arrives before the bytes

    with roles.running_as("s3-events"):
        result = invoke(handler, s3_event(handlers_use, good["key"], bad["recording"]["key"], early["key"]))
    assert result == {"available": 1, "failed": 1, "pending": 1}
    assert _stored_status(handlers_use, good["id"]) == "available"
    assert _stored_status(handlers_use, bad["recording"]["id"]) == "failed"
    assert versions(admin_s3, handlers_use.s3_bucket, bad["recording"]["key"]) == []
    assert _stored_status(handlers_use, early["id"]) == "pending"


def test_host_commands_run_as_the_instance_role(api, alice, roles: Roles, iam_settings, monkeypatch) -> None:
    from ops.backup import verify as backup
    from service.cli import main

    monkeypatch.setattr("service.cli.get_settings", lambda: iam_settings)
    stale = create(api, alice, size=10)["recording"]
    backdate(iam_settings, stale["id"])
    with roles.running_as("ec2"):
        assert main(["reap"]) == 0
        # The restore check is the backup-verification role's, never the app hosts'.
        try:
            refused = not backup.verify_s3_restore(s3=roles.s3("ec2"), bucket=iam_settings.s3_bucket).ok
        except ClientError as exc:
            refused = exc.response["Error"]["Code"] == "AccessDenied"
        assert refused
    assert _stored_status(iam_settings, stale["id"]) == "expired"


# ---- a missing permission is a 500 that says what is missing ------------------------------------


def _without(roles: Roles, role: str, action: str) -> dict:
    statements = []
    for statement in roles.policy(role)["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    return {"Version": "2012-10-17", "Statement": statements}


def test_a_missing_permission_is_a_500_naming_the_action(roles: Roles, iam_settings, alice, caplog) -> None:
    from service.api.app import create_app

    bucket = iam_settings.s3_bucket
    with roles.running_as("api"), TestClient(create_app(iam_settings), raise_server_exceptions=False) as api:
        rid = upload_single(api, alice, payload(50))["recording"]["id"]
        assert complete(api, alice, rid).status_code == 200
        assert api.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
    key = f"alice/{rid}"

    broken = _without(roles, "api", "s3:ListBucketVersions")
    before = rejected("ListObjectVersions")
    with (
        roles.running_as("api", broken),
        TestClient(create_app(iam_settings), raise_server_exceptions=False) as api,
        caplog.at_level(logging.ERROR, logger="service.core.storage"),
    ):
        response = api.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers
    assert response.json()["type"] == "/problems/internal-error"
    assert response.json()["detail"] == "An internal error occurred."
    (line,) = [r.getMessage() for r in caplog.records if r.name == "service.core.storage"]
    assert "ListObjectVersions" in line
    assert "AccessDenied" in line
    assert f"s3:ListBucketVersions on arn:aws:s3:::{bucket}" in line
    assert rejected("ListObjectVersions") == before + 1
    assert key  # the restore changed nothing
    with roles.running_as("api"), TestClient(create_app(iam_settings), raise_server_exceptions=False) as api:
        assert recording(api, alice, rid)["status"] == "deleted"


def _emf_metrics(output: str) -> dict[str, float]:
    """CloudWatch EMF documents a Lambda invocation printed: metric name -> total."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith('{"_aws"'):
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values = document[metric["Name"]]
                    total = sum(values) if isinstance(values, list) else values
                    totals[metric["Name"]] = totals.get(metric["Name"], 0) + total
    return totals


def test_bytes_that_must_go_are_never_silently_kept(
    roles: Roles, iam_settings, alice, handlers_use, admin_s3, caplog, capsys
) -> None:
    """Verification fails, or the reaper expires an upload, and the role may not remove the
    bytes: a 500 (or a failed invocation) and an error naming s3:DeleteObjectVersion, never a
    422 or a success with the bytes quietly left behind."""
    from handlers.jobs import reap_handler
    from service.api.app import create_app
    from service.core.storage import StorageRejected

    broken = _without(roles, "api", "s3:DeleteObjectVersion")
    with (
        roles.running_as("api", broken),
        TestClient(create_app(iam_settings), raise_server_exceptions=False) as api,
        caplog.at_level(logging.ERROR, logger="service.core.storage"),
    ):
        rec = create(api, alice, size=MULTIPART)["recording"]
        put_parts(api, alice, rec, payload(MULTIPART - 1024), [1, 2, 3])
        response = complete(api, alice, rec["id"])
        stale = create(api, alice, size=10)
        post_form(stale["upload"], payload(10))
    assert response.status_code == 500, response.text
    assert "retry-after" not in response.headers
    assert any("s3:DeleteObjectVersion" in r.getMessage() for r in caplog.records if r.name == "service.core.storage")
    assert _stored_status(iam_settings, rec["id"]) == "failed"
    assert versions(admin_s3, iam_settings.s3_bucket, rec["key"])  # kept, and reported

    backdate(iam_settings, stale["recording"]["id"])
    before = rejected("DeleteObject")
    capsys.readouterr()
    with (
        roles.running_as("reaper", _without(roles, "reaper", "s3:DeleteObjectVersion")),
        pytest.raises(StorageRejected),
    ):
        invoke(reap_handler, load_event("eventbridge-scheduled.json"))
    assert rejected("DeleteObject") == before + 1
    assert _emf_metrics(capsys.readouterr().out).get("StorageRejected") == 1  # the alarm's metric
    assert versions(admin_s3, iam_settings.s3_bucket, stale["recording"]["key"])
