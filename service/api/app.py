"""The FastAPI application. Knows nothing about Lambda or CDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.api import health
from service.auth.routes import router as auth_router
from service.browser.page import install_page
from service.browser.routes import build_uppy_create_router, config_router, s3_router
from service.core.heap import freeze_startup_heap
from service.core.settings import Settings, get_settings
from service.observability.metrics import http as http_metrics
from service.recordings.routes import build_router as recordings_router
from service.recordings.upload_routes import router as uploads_router
from service.web.errors import document_problem_responses, install_error_handlers
from service.web.methods import OptionsMiddleware
from service.web.middleware import EdgeMiddleware
from service.web.openapi import document_links
from service.web.routing import add_routes


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Nothing is created here (engines and clients are lazy); only clean up on shutdown.
    freeze_startup_heap()
    yield
    from service.core.db import dispose_engines

    dispose_engines()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Recordings API",
        version="1.0.0",
        summary="Store large recordings in S3 through presigned uploads, with their metadata in PostgreSQL.",
        root_path=settings.root_path,
        lifespan=_lifespan,
        docs_url="/docs" if settings.docs_enabled else None,
        redoc_url="/redoc" if settings.docs_enabled else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    document_problem_responses(app)
    document_links(app)
    # The busiest routes first: a request is matched against the routers in this order.
    for router in (
        recordings_router(settings),
        uploads_router,
        health.router,
        auth_router,
        config_router,
        s3_router,
        build_uppy_create_router(settings),
    ):
        add_routes(app, router)
    install_page(app)
    metrics = http_metrics.install_metrics(app, settings)
    if settings.cors_origins:
        # Inside CORS: a preflight is answered by CORS, any other OPTIONS here (204 + Allow).
        app.add_middleware(OptionsMiddleware, routes=app.router.routes)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=True,
            max_age=600,
        )
    app.add_middleware(
        EdgeMiddleware,
        max_bytes=settings.max_request_body_bytes,
        metrics=metrics,
        # Part URL batches and pages of recordings repeat long prefixes: they compress ~5x.
        gzip_minimum_size=1024,
        options_routes=None if settings.cors_origins else app.router.routes,
    )
    return app


def __getattr__(name: str) -> FastAPI:
    # `service.api.app:app` for uvicorn, built on first access rather than at import.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
