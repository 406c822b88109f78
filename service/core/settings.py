"""Service configuration: one pydantic-settings class, built lazily.

Every setting comes from an environment variable of the same name in upper case (``S3_BUCKET``,
``MAX_UPLOAD_BYTES``...). With no environment at all, the defaults are the local development
setup that ``make run`` starts (SQLite file + embedded S3 server on 127.0.0.1:9000), so the CLI
and the server agree without configuration.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3 limits: 5 TiB per object, 10,000 parts, parts of 5 MiB..5 GiB (the last part may be smaller).
S3_MAX_OBJECT_BYTES = 5 * 1024 * GiB
S3_MAX_PARTS = 10_000
S3_MIN_PART_BYTES = 5 * MiB
S3_MAX_PART_BYTES = 5 * GiB
MAX_PRESIGN_EXPIRY_SECONDS = 3600

LOCAL_DATABASE_URL = "sqlite:///.local/recordings.db"
LOCAL_S3_ENDPOINT = "http://127.0.0.1:9000"
LOCAL_BUCKET = "recordings-local"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Runtime: "server" (uvicorn on EC2, pooled connections) or "lambda" (one connection).
    runtime: Literal["server", "lambda"] = "server"
    environment: str = "local"
    log_level: str = "INFO"
    root_path: str = ""

    # Database: a URL, or a Secrets Manager secret holding username/password (+ host/port/dbname).
    # These are the application role's credentials (read and write rows, no DDL). Migrations run
    # with the owner's credentials when DATABASE_MIGRATION_URL or ..._SECRET_ARN is set, and then
    # also create the application role, grant it its rights and set the statement timeout.
    database_url: SecretStr = SecretStr(LOCAL_DATABASE_URL)
    database_secret_arn: str | None = None
    database_migration_url: SecretStr | None = None
    database_migration_secret_arn: str | None = None
    # TLS to the database: libpq's sslmode ("verify-full" in AWS, with the RDS and Amazon root CA
    # bundle that the images ship) and the CA file. Unset: libpq's defaults (local runs, tests).
    database_sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    database_sslrootcert: str | None = None
    database_host: str | None = None
    database_port: int = 5432
    database_name: str = "recordings"
    # Connections kept open per process. Overflow connections are closed as soon as they are
    # returned, so a load above the pool's size would open and close one per request (a TCP and
    # TLS handshake, and through RDS Proxy a new client session each time): size the pool for the
    # load and leave the overflow for the rare burst.
    db_pool_size: int = Field(default=20, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # A full ping (SELECT 1) before every checkout; off by default, since every checkout already
    # checks the socket (no round trip) and drops connections the server has closed.
    db_pool_pre_ping: bool = False
    # Set on the database by the migration (ALTER DATABASE ... SET), never as a startup option:
    # RDS Proxy refuses startup options, and a session-level SET would pin proxy connections.
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    # Read replica(s) for the list and download routes (service/web/read_routing.py). Either a URL
    # (local runs, tests) or replica host names (comma-separated: libpq picks one at random and
    # tries the next when one is down) reached with the application's credentials (the same
    # role exists on a physical replica). Unset: every read goes to the primary.
    database_read_url: SecretStr | None = None
    database_read_host: str | None = None
    database_read_port: int | None = None  # default: database_port
    # A replica whose replay is further behind than this serves no reads (the primary does).
    database_read_max_lag_seconds: float = Field(default=1.0, ge=0, le=300)
    # After the replica failed to answer, reads skip it for this long (no connect timeout per
    # request while it is down).
    database_read_retry_seconds: float = Field(default=30.0, ge=0, le=3600)

    # Storage.
    s3_bucket: str = LOCAL_BUCKET
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    s3_connect_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    s3_read_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)

    # Uploads.
    max_upload_bytes: int = Field(default=5 * GiB, ge=1, le=S3_MAX_OBJECT_BYTES)
    multipart_threshold_bytes: int = Field(default=100 * MiB, ge=S3_MIN_PART_BYTES, le=S3_MAX_PART_BYTES)
    multipart_part_bytes: int = Field(default=64 * MiB, ge=S3_MIN_PART_BYTES, le=S3_MAX_PART_BYTES)
    allowed_content_types: CsvList = ["audio/*", "video/*", "application/octet-stream"]
    presign_expires_seconds: int = Field(default=900, ge=60, le=MAX_PRESIGN_EXPIRY_SECONDS)
    upload_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    restore_window_days: int = Field(default=30, ge=1)
    max_filename_length: int = Field(default=255, ge=1, le=1024)
    max_metadata_bytes: int = Field(default=16 * 1024, ge=2, le=16 * 1024)
    max_request_body_bytes: int = Field(default=1 * MiB, ge=1024)
    # Per-tenant limits against resource exhaustion (0 turns a limit off). The request rate is a
    # token bucket kept in each process: N processes allow up to N times the rate in total.
    rate_limit_per_minute: int = Field(default=1200, ge=0)
    rate_limit_burst: int = Field(default=0, ge=0)  # 0: the bucket holds one minute's worth
    max_pending_uploads_per_tenant: int = Field(default=1000, ge=0)
    # Credentials presented and refused, per client address and minute (0 turns it off); above
    # it the address gets 429 with Retry-After. Kept in each process, like the request rate.
    auth_failures_per_minute: int = Field(default=30, ge=0)

    # HTTP.
    cors_origins: CsvList = []
    public_base_url: str = "http://127.0.0.1:8000"
    # Lambda: the custom domain's base path mapping ("recordings" for api.example.com/recordings/...).
    api_gateway_base_path: str = ""

    # Browser sessions (the upload page and Uppy): an opaque random token in an HttpOnly cookie,
    # stored server-side only as a hash, so no signing secret exists to configure or leak.
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    session_cookie_name: str = Field(default="recordings_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # None: Secure whenever the request arrived over HTTPS (or PUBLIC_BASE_URL is https).
    session_cookie_secure: bool | None = None

    # Auth: API keys always; JWT when an issuer and a JWKS URL are configured.
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: CsvList = ["RS256"]
    jwt_tenant_claim: str = "sub"
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Tokens valid for longer (exp - iat) are refused: a leaked token stays useful only so long.
    jwt_max_lifetime_seconds: int = Field(default=3600, ge=60, le=24 * 3600)

    # Observability.
    metrics_enabled: bool = True
    # /metrics answers only with `Authorization: Bearer <token>` when a token is configured,
    # given directly or as a Secrets Manager secret holding it (what the CDK deployments pass).
    metrics_token: SecretStr | None = None
    metrics_token_secret_arn: str | None = None
    # The interactive documentation (/docs, /redoc); /openapi.json stays, clients generate from it.
    docs_enabled: bool = True

    _split = field_validator("allowed_content_types", "cors_origins", "jwt_algorithms", mode="before")(
        staticmethod(_split_csv)
    )

    @field_validator("jwt_algorithms")
    @classmethod
    def _only_asymmetric(cls, algorithms: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}
        bad = [alg for alg in algorithms if alg not in allowed]
        if bad:
            raise ValueError(f"JWT algorithms must be asymmetric; not allowed: {', '.join(bad)}")
        return algorithms

    @field_validator(
        "s3_endpoint_url",
        "database_secret_arn",
        "database_migration_secret_arn",
        "database_sslrootcert",
        "database_sslmode",
        "database_migration_url",
        "database_host",
        "database_read_url",
        "database_read_host",
        "database_read_port",
        "jwt_issuer",
        "jwt_audience",
        "jwt_jwks_url",
        "metrics_token_secret_arn",
        mode="before",
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.environment == "local" and "s3_endpoint_url" not in self.model_fields_set:
            # Local development talks to the embedded S3 server that `make run` starts.
            self.s3_endpoint_url = LOCAL_S3_ENDPOINT
        if self.multipart_threshold_bytes > self.max_upload_bytes:
            self.multipart_threshold_bytes = self.max_upload_bytes
        if (self.jwt_issuer or self.jwt_jwks_url) and not (self.jwt_issuer and self.jwt_jwks_url and self.jwt_audience):
            # A token for any client of the issuer would do without an audience.
            raise ValueError("JWT needs JWT_ISSUER, JWT_JWKS_URL and JWT_AUDIENCE together")
        return self

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_issuer and self.jwt_jwks_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
