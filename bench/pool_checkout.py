"""What it costs to hand out only live pooled connections, per request.

A request checks a connection out of the pool, runs one statement and checks it back in. This
times that cycle, in one process against one database, in three ways, and prints each as a
ratio of the first:

* ``unchecked``: the pool as it was (no check; a connection the server closed fails a request),
* ``socket check``: the service's checkout listener (one ``poll()`` on the socket),
* ``pre-ping``: SQLAlchemy's ``pool_pre_ping`` (a ``SELECT 1`` round trip per checkout).

Run: ``python -m bench.pool_checkout`` (PostgreSQL from BENCH_DATABASE_URL, as bench/run.py; it
times service/core/db.py itself, so it imports that module directly).
"""

from __future__ import annotations

import statistics
import sys
import time

from sqlalchemy import create_engine, text

from bench.harness import scratch_database
from service.core import db

ROUNDS = 5
CYCLES = 3000


def _engine(url: str, *, check: bool, pre_ping: bool):
    engine = create_engine(db.with_driver(db.make_url(url)), pool_size=1, max_overflow=0, pool_pre_ping=pre_ping)
    if check:
        db._drop_closed_connections(engine)
    return engine


def _cycle_seconds(engine) -> tuple[float, float]:
    """(wall, this process's CPU) seconds per cycle."""
    statement = text("SELECT 1")
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(CYCLES):
        with engine.connect() as connection:
            connection.execute(statement)
    return (time.perf_counter() - started) / CYCLES, (time.process_time() - cpu) / CYCLES


def main() -> int:
    with scratch_database() as url:
        variants = {
            "unchecked": _engine(url, check=False, pre_ping=False),
            "socket check": _engine(url, check=True, pre_ping=False),
            "pre-ping": _engine(url, check=False, pre_ping=True),
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for engine in variants.values():
            _cycle_seconds(engine)  # connect and warm up
        for _ in range(ROUNDS):  # interleaved, so machine load hits every variant alike
            for name, engine in variants.items():
                samples[name].append(_cycle_seconds(engine))
        for engine in variants.values():
            engine.dispose()
    wall_base = statistics.median(wall for wall, _ in samples["unchecked"])
    cpu_base = statistics.median(cpu for _, cpu in samples["unchecked"])
    print(f"{'checkout + SELECT 1 + checkin':<20} {'wall us':>9} {'ratio':>7} {'client CPU us':>14} {'ratio':>7}")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:<20} {wall * 1e6:>9.1f} {wall / wall_base:>7.3f} {cpu * 1e6:>14.1f} {cpu / cpu_base:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
