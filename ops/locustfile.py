"""Smoke load test run by CI against the compose stack (and usable against any environment):

    locust -f ops/locustfile.py --headless -u 10 -r 5 -t 30s --host http://127.0.0.1:8000

RECORDINGS_API_KEY: an API key (``python -m service api-keys create --owner smoke``); without it
only the unauthenticated endpoints are exercised. Fails (exit 1) on any failed request, or when
the P99 exceeds LOCUST_MAX_P99_MS (default 500, the alert threshold).
"""

from __future__ import annotations

import os
import uuid

from locust import HttpUser, between, events, task

API_KEY = os.environ.get("RECORDINGS_API_KEY", "")
MAX_P99_MS = float(os.environ.get("LOCUST_MAX_P99_MS", "500"))


class ApiUser(HttpUser):
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        if API_KEY:
            self.client.headers["Authorization"] = f"Bearer {API_KEY}"

    @task(3)
    def health(self) -> None:
        self.client.get("/health")

    @task(1)
    def ready(self) -> None:
        self.client.get("/health/ready")

    @task(3)
    def list_recordings(self) -> None:
        if API_KEY:
            self.client.get("/v1/recordings?limit=20", name="/v1/recordings")

    @task(2)
    def create_and_read(self) -> None:
        if not API_KEY:
            return
        created = self.client.post(
            "/v1/recordings",
            json={"filename": f"smoke-{uuid.uuid4().hex[:8]}.wav", "content_type": "audio/wav", "size_bytes": 1024},
            name="/v1/recordings [create]",
        )
        if created.status_code == 201:
            recording_id = created.json()["recording"]["id"]
            self.client.get(f"/v1/recordings/{recording_id}", name="/v1/recordings/{recording_id}")

    @task(1)
    def missing_recording_is_404(self) -> None:
        if not API_KEY:
            return
        with self.client.get(
            f"/v1/recordings/{uuid.uuid4()}", name="/v1/recordings/{recording_id} [404]", catch_response=True
        ) as response:
            if response.status_code == 404:
                response.success()


@events.quitting.add_listener
def _enforce_slo(environment, **_kwargs) -> None:
    stats = environment.stats.total
    p99 = stats.get_response_time_percentile(0.99) or 0
    if stats.num_failures:
        environment.process_exit_code = 1
    elif p99 > MAX_P99_MS:
        print(f"P99 {p99:.0f} ms exceeds {MAX_P99_MS:.0f} ms")
        environment.process_exit_code = 1
