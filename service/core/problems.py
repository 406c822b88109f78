"""The errors the app raises that become RFC 9457 problem+json responses (rendered by
service.web.errors), and the registry of what schema patterns mean in words."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "5"


class ProblemError(Exception):
    """An error that becomes a problem+json response."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.headers = headers or {}
        self.extra = extra


class NotFound(ProblemError):
    def __init__(self, detail: str = "Recording not found.") -> None:
        super().__init__(404, "not-found", detail)


class Conflict(ProblemError):
    def __init__(self, detail: str, slug: str = "conflict", **extra: Any) -> None:
        super().__init__(409, slug, detail, **extra)


class InvalidRequest(ProblemError):
    def __init__(self, detail: str, slug: str = "invalid-request", **extra: Any) -> None:
        super().__init__(422, slug, detail, **extra)


class Unauthorized(ProblemError):
    def __init__(self, detail: str = "Missing or invalid credentials.", *, presented: bool = False) -> None:
        super().__init__(
            401,
            "unauthorized",
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="recordings"'},
        )
        # Credentials were sent and refused (as opposed to none sent): counts as a failed attempt.
        self.presented = presented


class ServiceUnavailable(ProblemError):
    def __init__(self, detail: str, slug: str = "service-unavailable", **extra: Any) -> None:
        super().__init__(503, slug, detail, headers={"Retry-After": RETRY_AFTER_SECONDS}, **extra)


class TooManyRequests(ProblemError):
    def __init__(self, detail: str, *, retry_after: int, slug: str = "too-many-requests") -> None:
        super().__init__(429, slug, detail, headers={"Retry-After": str(max(1, retry_after))})


# What a pattern in the schema means, in words, for the 422 that names it (registered by the
# models that use the pattern).
_PATTERN_HINTS: dict[str, str] = {}


def describe_pattern(pattern: str, meaning: str) -> str:
    _PATTERN_HINTS[pattern] = meaning
    return pattern


def pattern_meaning(pattern: str, default: str = "a value matching the pattern stated in the API schema") -> str:
    """What a pattern registered with ``describe_pattern`` asks for, in words."""
    return _PATTERN_HINTS.get(pattern, default)
