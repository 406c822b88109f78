"""The in-process signal bus: listeners get every signal, once, and one failing listener does
not keep the others from theirs."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from service.core import signals
from service.core.signals import Signal


@pytest.fixture
def bus(monkeypatch) -> list:
    """An empty listener list for the test (the app's listeners are registered at import)."""
    listeners: list = []
    monkeypatch.setattr(signals, "_listeners", listeners)
    return listeners


def test_a_listener_receives_the_name_value_labels_and_subject(bus):
    received: list[Signal] = []
    signals.subscribe(received.append)
    engine = object()
    signals.emit("pool.closed", 2.5, subject=engine, pool="primary")
    signals.emit("upload.completed")
    assert received == [
        Signal("pool.closed", 2.5, {"pool": "primary"}, engine),
        Signal("upload.completed", None, {}, None),
    ]
    assert received[0].subject is engine


def test_subscribing_twice_delivers_once(bus):
    received: list[Signal] = []
    signals.subscribe(received.append)
    signals.subscribe(received.append)
    signals.emit("upload.created")
    assert [signal.name for signal in received] == ["upload.created"]


def test_listeners_run_in_subscription_order(bus):
    calls: list[str] = []
    signals.subscribe(lambda signal: calls.append("first"))
    signals.subscribe(lambda signal: calls.append("second"))
    signals.emit("x")
    assert calls == ["first", "second"]


def test_a_failing_listener_is_logged_and_the_others_still_run(bus, caplog):
    received: list[str] = []

    def broken(signal: Signal) -> None:
        raise RuntimeError("listener bug")

    signals.subscribe(broken)
    signals.subscribe(lambda signal: received.append(signal.name))
    with caplog.at_level(logging.WARNING, logger="service.core.signals"):
        signals.emit("storage.rejected", operation="PutObject")
    assert received == ["storage.rejected"]
    (record,) = caplog.records
    assert record.getMessage() == "signal listener failed for storage.rejected"
    assert record.exc_info[0] is RuntimeError


def test_emitting_without_listeners_does_nothing(bus):
    signals.emit("upload.created", 1.0, tenant="alice")


def test_signals_are_immutable():
    signal = Signal("upload.created")
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.name = "upload.failed"  # type: ignore[misc]
