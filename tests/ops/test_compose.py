"""docker-compose.yml: valid against the Compose specification (check-jsonschema's vendored
schema; no compose plugin exists here) and wired together consistently."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import make_url

from tests.ops.conftest import REPO, tool

COMPOSE = REPO / "docker-compose.yml"


def _validate(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _tag(image: str) -> str | None:
    """The tag of an image reference (``[registry[:port]/]name[:tag][@digest]``), None without one."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def test_image_tags_are_read_from_the_reference():
    assert _tag("postgres:16.6-alpine") == "16.6-alpine"
    assert _tag("registry.example:5000/team/app") is None
    assert _tag("registry.example:5000/team/app:1.2") == "1.2"
    assert _tag("app@sha256:" + "0" * 64) is None


def test_compose_file_matches_the_compose_specification():
    result = _validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_file(tmp_path):
    broken = _compose()
    broken["services"]["app"]["depends_on"] = {"migrate": {"condition": "when_it_feels_like_it"}}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    assert _validate(path).returncode != 0


def test_full_stack_services_are_wired_together():
    services = _compose()["services"]
    assert {"postgres", "s3", "app", "prometheus", "grafana"} <= set(services)
    app = services["app"]
    assert app["build"]["target"] == "server"
    env = app["environment"]
    database = make_url(env["DATABASE_URL"])
    assert (database.get_backend_name(), database.host, database.port) == ("postgresql", "postgres", 5432)
    s3 = urlsplit(env["S3_ENDPOINT_URL"])
    assert (s3.scheme, s3.hostname, s3.port) == ("http", "s3", int(services["s3"]["environment"]["MOTO_PORT"]))
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name, service in services.items():
        image = service.get("image")
        if image and "build" not in service:
            assert "@sha256:" in image or _tag(image) not in (None, "latest"), f"{name}: unpinned image {image}"


def test_prometheus_and_grafana_mount_the_repository_configs():
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            # Short syntax: SOURCE:TARGET[:MODE]; a bind mount's source is a relative path.
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
    scrape = yaml.safe_load((REPO / "ops/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in scrape["scrape_configs"]
        if job["job_name"] == "recordings"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"app:{services['app']['environment']['PORT']}"}
