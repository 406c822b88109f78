"""The upload lifecycle's signals, emitted on the core bus (service.core.signals). Importing
this module also subscribes the Prometheus listener (service.observability.metrics.domain), so every
process that changes a recording counts it."""

from __future__ import annotations

from service.core import signals
from service.observability.metrics import domain as domain_metrics

UPLOAD_OUTCOMES = domain_metrics.UPLOAD_OUTCOMES


def upload_transition(outcome: str) -> None:
    """A recording changed state: created, completed, failed, expired, deleted or restored."""
    signals.emit(f"upload.{outcome}")


def verification_seconds(seconds: float) -> None:
    """How long one verification of an uploaded object took (HeadObject and checks)."""
    signals.emit("verification.seconds", seconds)
