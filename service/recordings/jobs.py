"""Scheduled work on the aggregate: the reaper, run by `python -m service reap` on a server and
by the scheduled Lambda function (handlers/jobs.py), the same code for both."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth.sessions import delete_expired_sessions
from service.core.db import session_scope
from service.core.settings import Settings
from service.core.storage import Storage
from service.recordings.uploads import reap

REAP_BATCH_SIZE = 500
REAP_MAX_BATCHES = 20


@dataclass(frozen=True, slots=True)
class ReapSummary:
    expired: int
    examined: int
    swept: int
    expired_sessions: int


def reap_stale_uploads(
    settings: Settings, *, batch_size: int = REAP_BATCH_SIZE, max_batches: int = REAP_MAX_BATCHES
) -> ReapSummary:
    """Expire abandoned uploads and sweep settled keys, batch after batch (each batch its own
    transaction), up to a bound that keeps one run short; then remove expired browser sessions."""
    storage = Storage.from_settings(settings)
    expired = examined = swept = 0
    for _ in range(max_batches):
        with session_scope(settings) as session:
            result = reap(session=session, storage=storage, settings=settings, batch_size=batch_size)
        expired, examined, swept = expired + result.expired, examined + result.examined, swept + result.swept
        if result.examined < batch_size and result.swept < batch_size:
            break
    with session_scope(settings) as session:
        sessions = delete_expired_sessions(session)
    return ReapSummary(expired=expired, examined=examined, swept=swept, expired_sessions=sessions)
