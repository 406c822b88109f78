"""The EMF listener: the signals it counts in a Lambda invocation's metrics, and nothing outside
an invocation."""

from __future__ import annotations

import pytest

from service.core import signals
from service.observability import emf


@pytest.fixture
def invocation():
    """An invocation in progress, with an empty metrics buffer before and after."""
    emf.metrics.clear_metrics()
    token = emf.invoking.set(True)
    yield emf.metrics.metric_set
    emf.invoking.reset(token)
    emf.metrics.clear_metrics()


def values(metric_set, name: str) -> tuple[str, list[float]] | None:
    metric = metric_set.get(name)
    return None if metric is None else (metric["Unit"], list(metric["Value"]))


@pytest.mark.parametrize(("signal", "metric"), sorted(emf.COUNTED.items()))
def test_each_lifecycle_signal_is_counted(invocation, signal, metric):
    signals.emit(signal, operation="PutObject")
    signals.emit(signal, operation="PutObject")
    assert values(invocation, metric) == ("Count", [1.0, 1.0])


def test_verification_latency_is_recorded_in_milliseconds(invocation):
    signals.emit("verification.seconds", 0.25)
    assert values(invocation, "VerificationLatency") == ("Milliseconds", [250.0])


def test_other_signals_are_not_metrics_here(invocation):
    signals.emit("db.stale_connection")
    signals.emit("verification.seconds")  # no value: nothing to record
    signals.emit("upload.something-new")
    assert dict(invocation) == {}


def test_nothing_is_buffered_outside_an_invocation():
    emf.metrics.clear_metrics()
    signals.emit("upload.completed")
    signals.emit("verification.seconds", 1.0)
    assert dict(emf.metrics.metric_set) == {}


def test_the_listener_is_subscribed():
    assert emf.record_signal in signals._listeners
