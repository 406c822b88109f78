from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

# Tenant ids become the first segment of S3 keys: keep them to characters that are safe there.
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


def valid_tenant(value: str) -> bool:
    return bool(TENANT_PATTERN.fullmatch(value))


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant that owns what they create, and how they proved it."""

    tenant: str
    subject: str
    method: str  # "api_key" | "jwt" | "session"
    # When the credential stops being valid (a JWT's exp); None when only revocation ends it.
    expires_at: datetime | None = None
