"""The lazy handler of the Lambda entrypoints: built once, on the first invocation, with the
garbage collector paused while it builds."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.runtime import lazy_handler


@pytest.fixture
def collecting() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_handler_is_built_once_with_collection_paused(collecting):
    seen: list[bool] = []

    def build() -> Any:
        seen.append(gc.isenabled())
        return lambda event, context: event["n"] * 2

    handler = lazy_handler(build)
    assert seen == []  # nothing is built at import
    assert handler({"n": 2}, None) == 4
    assert handler({"n": 5}, None) == 10
    assert seen == [False]  # built once, while the collector was paused
    assert gc.isenabled()  # and collecting again for the invocations


def test_a_failed_build_resumes_collection_and_is_tried_again(collecting):
    attempts: list[bool] = []

    def build() -> Any:
        attempts.append(gc.isenabled())
        if len(attempts) == 1:
            raise RuntimeError("the secret could not be read")
        return lambda event, context: "served"

    handler = lazy_handler(build)
    with pytest.raises(RuntimeError, match="secret"):
        handler({}, None)
    assert gc.isenabled()
    assert handler({}, None) == "served"
    assert attempts == [False, False]


def test_a_process_that_had_collection_off_keeps_it_off():
    was = gc.isenabled()
    gc.disable()
    try:
        lazy_handler(lambda: lambda event, context: None)({}, None)
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
