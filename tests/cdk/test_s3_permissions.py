"""Each role that runs the service's code has exactly the S3 actions that code calls.

The S3 calls come from reading the code (tests/cdk/s3_usage.py), the IAM action of each from
``service.core.storage.S3_ACTIONS``, the roles and what runs under them from the synthesized templates
(tests/cdk/app_roles.py). A call no role can make is a missing permission; a granted action no code
reached from that role calls is one too many.
"""

from __future__ import annotations

import re
import uuid

import pytest

from ops.backup import verify as backup
from service.core.storage import BUCKET_OPERATIONS, S3_ACTIONS
from service.recordings.uploads import s3_key_for
from tests.cdk.app_roles import MANAGED_WITHOUT_S3, app_roles, recordings_bucket_name
from tests.cdk.s3_usage import CodeGraph, needed_actions

BUCKET_ACTIONS = {action for operation in BUCKET_OPERATIONS for action in S3_ACTIONS[operation]}


@pytest.fixture(scope="module")
def graph() -> CodeGraph:
    return CodeGraph()


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: ``*`` any run of characters (slashes too), ``?`` exactly one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.S) is not None


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_roles_that_run_the_code_are_found(profile) -> None:
    runs = {role.kind: [] for role in app_roles(profile)}
    for role in app_roles(profile):
        runs[role.kind].extend(role.runs)
    expected = {"handlers.s3_events.handler", "handlers.jobs.reap_handler", "handlers.jobs.migrate_handler"}
    if profile.config.features.lambda_api:
        expected.add("handlers.api.handler")
    assert set(runs["lambda"]) == expected
    if profile.config.features.ec2_service:
        assert runs["ec2"][0].startswith("serve"), runs["ec2"]
        assert any(command.startswith("reap") for command in runs["ec2"])
        # The backup checks run on a host with the backup-verification role's credentials, never
        # the instance role's (cdk/stacks/github_oidc.py).
        assert not any(command.startswith("ops ") for command in runs["ec2"])


def test_every_s3_call_the_roles_reach_has_an_iam_action(profile, graph) -> None:
    for role in app_roles(profile):
        for call in graph.calls_from(role.entries):
            assert call.actions, call  # raises, naming the call, when S3_ACTIONS lacks the operation


def test_each_role_has_exactly_the_s3_actions_its_code_calls(profile, graph) -> None:
    problems = []
    for role in app_roles(profile):
        needed = needed_actions(graph.calls_from(role.entries))
        granted = role.s3_actions()
        for action in sorted(set(needed) - granted):
            problems.append(f"{role.name} ({', '.join(role.runs)}) lacks {action}, needed by {needed[action]}")
        for action in sorted(granted - set(needed)):
            problems.append(f"{role.name} ({', '.join(role.runs)}) has {action}, which no code it runs calls")
    assert not problems, "\n".join(problems)


def test_s3_grants_name_only_the_recordings_bucket_and_its_keys(profile) -> None:
    bucket_arn = f"arn:aws:s3:::{recordings_bucket_name(profile)}"
    for role in app_roles(profile):
        assert set(role.managed_policies) <= MANAGED_WITHOUT_S3, (role.name, role.managed_policies)
        for statement in role.s3_statements():
            assert statement["Effect"] == "Allow", (role.name, statement)
            actions = set(_as_list(statement["Action"]))
            resources = _as_list(statement["Resource"])
            if actions <= BUCKET_ACTIONS:
                assert resources == [bucket_arn], (role.name, statement)
            else:
                assert not actions & BUCKET_ACTIONS, (role.name, statement)
                assert resources == [f"{bucket_arn}/*"], (role.name, statement)
            if "Condition" in statement:
                assert actions == {"s3:ListBucketVersions"}, (role.name, statement)


def _listing_patterns(role) -> list[str]:
    statements = [st for st in role.s3_statements() if "s3:ListBucketVersions" in _as_list(st["Action"])]
    patterns = []
    for statement in statements:
        # Never the whole bucket: only under a prefix that names what the code lists.
        assert set(statement.get("Condition", {})) == {"StringLike"}, (role.name, statement)
        assert set(statement["Condition"]["StringLike"]) == {"s3:prefix"}, (role.name, statement)
        patterns.extend(_as_list(statement["Condition"]["StringLike"]["s3:prefix"]))
    return patterns


@pytest.mark.parametrize("tenant", ["alice", "tenant/with/slashes", "auth0|5f7c8ec7c33c6c004bbafe82", "x"])
def test_version_listing_covers_every_recording_key_and_no_wider_prefix(profile, tenant) -> None:
    key = s3_key_for(tenant, uuid.uuid4())
    for role in app_roles(profile):
        patterns = _listing_patterns(role)
        if not patterns:
            continue
        assert any(string_like(p, key) for p in patterns), (role.name, key, patterns)
        for wider in ("", tenant, f"{tenant}/", key[:-1], "ops/", "o"):
            assert not any(string_like(p, wider) for p in patterns), (role.name, wider, patterns)


def test_no_app_role_may_list_the_restore_canary(profile) -> None:
    """The restore check runs with the backup-verification role (cdk/stacks/github_oidc.py)."""
    canary = f"{backup.CANARY_PREFIX}20260101T000000-0123abcd"
    for role in app_roles(profile):
        assert not any(string_like(p, canary) for p in _listing_patterns(role)), role.name


def test_string_like_follows_iam() -> None:
    assert string_like("*/????", "a/b/cdef")
    assert not string_like("*/????", "a/cde")
    assert string_like("ops/restore-canary/*", "ops/restore-canary/")
    assert not string_like("ops/restore-canary/*", "ops/restore-canaryX")
