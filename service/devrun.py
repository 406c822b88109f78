"""The local run behind ``make run``: SQLite, moto's S3 server in-process, and the API.

The embedded S3 server keeps objects in memory, so the local database starts fresh with it on
every run; both live under .local/.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from service.core.settings import LOCAL_BUCKET, LOCAL_DATABASE_URL, Settings

LOCAL_OWNER = "dev"


@contextmanager
def embedded_s3(port: int = 0) -> Iterator[str]:
    """moto's S3 server on loopback (port 0: any free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.stop()


def prepare_bucket(settings: Settings, origins: list[str]) -> None:
    """Create the bucket as production has it: versioned, with CORS for the browser origins."""
    from service.core.storage import s3_client

    client = s3_client(settings)
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    if settings.s3_bucket not in existing:
        client.create_bucket(Bucket=settings.s3_bucket)
    client.put_bucket_versioning(Bucket=settings.s3_bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_cors(
        Bucket=settings.s3_bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": origins,
                    "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["ETag", "Location"],
                    "MaxAgeSeconds": 3000,
                }
            ]
        },
    )


def run_local(*, host: str, port: int, s3_port: int) -> int:
    import uvicorn

    from service.api.app import create_app
    from service.auth.api_keys import create_api_key
    from service.core import migrate
    from service.core.db import session_scope
    from service.observability.logging import configure_logging

    Path(".local").mkdir(exist_ok=True)
    Path(".local/recordings.db").unlink(missing_ok=True)
    base_url = f"http://{host}:{port}"
    origins = [base_url, f"http://localhost:{port}"]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the S3 server's per-request lines
    with embedded_s3(s3_port) as s3_endpoint:
        settings = Settings(
            environment="local",
            database_url=SecretStr(LOCAL_DATABASE_URL),
            s3_endpoint_url=s3_endpoint,
            s3_bucket=LOCAL_BUCKET,
            public_base_url=base_url,
            cors_origins=origins,
        )
        configure_logging(settings.log_level)
        prepare_bucket(settings, origins)
        migrate.upgrade(settings)
        with session_scope(settings) as session:
            key = create_api_key(session, owner=LOCAL_OWNER, name="local development")
        key_file = Path(".local/dev-api-key")
        key_file.touch(mode=0o600)
        key_file.write_text(key.token + "\n")
        print(
            f"\nUpload page         {base_url}/   (sign in with the key below)\n"
            f"Recordings API      {base_url}   (docs: {base_url}/docs)\n"
            f"Embedded S3 server  {settings.s3_endpoint_url}   bucket: {settings.s3_bucket}\n"
            f"Development API key (owner '{LOCAL_OWNER}', also in {key_file}):\n{key.token}\n",
            flush=True,
        )
        uvicorn.run(create_app(settings), host=host, port=port, log_config=None)
    return 0
