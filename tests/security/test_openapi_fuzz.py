"""schemathesis against the app's own OpenAPI schema, in process (ASGI), authenticated as a
tenant: every operation, positive and negative data, default checks, a fixed seed."""

from __future__ import annotations

import os
from collections import Counter

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.main import create_app
from tests.conftest import make_settings

# positive_data_acceptance is left out until the schema carries every rule the app enforces
# (media-type and filename patterns, the opaque cursor's alphabet, Uppy's metadata[size], and
# limits that depend on settings): today it flags 422s for such inputs, which are correct answers.
EXCLUDED_CHECKS = [positive_data_acceptance]
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))  # per operation and mode


@pytest.fixture
def fuzz_app(migrated, s3_endpoint, settings):
    # The run makes thousands of requests as one tenant: the rate limit would answer 429.
    return create_app(make_settings(migrated, s3_endpoint, s3_bucket=settings.s3_bucket, rate_limit_per_minute=0))


def _fuzzer(operation, mode, label, totals, headers):
    @hypothesis.settings(
        max_examples=EXAMPLES,
        derandomize=True,  # a fixed seed: the same cases on every run
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        totals[label] += 1
        case.call_and_validate(headers=headers, excluded_checks=EXCLUDED_CHECKS)

    return run


def test_schemathesis_every_operation(fuzz_app, alice):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    totals: Counter = Counter()
    failures: dict[str, str] = {}
    for operation in operations:
        has_input = bool(operation.path_parameters or operation.query or operation.headers or operation.body)
        modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,)
        for mode in modes:
            label = f"{operation.label} [{mode.value}]"

            run = _fuzzer(operation, mode, label, totals, alice.headers)
            try:
                run()
            except BaseException as exc:
                failures[label] = f"{type(exc).__name__}: {str(exc)[:1500]}"
    print(f"\nschemathesis: {len(operations)} operations, {sum(totals.values())} examples")
    for label, count in sorted(totals.items()):
        print(f"  {count:4d}  {label}")
    assert len(operations) >= 15
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())
