"""The recordings routes. Built per application: the create request's schema states the limits of
that deployment's settings. (No ``from __future__ import annotations``: the routes are defined
inside ``build_router`` and annotated with its local request model.)"""

import uuid
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import Connection

from service.auth.caller import Caller, CallerDep
from service.core.problems import NotFound
from service.core.settings import Settings
from service.recordings import service
from service.recordings.models import Status
from service.recordings.schemas import (
    CreatedRecording,
    Cursor,
    DownloadLink,
    RecordingOut,
    RecordingPage,
    RecordingUpdate,
    recording_create_model,
)
from service.recordings.store import RecordingRow
from service.web.openapi import PROBLEM
from service.web.read_routing import PrimaryNeeded, routed_read
from service.web.responses import model_response


def build_router(settings: Settings) -> APIRouter:
    """The /v1/recordings routes for an application with these settings."""
    RecordingCreate = recording_create_model(
        max_filename_length=settings.max_filename_length,
        max_upload_bytes=settings.max_upload_bytes,
        allowed_content_types=tuple(settings.allowed_content_types),
        multipart_threshold_bytes=settings.multipart_threshold_bytes,
    )
    router = APIRouter(
        prefix="/v1/recordings",
        tags=["recordings"],
        responses={401: PROBLEM, 404: PROBLEM, 422: PROBLEM, 503: PROBLEM},
    )

    @router.post("", status_code=status.HTTP_201_CREATED, response_model=CreatedRecording, responses={409: PROBLEM})
    # The request model is built per settings at run time: a type checker cannot see it statically.
    def create_recording(data: RecordingCreate, caller: CallerDep) -> Response:  # type: ignore[valid-type]
        """Create a recording and get the presigned upload for its bytes (POST form or multipart)."""
        with caller.connection() as connection:
            created = service.create_recording(
                connection=connection,
                storage=caller.storage,
                settings=caller.settings,
                principal=caller.principal,
                data=data,
            )
        return model_response(created, status_code=status.HTTP_201_CREATED)

    @router.get("", response_model=RecordingPage)
    def list_recordings(
        caller: CallerDep,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[Cursor | None, Query(description="next_cursor from the previous page")] = None,
        status_filter: Annotated[Status | None, Query(alias="status")] = None,
    ) -> Response:
        """The caller's recordings, newest first (deleted ones only with `status=deleted`).

        Read from the read replica when one is configured and within the lag limit."""

        def page(db: Connection, on_replica: bool) -> RecordingPage:
            rows, next_cursor = service.list_recordings(
                db, principal=caller.principal, limit=limit, cursor=cursor, status=status_filter
            )
            if on_replica and any(service.may_need_repair(row) for row in rows):
                raise PrimaryNeeded  # verifying an upload writes: the primary reads and repairs
            rows = service.repair_pending(
                db=db, storage=caller.storage, recordings=rows, max_bytes=caller.settings.max_upload_bytes
            )
            return service.page_out(rows, next_cursor)

        return model_response(routed_read(caller.settings, page))

    @router.get("/{recording_id}", response_model=RecordingOut)
    def get_recording(recording_id: uuid.UUID, caller: CallerDep) -> Response:
        with caller.connection() as connection:
            row = service.get_owned(connection, principal=caller.principal, recording_id=recording_id)
        if row.status == Status.DELETED:
            # Deleted is gone for reads (HTTP: a DELETE removes the resource); it stays listable
            # with ?status=deleted and restorable with POST .../restore.
            raise NotFound(
                "This recording was deleted; list it with ?status=deleted and bring it back with "
                f"POST /v1/recordings/{recording_id}/restore."
            )
        if service.may_need_repair(row):
            with caller.session() as session:
                (row,) = service.repair_pending(
                    db=session,
                    storage=caller.storage,
                    recordings=[row],
                    max_bytes=caller.settings.max_upload_bytes,
                )
        return model_response(service.to_out(row))

    @router.patch("/{recording_id}", response_model=RecordingOut, responses={409: PROBLEM})
    def update_recording(recording_id: uuid.UUID, data: RecordingUpdate, caller: CallerDep) -> Response:
        """Change the title and/or metadata; every other field is read-only."""
        with caller.session() as session:
            recording = service.get_owned(session, principal=caller.principal, recording_id=recording_id)
            updated = service.to_out(
                service.update_recording(session=session, settings=caller.settings, recording=recording, data=data)
            )
        return model_response(updated)

    @router.delete("/{recording_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
    def delete_recording(recording_id: uuid.UUID, caller: CallerDep) -> Response:
        with caller.session() as session:
            recording = service.get_owned(session, principal=caller.principal, recording_id=recording_id)
            service.delete_recording(session=session, storage=caller.storage, recording=recording)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/{recording_id}/restore", response_model=RecordingOut, responses={409: PROBLEM})
    def restore_recording(recording_id: uuid.UUID, caller: CallerDep) -> Response:
        """Bring back a deleted recording while its version is within the retention window."""
        with caller.session() as session:
            recording = service.get_owned(session, principal=caller.principal, recording_id=recording_id)
            restored = service.restore_recording(
                session=session, storage=caller.storage, settings=caller.settings, recording=recording
            )
            out = service.to_out(restored)
        return model_response(out)

    @router.get(
        "/{recording_id}/download",
        response_model=DownloadLink,
        responses={307: {"description": "Redirect to the presigned URL"}, 409: PROBLEM},
    )
    def download_recording(recording_id: uuid.UUID, caller: CallerDep, redirect: bool = False) -> Response:
        """A presigned GET for an available recording; read from the read replica when one is
        configured, from the primary when the replica has not seen it become available."""
        recording = routed_read(caller.settings, _downloadable(caller, recording_id))
        url, expires = service.download_link(storage=caller.storage, settings=caller.settings, recording=recording)
        if redirect:
            return RedirectResponse(url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
        return model_response(DownloadLink(url=url, expires_at=expires))

    @router.get("/{recording_id}/play", response_model=DownloadLink, responses={409: PROBLEM})
    def play_recording(recording_id: uuid.UUID, caller: CallerDep) -> Response:
        """A short-lived presigned GET for playing an audio or video recording in the page: served
        ``inline`` with the verified media type (anything else is 409; download it instead)."""
        recording = routed_read(caller.settings, _downloadable(caller, recording_id))
        url, expires = service.play_link(storage=caller.storage, settings=caller.settings, recording=recording)
        return model_response(DownloadLink(url=url, expires_at=expires))

    return router


def _downloadable(caller: Caller, recording_id: uuid.UUID) -> Callable[[Connection, bool], RecordingRow]:
    """The routed read behind download and play: the replica answers only for a recording it has
    ``available``; anything else (not there yet, just completed, restored or verified, pending
    bytes to verify) is read, and repaired, on the primary."""

    def read(db: Connection, on_replica: bool) -> RecordingRow:
        recording = service.get_owned(db, principal=caller.principal, recording_id=recording_id)
        if on_replica and recording.status != Status.AVAILABLE:
            raise PrimaryNeeded
        (recording,) = service.repair_pending(
            db=db, storage=caller.storage, recordings=[recording], max_bytes=caller.settings.max_upload_bytes
        )
        return recording

    return read
