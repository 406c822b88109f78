"""The in-process signal bus. Core and domain code emit named signals (an upload completed, S3
refused a call, the pool dropped a closed connection); the observability listeners turn them into
Prometheus series on a server and CloudWatch EMF metrics on Lambda. Emitting knows nothing of
either, so this layer imports no metrics library (docs/adr/0004-layers-and-signals.md).

Listeners must be cheap and must not raise; one that does is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

log = logging.getLogger("service.core.signals")


@dataclass(frozen=True, slots=True)
class Signal:
    """``name`` is dotted (``upload.completed``); ``value`` a measurement where there is one;
    ``labels`` a few low-cardinality strings; ``subject`` the object concerned (an engine)."""

    name: str
    value: float | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    subject: object | None = None


Listener = Callable[[Signal], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    """Register ``listener``; registering the same one twice has no effect."""
    if listener not in _listeners:
        _listeners.append(listener)


def emit(name: str, value: float | None = None, *, subject: object | None = None, **labels: str) -> None:
    signal = Signal(name, value, labels, subject)
    for listener in _listeners:
        try:
            listener(signal)
        except Exception:
            log.warning("signal listener failed for %s", name, exc_info=True)
