"""Several workers, one /metrics: two processes write to one PROMETHEUS_MULTIPROC_DIR and a scrape
from a third process sees the sums (requests, pool usage) and each live worker's memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ops.conftest import REPO

WORKER = Path(__file__).with_name("mp_worker.py")
SCRAPE = "from service.observability import metrics; import sys; sys.stdout.write(metrics.render_metrics().decode())"


def _scrape(env: dict[str, str]) -> list:
    out = subprocess.run(
        [sys.executable, "-c", SCRAPE], env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return [sample for family in text_string_to_metric_families(out) for sample in family.samples]


def _total(samples: list, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_two_workers_are_aggregated_in_one_scrape(tmp_path, clean_env):
    directory = tmp_path / "prom"
    env = {**clean_env, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(REPO)}
    prepare = "from service.observability import metrics; print(metrics.prepare_multiprocess_dir())"
    subprocess.run([sys.executable, "-c", prepare], env=env, cwd=REPO, check=True, timeout=60)
    (directory / "counter_999999.db").write_bytes(b"stale")  # a previous run's leftovers
    subprocess.run([sys.executable, "-c", prepare], env=env, cwd=REPO, check=True, timeout=60)
    assert not (directory / "counter_999999.db").exists()

    workers = []
    try:
        for count in (3, 5):
            proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(count), str(tmp_path / "pool.db")],
                env=env,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            workers.append(proc)
        pids = []
        for proc in workers:
            line = proc.stdout.readline()
            assert line.startswith("ready"), f"worker failed to start: {line!r}"
            pids.append(line.split()[1])

        both = _scrape(env)
        assert _total(both, "http_requests_total", route="/mp/{name}", status="200") == 8
        assert _total(both, "http_request_duration_seconds_count", route="/mp/{name}") == 8
        assert _total(both, "db_pool_checked_out") == 2
        assert _total(both, "db_pool_size") == 4
        memory_pids = {s.labels["pid"] for s in both if s.name == "process_resident_memory_bytes" and s.value > 0}
        assert set(pids) <= memory_pids

        # One worker dies (uvicorn would replace it): its connections no longer count, its requests do.
        workers[0].kill()
        workers[0].wait(timeout=30)
        one = _scrape(env)
        assert _total(one, "http_requests_total", route="/mp/{name}", status="200") == 8
        assert _total(one, "db_pool_checked_out") == 1
        assert pids[0] not in {s.labels["pid"] for s in one if s.name == "process_resident_memory_bytes"}
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.communicate("\n", timeout=30)
