"""The application's environment variables (the contract in service/config.py), in one place."""

from __future__ import annotations

from cdk.config import DeploymentConfig
from cdk.constructs.database import DB_CA_BUNDLE


def app_environment(
    config: DeploymentConfig,
    *,
    runtime: str,
    database_host: str,
    database_port: int,
    database_secret_arn: str,
    bucket_name: str,
    db_pool_size: int,
    db_max_overflow: int,
    public_base_url: str | None,
    database_read_host: str | None = None,
) -> dict[str, str]:
    app = config.app
    env = {
        "ENVIRONMENT": config.env_name,
        "RUNTIME": runtime,
        "DATABASE_SECRET_ARN": database_secret_arn,
        "DATABASE_HOST": database_host,
        "DATABASE_PORT": str(database_port),
        "DATABASE_NAME": config.database.database_name,
        # TLS with the certificate and host name verified, against the bundle the image ships.
        "DATABASE_SSLMODE": "verify-full",
        "DATABASE_SSLROOTCERT": DB_CA_BUNDLE,
        "S3_BUCKET": bucket_name,
        "CORS_ORIGINS": ",".join(config.allowed_origins),
        "LOG_LEVEL": app.log_level,
        "PRESIGN_EXPIRES_SECONDS": str(app.presign_expires_seconds),
        "UPLOAD_TTL_SECONDS": str(app.upload_ttl_seconds),
        "DB_POOL_SIZE": str(db_pool_size),
        "DB_MAX_OVERFLOW": str(db_max_overflow),
        "METRICS_ENABLED": "true" if app.metrics_enabled else "false",
    }
    if public_base_url:
        env["PUBLIC_BASE_URL"] = public_base_url
    if database_read_host:
        # The replicas' own endpoints, with the app's secret (service/read_routing.py).
        env.update(
            DATABASE_READ_HOST=database_read_host,
            DATABASE_READ_PORT=str(config.database.port),
            DATABASE_READ_MAX_LAG_SECONDS=f"{config.database.read_max_lag_seconds:g}",
        )
    optional = {
        "JWT_ISSUER": app.jwt_issuer,
        "JWT_AUDIENCE": app.jwt_audience,
        "JWT_JWKS_URL": app.jwt_jwks_url,
        "JWT_TENANT_CLAIM": app.jwt_tenant_claim,
    }
    env.update({k: v for k, v in optional.items() if v})
    return env
