"""Reading, listing, changing, deleting and restoring recordings."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.api.uploading import complete, create, payload, upload_single


def test_get_returns_the_created_recording(client, alice):
    created = create(client, alice, size=10, title="Demo", metadata={"take": 3, "tags": ["a"]})
    response = client.get(f"/v1/recordings/{created['recording']['id']}", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Demo"
    assert body["metadata"] == {"take": 3, "tags": ["a"]}
    assert body["size_bytes"] == 10
    assert body["status"] == "pending"


def test_list_is_newest_first_and_pages_with_a_cursor(client, alice):
    ids = [create(client, alice, size=10, title=f"r{i}")["recording"]["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/recordings", params=params, headers=alice.headers)
        assert page.status_code == 200
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_pagination_is_stable_while_rows_are_inserted(client, alice):
    existing = [create(client, alice, size=10)["recording"]["id"] for _ in range(12)]
    stop = threading.Event()
    inserted: list[str] = []

    def writer():
        while not stop.is_set():
            inserted.append(create(client, alice, size=10)["recording"]["id"])

    seen, cursor = [], None
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(writer) for _ in range(2)]
        try:
            while True:
                params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = client.get("/v1/recordings", params=params, headers=alice.headers).json()
                seen += [item["id"] for item in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
        finally:
            stop.set()
            for future in futures:
                future.result()
    assert inserted, "the writers must have inserted rows while paging"
    assert len(seen) == len(set(seen)), "no recording may appear twice"
    assert set(existing) <= set(seen), "no recording that existed before paging may be skipped"


def test_list_filters_by_status_and_hides_deleted(client, alice):
    available = upload_single(client, alice, payload(10))["recording"]["id"]
    complete(client, alice, available)
    pending = create(client, alice, size=10)["recording"]["id"]
    gone = create(client, alice, size=10)["recording"]["id"]
    assert client.delete(f"/v1/recordings/{gone}", headers=alice.headers).status_code == 204

    def ids(**params):
        return {
            item["id"] for item in client.get("/v1/recordings", params=params, headers=alice.headers).json()["items"]
        }

    assert ids() == {available, pending}
    assert ids(status="available") == {available}
    assert ids(status="deleted") == {gone}


def test_list_rejects_bad_limits_and_cursors(client, alice):
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "not-a-cursor"}, {"cursor": "W10"}, {"status": "x"}):
        response = client.get("/v1/recordings", params=params, headers=alice.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


def test_patch_changes_title_and_metadata_only(client, alice):
    rid = create(client, alice, size=10, title="old")["recording"]["id"]
    response = client.patch(
        f"/v1/recordings/{rid}", json={"title": "new", "metadata": {"k": "v"}}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json()["title"] == "new"
    assert response.json()["metadata"] == {"k": "v"}
    for forbidden in ({"status": "available"}, {"size_bytes": 1}, {"key": "bob/x"}, {"owner": "bob"}, {"nope": 1}):
        rejected = client.patch(f"/v1/recordings/{rid}", json=forbidden, headers=alice.headers)
        assert rejected.status_code == 422, forbidden
    after = client.get(f"/v1/recordings/{rid}", headers=alice.headers).json()
    assert after["status"] == "pending"
    assert after["size_bytes"] == 10
    assert after["key"].startswith("alice/")


def _deleted_ids(client, tenant) -> set[str]:
    """Deleted recordings answer 404 to a read by id; they stay listable with status=deleted."""
    listed = client.get("/v1/recordings", params={"status": "deleted"}, headers=tenant.headers).json()["items"]
    return {item["id"] for item in listed if item["status"] == "deleted"}


def test_delete_pending_multipart_aborts_the_upload(client, alice, s3, settings):
    recording = create(client, alice, size=11 * 1024 * 1024)["recording"]
    assert s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")
    assert client.delete(f"/v1/recordings/{recording['id']}", headers=alice.headers).status_code == 204
    assert not s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads")
    assert _deleted_ids(client, alice) == {recording["id"]}


def test_delete_pending_single_upload_removes_partial_object(client, alice, s3, settings):
    created = upload_single(client, alice, payload(50))
    rid, key = created["recording"]["id"], created["recording"]["key"]
    assert client.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
    assert not s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=key).get("Versions")


def test_delete_then_restore_brings_the_same_bytes_back(client, alice):
    data = payload(2048)
    rid = upload_single(client, alice, data)["recording"]["id"]
    assert complete(client, alice, rid).status_code == 200

    assert client.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204
    assert client.delete(f"/v1/recordings/{rid}", headers=alice.headers).status_code == 204  # idempotent
    gone = client.get(f"/v1/recordings/{rid}", headers=alice.headers)
    assert gone.status_code == 404
    assert "restore" in gone.json()["detail"]
    listed = client.get("/v1/recordings", params={"status": "deleted"}, headers=alice.headers).json()["items"]
    (deleted,) = [item for item in listed if item["id"] == rid]
    assert deleted["status"] == "deleted"
    assert deleted["deleted_at"] is not None
    assert client.get(f"/v1/recordings/{rid}/download", headers=alice.headers).status_code == 409

    restored = client.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "available"
    assert restored.json()["deleted_at"] is None
    link = client.get(f"/v1/recordings/{rid}/download", headers=alice.headers).json()
    assert httpx.get(link["url"]).content == data


def test_restore_is_conflict_when_nothing_is_left(client, alice, s3, settings):
    created = upload_single(client, alice, payload(100))
    rid, key = created["recording"]["id"], created["recording"]["key"]
    complete(client, alice, rid)
    assert client.post(f"/v1/recordings/{rid}/restore", headers=alice.headers).status_code == 409  # not deleted
    client.delete(f"/v1/recordings/{rid}", headers=alice.headers)
    # The retention window passed: lifecycle expired every version.
    for version in s3.list_object_versions(Bucket=settings.s3_bucket, Prefix=key).get("Versions", []):
        s3.delete_object(Bucket=settings.s3_bucket, Key=key, VersionId=version["VersionId"])
    response = client.post(f"/v1/recordings/{rid}/restore", headers=alice.headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert rid in _deleted_ids(client, alice)


def test_restore_of_a_never_completed_upload_is_conflict(client, alice):
    rid = create(client, alice, size=10)["recording"]["id"]
    client.delete(f"/v1/recordings/{rid}", headers=alice.headers)
    assert client.post(f"/v1/recordings/{rid}/restore", headers=alice.headers).status_code == 409


def test_play_gives_an_inline_link_for_audio_and_video_only(client, alice):
    data = payload(300)
    rid = upload_single(client, alice, data)["recording"]["id"]
    complete(client, alice, rid)
    pending = create(client, alice, size=10)["recording"]["id"]
    assert client.get(f"/v1/recordings/{pending}/play", headers=alice.headers).status_code == 409
    link = client.get(f"/v1/recordings/{rid}/play", headers=alice.headers)
    assert link.status_code == 200, link.text
    assert link.headers["x-content-type-options"] == "nosniff"
    served = httpx.get(link.json()["url"])
    assert served.content == data
    assert served.headers["content-type"] == "audio/wav"
    assert served.headers["content-disposition"].startswith("inline;")

    other = upload_single(client, alice, payload(10), content_type="application/octet-stream")["recording"]["id"]
    complete(client, alice, other)
    refused = client.get(f"/v1/recordings/{other}/play", headers=alice.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "download" in refused.json()["detail"]
