"""FastAPI dependencies as Annotated aliases: SettingsDep and SessionDep for the few routes that
have no authenticated caller. The API's routes take ``service.auth.caller.CallerDep`` alone
(docs/adr/0001-one-dependency-per-route.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from service.core.db import new_session
from service.core.settings import Settings


# Dependencies that do no I/O are async: a sync dependency costs a trip through the threadpool.
async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_session(request: Request) -> AsyncIterator[Connection]:
    # Checking a connection out of the pool may connect, and closing one in a transaction sends
    # ROLLBACK: both are I/O, so they run in the threadpool (an idle one closes without any).
    session = await run_in_threadpool(new_session, request.app.state.settings)
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


SessionDep = Annotated[Connection, Depends(get_session)]
