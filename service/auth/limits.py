"""Per-tenant and per-address limits against resource exhaustion: request rate and failed
authentications (the pending-upload cap is service.recordings.pending).

The request rate is a token bucket per tenant, kept in memory by each process (``app.state``):
with N processes or Lambda instances a tenant may get up to N times the configured rate. It
bounds what one tenant can make a single process do; a global quota belongs in front (API
Gateway usage plans, a WAF rate rule). The pending-upload cap is counted in the database, so it
holds across processes; on PostgreSQL the count and the insert it admits run in one transaction
under a transaction-scoped advisory lock per tenant, so concurrent creates cannot all see room
for one more (and the lock ends with the transaction, as PgBouncer's transaction pooling needs).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.datastructures import State

from service.core.problems import TooManyRequests
from service.core.settings import Settings

# Buckets of tenants not seen for a while are dropped oldest-first beyond this many.
MAX_TRACKED_TENANTS = 10_000


class RateLimiter:
    """Token buckets per key: ``capacity`` tokens, refilled at ``per_minute / 60`` per second."""

    def __init__(self, per_minute: int, burst: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or per_minute)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def blocked(self, key: str) -> float:
        """Seconds until ``key`` has a token again (0.0 if it has one now); takes nothing."""
        if not self.enabled:
            return 0.0
        with self._lock:
            entry = self._buckets.get(key)
            if entry is None:
                return 0.0
            tokens, last = entry
            tokens = min(self.capacity, tokens + (self._clock() - last) * self.rate)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when allowed, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > MAX_TRACKED_TENANTS:
                self._buckets.popitem(last=False)
            return wait


def rate_limiter(app_state: State, settings: Settings) -> RateLimiter:
    """The process's limiter for this app (created on first use)."""
    limiter: RateLimiter | None = getattr(app_state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        app_state.rate_limiter = limiter
    return limiter


def enforce_rate_limit(app_state: State, settings: Settings, tenant: str) -> None:
    wait = rate_limiter(app_state, settings).acquire(tenant)
    if wait > 0:
        raise TooManyRequests(
            f"Too many requests for this tenant; the limit is {settings.rate_limit_per_minute} per minute.",
            retry_after=math.ceil(wait),
        )


# Failed authentication, per client address: a bucket of failures. Presenting credentials that
# turn out wrong takes a token; with none left, the address gets 429 before any credential is
# checked, until the bucket refills (guessing keys or replaying stolen cookies is slowed down,
# a client that authenticates correctly is never counted).
def _auth_failures(app_state: State, settings: Settings) -> RateLimiter:
    limiter: RateLimiter | None = getattr(app_state, "auth_failure_limiter", None)
    if limiter is None:
        limiter = RateLimiter(settings.auth_failures_per_minute)
        app_state.auth_failure_limiter = limiter
    return limiter


def _too_many_failures(settings: Settings, wait: float) -> TooManyRequests:
    return TooManyRequests(
        f"Too many failed authentication attempts from this address; the limit is "
        f"{settings.auth_failures_per_minute} per minute.",
        retry_after=math.ceil(wait),
        slug="too-many-failed-authentications",
    )


def check_auth_failures(app_state: State, settings: Settings, address: str) -> None:
    """429 while ``address`` has used up its failed authentications."""
    wait = _auth_failures(app_state, settings).blocked(address)
    if wait > 0:
        raise _too_many_failures(settings, wait)


def record_auth_failure(app_state: State, settings: Settings, address: str) -> None:
    _auth_failures(app_state, settings).acquire(address)
