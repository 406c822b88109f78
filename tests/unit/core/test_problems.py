"""The errors that become problem+json responses: status, slug, title and headers of each."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from service.core.problems import (
    RETRY_AFTER_SECONDS,
    Conflict,
    InvalidRequest,
    NotFound,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    describe_pattern,
    pattern_meaning,
)


@pytest.mark.parametrize(
    ("error", "status", "slug", "title"),
    [
        (NotFound(), 404, "not-found", "Not Found"),
        (Conflict("taken"), 409, "conflict", "Conflict"),
        (Conflict("taken", slug="verification-failed"), 409, "verification-failed", "Conflict"),
        # The phrase of 422 depends on the Python version ("Unprocessable Entity" before 3.13).
        (InvalidRequest("bad"), 422, "invalid-request", HTTPStatus(422).phrase),
        (Unauthorized(), 401, "unauthorized", "Unauthorized"),
        (ServiceUnavailable("later"), 503, "service-unavailable", "Service Unavailable"),
        (TooManyRequests("slow down", retry_after=3), 429, "too-many-requests", "Too Many Requests"),
        (ProblemError(418, "teapot", "short and stout", title="I'm a teapot"), 418, "teapot", "I'm a teapot"),
    ],
)
def test_status_slug_and_title(error, status, slug, title):
    assert isinstance(error, ProblemError)
    assert (error.status, error.slug, error.title) == (status, slug, title)


def test_the_detail_is_the_message_and_extra_members_are_kept():
    error = Conflict("3 of 5 parts are missing.", slug="parts-missing", missing_parts=[4, 5])
    assert str(error) == error.detail == "3 of 5 parts are missing."
    assert error.extra == {"missing_parts": [4, 5]}
    assert error.headers == {}


def test_unauthorized_names_the_scheme_and_whether_credentials_were_presented():
    assert Unauthorized().headers == {"WWW-Authenticate": 'Bearer realm="recordings"'}
    assert Unauthorized().presented is False
    assert Unauthorized("Invalid API key.", presented=True).presented is True


@pytest.mark.parametrize(("retry_after", "header"), [(7, "7"), (1, "1"), (0, "1"), (-5, "1")])
def test_too_many_requests_asks_to_wait_at_least_a_second(retry_after, header):
    assert TooManyRequests("slow down", retry_after=retry_after).headers == {"Retry-After": header}


def test_service_unavailable_asks_to_retry_later():
    error = ServiceUnavailable("The database is unavailable.", slug="database-unavailable", dependency="database")
    assert error.headers == {"Retry-After": RETRY_AFTER_SECONDS}
    assert int(RETRY_AFTER_SECONDS) > 0
    assert error.extra == {"dependency": "database"}


def test_a_described_pattern_is_explained_in_words():
    pattern = describe_pattern(r"^[a-z]{3}-unit-test$", "three letters and -unit-test")
    assert pattern == r"^[a-z]{3}-unit-test$"
    assert pattern_meaning(pattern) == "three letters and -unit-test"
    assert pattern_meaning(r"^unregistered$") == "a value matching the pattern stated in the API schema"
    assert pattern_meaning(r"^unregistered$", "something else") == "something else"
