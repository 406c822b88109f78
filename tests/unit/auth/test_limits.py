"""The token buckets behind the request rate and failed-authentication limits, on a clock the
test moves."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from service.auth import limits
from service.auth.limits import (
    RateLimiter,
    check_auth_failures,
    enforce_rate_limit,
    rate_limiter,
    record_auth_failure,
)
from service.core.problems import TooManyRequests
from service.core.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_token_bucket_refills_at_the_configured_rate():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.acquire("t") == 0
    assert limiter.acquire("t") == 0
    assert limiter.acquire("t") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.acquire("t") == 0
    assert limiter.acquire("other") == 0


def test_without_a_burst_the_bucket_holds_a_minutes_worth(clock):
    limiter = RateLimiter(per_minute=30, clock=clock)
    assert [limiter.acquire("t") for _ in range(30)] == [0.0] * 30
    assert limiter.acquire("t") == pytest.approx(2.0)  # 30 per minute: one token every 2 s


def test_the_wait_shrinks_as_the_bucket_refills_and_a_refusal_takes_nothing(clock):
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    assert limiter.acquire("t") == 0
    clock.now += 0.25
    assert limiter.acquire("t") == pytest.approx(0.75)
    clock.now += 0.5
    assert limiter.acquire("t") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("t") == 0


def test_an_idle_bucket_fills_up_to_its_capacity_only(clock):
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    limiter.acquire("t")
    clock.now += 3600
    assert [limiter.acquire("t") for _ in range(3)] == [0.0] * 3
    assert limiter.acquire("t") > 0


def test_blocked_tells_the_wait_without_taking_a_token(clock):
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    assert limiter.blocked("t") == 0  # never seen
    limiter.acquire("t")
    assert limiter.blocked("t") == 0  # one token left
    assert limiter.blocked("t") == 0
    limiter.acquire("t")
    assert limiter.blocked("t") == pytest.approx(1.0)
    assert limiter.blocked("t") == pytest.approx(1.0)
    clock.now += 0.4
    assert limiter.blocked("t") == pytest.approx(0.6)
    clock.now += 0.6
    assert limiter.blocked("t") == 0
    assert limiter.acquire("t") == 0


def test_a_zero_rate_turns_the_limiter_off(clock):
    limiter = RateLimiter(per_minute=0, clock=clock)
    assert not limiter.enabled
    assert [limiter.acquire("t") for _ in range(100)] == [0.0] * 100
    assert limiter.blocked("t") == 0


def test_the_least_recently_seen_tenants_are_forgotten_first(clock, monkeypatch):
    monkeypatch.setattr(limits, "MAX_TRACKED_TENANTS", 3)
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.acquire(key) == 0
    assert limiter.acquire("a") > 0  # "a" is now the most recently seen
    assert limiter.acquire("d") == 0  # four tenants: "b" goes
    assert limiter.acquire("c") > 0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0  # forgotten: a full bucket again


def test_the_rate_limit_answers_429_with_the_wait_rounded_up(clock):
    settings = Settings(rate_limit_per_minute=60, rate_limit_burst=1)
    state = SimpleNamespace(rate_limiter=RateLimiter(60, 1, clock=clock))
    assert rate_limiter(state, settings) is state.rate_limiter
    enforce_rate_limit(state, settings, "alice")
    clock.now += 0.1
    with pytest.raises(TooManyRequests) as refused:
        enforce_rate_limit(state, settings, "alice")
    assert refused.value.status == 429
    assert refused.value.slug == "too-many-requests"
    assert refused.value.headers == {"Retry-After": "1"}
    assert "60 per minute" in refused.value.detail
    enforce_rate_limit(state, settings, "bob")  # bob has his own bucket


def test_the_process_limiter_is_made_once_from_the_settings():
    state = SimpleNamespace()
    limiter = rate_limiter(state, Settings(rate_limit_per_minute=120, rate_limit_burst=7))
    assert rate_limiter(state, Settings()) is limiter
    assert (limiter.rate, limiter.capacity) == (2.0, 7.0)


def test_failed_authentications_block_the_address_until_the_bucket_refills(clock):
    settings = Settings(auth_failures_per_minute=2)
    state = SimpleNamespace(auth_failure_limiter=RateLimiter(2, clock=clock))
    check_auth_failures(state, settings, "10.0.0.1")
    record_auth_failure(state, settings, "10.0.0.1")
    check_auth_failures(state, settings, "10.0.0.1")  # one failure is not a block
    record_auth_failure(state, settings, "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        check_auth_failures(state, settings, "10.0.0.1")
    assert refused.value.slug == "too-many-failed-authentications"
    assert refused.value.headers == {"Retry-After": "30"}  # 2 per minute: one every 30 s
    check_auth_failures(state, settings, "10.0.0.2")  # per address
    clock.now += 30
    check_auth_failures(state, settings, "10.0.0.1")
