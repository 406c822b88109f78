"""API Gateway (HTTP API payload v2, REST API v1) -> the FastAPI app, through Mangum."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from mangum import Mangum
from mangum.protocols.http import HTTPCycle
from mangum.types import ASGI, Response

from handlers.gateway import GatewayRootPath
from handlers.runtime import Handler, lambda_entrypoint, lazy_handler

_Request = tuple[HTTPCycle, contextvars.Context, "asyncio.Future[None]"]


class ResidentTask:
    """Run every invocation's ASGI cycle inside one long-lived task on the event loop.

    Mangum runs each invocation as a new task (``run_until_complete``). anyio takes that task
    for the root of the run and stops its worker threads when it ends, so each invocation of a
    synchronous route (FastAPI runs those in anyio's threads) started a thread and stopped it
    again. Here the cycles run one after another in a task that outlives them: the threads stay
    for the next invocation, as they do in the server. The invocation's context variables (the
    EMF invocation flag, the logger's keys) are set in the task for the cycle's duration, as a
    task created per invocation would have copied them.

    anyio's threads are not daemons: a process that ends (a local run; Lambda freezes and kills
    its environments instead) waits for them. ``close`` ends the task, and with it the threads;
    it runs when the interpreter shuts down, before it waits for its threads (the hook
    ``concurrent.futures`` stops its own workers with).
    """

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self._inboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue[_Request]] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()
        threading._register_atexit(self.close)  # type: ignore[attr-defined]  # see the docstring

    def __call__(self, cycle: HTTPCycle) -> Response:
        """Run ``cycle`` to its end on this thread's event loop; its response."""
        loop = asyncio.get_event_loop()
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes[loop] = asyncio.Queue()
            task = loop.create_task(self._serve(inbox))
            self._tasks.add(task)  # a task only the loop refers to may be garbage collected
            task.add_done_callback(self._tasks.discard)
        done: asyncio.Future[None] = loop.create_future()
        inbox.put_nowait((cycle, contextvars.copy_context(), done))
        loop.run_until_complete(done)
        return {"status": cycle.status, "headers": cycle.headers, "body": cycle.body}

    def close(self) -> None:
        """End the resident tasks whose loops are idle, and anyio's threads with them."""
        for task in list(self._tasks):
            loop = task.get_loop()
            if loop.is_closed() or loop.is_running():
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)  # its done callbacks stop the threads

    async def _serve(self, inbox: asyncio.Queue[_Request]) -> None:
        while True:
            cycle, context, done = await inbox.get()
            tokens = [(variable, variable.set(value)) for variable, value in context.items()]
            try:
                await cycle.run(self.app)  # answers 500 itself when the app fails
            except BaseException as exc:  # the invocation gets it; the task lives on
                if not done.done():
                    done.set_exception(exc)
            else:
                done.set_result(None)
            finally:
                for variable, token in reversed(tokens):
                    variable.reset(token)


def build_handler(app: Any, *, base_path: str | None = None) -> Handler:
    """The Lambda handler for API Gateway HTTP API (v2) and REST API (v1) events around ``app``.

    Mangum translates the event into an ASGI request and the response back; the request runs in
    a ``ResidentTask``. Mangum's lifespan is off: it would run on every invocation, and nothing
    depends on it.
    """
    if base_path is None:
        base_path = app.state.settings.api_gateway_base_path
    adapter = Mangum(GatewayRootPath(app, base_path), lifespan="off", api_gateway_base_path="/")
    resident = ResidentTask(adapter.app)

    # API_GATEWAY_HTTP and API_GATEWAY_REST name the same field: requestContext.requestId.
    @lambda_entrypoint(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    def api(event: dict[str, Any], context: Any) -> dict[str, Any]:
        # Mangum.__call__ without a lifespan: the event's handler, one HTTP cycle, its response.
        gateway = adapter.infer(event, context)
        return gateway(resident(HTTPCycle(gateway.scope, gateway.body)))

    return api


def _build_service_handler() -> Handler:
    # The app's modules (FastAPI routes, models, SQLAlchemy's engine) are imported with the app
    # itself, on the first invocation: importing this module costs the adapter alone.
    from service.api.app import create_app

    return build_handler(create_app())


# Settings and the app are built on the first invocation, never at import.
handler = lazy_handler(_build_service_handler)
