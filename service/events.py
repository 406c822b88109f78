"""Upload lifecycle and storage error signals, fanned out to the metrics back ends of the runtime.

The server path counts them in Prometheus (service.metrics); the Lambda path adds a listener that
writes CloudWatch EMF metrics. Listeners must be cheap and must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from service import metrics

log = logging.getLogger("service.events")

Listener = Callable[[str, float | None], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Register ``listener(signal, value)``; registering the same one twice has no effect."""
    if listener not in _listeners:
        _listeners.append(listener)


def _notify(signal: str, value: float | None) -> None:
    for listener in _listeners:
        try:
            listener(signal, value)
        except Exception:
            log.warning("metrics listener failed for %s", signal, exc_info=True)


def upload_transition(outcome: str) -> None:
    """A recording changed state: created, completed, failed, expired, deleted or restored."""
    metrics.record_upload(outcome)
    _notify(f"upload.{outcome}", None)


def verification_seconds(seconds: float) -> None:
    """How long one verification of an uploaded object took (HeadObject and checks)."""
    _notify("verification.seconds", seconds)


def storage_error(operation: str, *, retryable: bool) -> None:
    """An S3 call failed: ``unavailable`` (throttled, timed out, 5xx: worth a retry) or
    ``rejected`` (permissions or configuration: an operator must act)."""
    outcome = "unavailable" if retryable else "rejected"
    metrics.record_storage_error(operation, outcome)
    _notify(f"storage.{outcome}", None)
