"""Database credentials from a Secrets Manager secret (the RDS-managed master secret).

Fetched through Powertools Parameters, which caches the value; ``refresh=True`` bypasses the
cache after the database rejected the cached password (the secret may have rotated).
"""

from __future__ import annotations

import json
from typing import Any

CACHE_SECONDS = 300


def database_credentials(secret_arn: str, *, refresh: bool = False) -> dict[str, Any]:
    from aws_lambda_powertools.utilities import parameters

    # Powertools types the value as str; a SecretBinary secret comes back as bytes.
    raw: object = parameters.get_secret(secret_arn, max_age=CACHE_SECONDS, force_fetch=refresh)
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if not isinstance(value, dict) or "username" not in value or "password" not in value:
        raise ValueError("database secret must be a JSON object with username and password")
    return value


def secret_string(secret_arn: str) -> str:
    """A secret that holds one plain string (such as a bearer token), cached like the above."""
    from aws_lambda_powertools.utilities import parameters

    value: object = parameters.get_secret(secret_arn, max_age=CACHE_SECONDS)  # typed str; bytes if SecretBinary
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value.strip():
        raise ValueError("the secret must hold a non-empty string")
    return value.strip()
