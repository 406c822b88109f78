"""PostgreSQL goes away mid-run: 503 problem+json with Retry-After, never a 500, nothing
half-written, and the same app instance serves again as soon as the database is back."""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select, text

from service.core.db import get_engine, session_scope
from service.recordings.models import recordings
from tests.api.uploading import MiB
from tests.reliability.conftest import client_for

BODY = {"filename": "take.wav", "content_type": "audio/wav", "size_bytes": 100}


def _rows(settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(recordings))


def _in_progress_uploads(s3, bucket: str) -> list:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def _assert_database_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"] == "/problems/database-unavailable"


def test_database_gone_then_back_same_app_instance(db_fault_settings, db_proxy, settings, alice_key):
    headers = alice_key.headers
    with client_for(db_fault_settings) as api:
        assert api.post("/v1/recordings", json=BODY, headers=headers).status_code == 201
        assert _rows(settings) == 1

        db_proxy.stop()
        started = time.monotonic()
        for method, path, body in [
            ("GET", "/v1/recordings", None),
            ("POST", "/v1/recordings", BODY),
            ("GET", "/v1/recordings/00000000-0000-4000-8000-000000000000", None),
        ]:
            _assert_database_unavailable(api.request(method, path, json=body, headers=headers))
        assert time.monotonic() - started < 10, "a refused database must be reported quickly"

        ready = api.get("/health/ready")
        assert ready.status_code == 503
        assert ready.headers["retry-after"]
        assert ready.json()["checks"]["database"] != "ok"
        assert "database" in ready.json()["detail"]
        assert api.get("/health").status_code == 200  # liveness does not depend on the database
        assert _rows(settings) == 1  # the create that met the outage left nothing

        db_proxy.start()  # same port, same process, same app: the pool reconnects on its own
        listed = api.get("/v1/recordings", headers=headers)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["items"]) == 1
        assert api.post("/v1/recordings", json=BODY, headers=headers).status_code == 201
        assert api.get("/health/ready").status_code == 200


def test_database_lost_before_commit_leaves_no_row_and_no_open_upload(
    db_fault_settings, db_proxy, settings, alice_key, s3, monkeypatch
):
    """The multipart upload is opened in S3, then the database dies before the row commits: the
    answer is 503 and the upload is aborted, so neither store claims a recording."""
    from service.core.storage import Storage

    real = Storage.create_multipart

    def open_then_lose_database(self, **kwargs):
        upload_id = real(self, **kwargs)
        db_proxy.stop()
        return upload_id

    monkeypatch.setattr(Storage, "create_multipart", open_then_lose_database)
    with client_for(db_fault_settings) as api:
        response = api.post("/v1/recordings", json={**BODY, "size_bytes": 11 * MiB}, headers=alice_key.headers)
    _assert_database_unavailable(response)
    assert _rows(settings) == 0
    assert _in_progress_uploads(s3, settings.s3_bucket) == []


def test_hung_database_answers_503_in_bounded_time(db_fault_settings, db_proxy, alice_key):
    with client_for(db_fault_settings) as api:
        assert api.get("/v1/recordings", headers=alice_key.headers).status_code == 200
        db_proxy.stop()
        db_proxy.mode = "blackhole"  # accepts connections, never answers
        db_proxy.start()
        started = time.monotonic()
        response = api.get("/v1/recordings", headers=alice_key.headers)
        elapsed = time.monotonic() - started
    _assert_database_unavailable(response)
    # connect_timeout (5 s) bounds it; the pre-ping of the pooled connection fails first.
    assert elapsed < 12, f"took {elapsed:.1f}s"


def test_backends_terminated_mid_run_give_no_500_and_recover(settings, alice_key):
    """pg_terminate_backend on every connection of the test database while requests flow."""
    statuses: list[int] = []
    stop = threading.Event()
    database = get_engine(settings).url.database
    admin = get_engine(settings)

    def terminate() -> None:
        while not stop.is_set():
            with admin.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid() AND application_name = 'recordings'"
                    ),
                    {"name": database},
                )
                connection.commit()
            time.sleep(0.05)

    with client_for(settings) as api:
        killer = threading.Thread(target=terminate, daemon=True)
        killer.start()
        try:
            for i in range(40):
                if i % 2:
                    response = api.get("/v1/recordings", headers=alice_key.headers)
                else:
                    response = api.post("/v1/recordings", json=BODY, headers=alice_key.headers)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["retry-after"]
        finally:
            stop.set()
            killer.join()
        assert 500 not in statuses, statuses
        assert set(statuses) <= {200, 201, 401, 503}, statuses
        # A request whose key lookup lost its connection can only be 503, never a wrong 401.
        assert 401 not in statuses, statuses
        after = api.get("/v1/recordings?limit=200", headers=alice_key.headers)
        if after.status_code == 503:
            # The killer's last sweep may have ended idle pooled connections after the last
            # request: as designed, the first request to draw one fails with 503 and
            # invalidates the pool; the next one is served.
            after = api.get("/v1/recordings?limit=200", headers=alice_key.headers)
        assert after.status_code == 200
    # Every 201 is a whole row; nothing else was written.
    assert len(after.json()["items"]) == statuses.count(201)
