"""What every metrics module shares: the multiprocess switch and cached label children.

Several uvicorn workers: when ``PROMETHEUS_MULTIPROC_DIR`` is set (before prometheus_client is
imported, i.e. in the environment of the server process), every worker writes its samples to
that directory and ``/metrics`` aggregates them, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client picks its value storage (memory or mmap files) when it is imported, from
# the same variable; reading it here once keeps this module consistent with that choice.
MULTIPROCESS = bool(os.environ.get(MULTIPROC_ENV))
if MULTIPROCESS:
    # Metric children below open their files at import; a missing directory would crash a worker.
    os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)


_K = TypeVar("_K")
_V = TypeVar("_V")


class Children(dict[_K, _V]):
    """Labelled children of a metric by label values, created on first use.

    ``labels()`` takes a lock and builds a key on every call; a dictionary lookup does neither.
    The label values are bounded (outcomes, methods x route templates x status codes).
    """

    def __init__(self, make: Callable[[_K], _V]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: _K) -> _V:
        child = self[key] = self._make(key)
        return child
