"""The upload page: static files from service/static, served by the app itself (no build step)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from service.core.settings import Settings
from service.web.deps import SettingsDep
from service.web.routing import add_routes

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(include_in_schema=False)


def _s3_origin(settings: Settings) -> str:
    if settings.s3_endpoint_url:
        parts = urlsplit(settings.s3_endpoint_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"https://{settings.s3_bucket}.s3.{settings.aws_region}.amazonaws.com https://{settings.s3_bucket}.s3.amazonaws.com"


def content_security_policy(settings: Settings) -> str:
    # Bytes go straight to the bucket, so it is the only other origin the page may talk to.
    # Uppy sets inline style attributes, hence 'unsafe-inline' for styles only.
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' {_s3_origin(settings)}",
            "img-src 'self' data: blob:",
            # Recordings play from short-lived presigned URLs of the bucket.
            f"media-src {_s3_origin(settings)}",
            "style-src 'self' 'unsafe-inline'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@router.get("/")
def upload_page(settings: SettingsDep) -> FileResponse:
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": content_security_policy(settings)},
    )


def install_page(app: FastAPI) -> None:
    add_routes(app, router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
