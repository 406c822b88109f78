"""moto's server with IAM enforced, as strict as S3 where the service depends on it.

Run in a process of its own (IAM enforcement is server-wide, so the suite's shared S3 server
cannot have it): ``INITIAL_NO_AUTH_ACTION_COUNT=<n> python tests/iam/moto_iam_server.py``. It
prints the port it listens on as its first line. The first ``n`` requests (the admin user the
tests then use for setup) pass unauthenticated; every later one is authenticated and authorized.

moto (5.x) checks header-signed requests against the caller's IAM user policies: actions and
resources. For S3 this adds what the service relies on and moto lacks, so that a policy passing
here passes in AWS:

- **Presigned URLs and browser POST uploads.** moto's check needs an ``Authorization`` header
  (otherwise it fails with a 500). Here the query-string SigV4 signature or the POST policy's
  signature is verified with the signer's secret, expiry is checked, and the action (PutObject,
  UploadPart's PutObject, GetObject) is authorized against the signer's policies, as S3 does.
- **S3's action names where moto's differ**: HeadBucket needs ``s3:ListBucket`` (moto asks for
  ``s3:HeadBucket``); HeadObject of a version needs ``s3:GetObjectVersion`` (moto:
  ``s3:GetObject``).
- **403 instead of 404** for HeadObject/GetObject of a missing key when the caller may not
  ``s3:ListBucket`` the bucket.
- **Conditions on ``s3:prefix``** (``StringLike``, ``StringEquals``): moto evaluates policy
  conditions only in role trust policies. Any other condition key or operator is refused
  loudly, never ignored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlparse

from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import (
    CreateAccessKeyFailure,
    IAMPolicy,
    IAMPolicyStatement,
    PermissionResult,
    S3IAMRequest,
    create_access_key,
)
from moto.s3.exceptions import (
    BucketAccessDeniedError,
    S3AccessDeniedError,
    S3InvalidAccessKeyIdError,
    S3SignatureDoesNotMatchError,
)
from moto.server import ThreadedMotoServer

SUPPORTED_CONDITIONS = {"StringLike": ("s3:prefix",), "StringEquals": ("s3:prefix",)}
# moto's action name -> the one S3 authorizes the operation with.
S3_ACTION_NAMES = {"HeadBucket": "ListBucket"}
_original = ActionAuthenticatorMixin._authenticate_and_authorize_action


class UnsupportedCondition(Exception):
    pass


def string_like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.S) is not None


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def conditions_hold(conditions: dict, context: dict[str, str]) -> bool:
    for operator, entries in conditions.items():
        for key, expected in entries.items():
            if key not in SUPPORTED_CONDITIONS.get(operator, ()):
                raise UnsupportedCondition(f"{operator} on {key}")
            value = context.get(key)
            if value is None:  # no IfExists: a missing key never matches
                return False
            match = string_like if operator == "StringLike" else str.__eq__
            if not any(match(pattern, value) for pattern in _as_list(expected)):
                return False
    return True


def permitted(policies: list, action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's evaluation for one identity: an explicit Deny wins, else any Allow."""
    allowed = False
    for policy in policies:
        document = IAMPolicy(policy)._policy_json
        for statement in _as_list(document["Statement"]):
            if "Condition" in statement:
                if not conditions_hold(statement["Condition"], context):
                    continue  # a statement whose condition fails does not apply
                statement = {k: v for k, v in statement.items() if k != "Condition"}
            result = IAMPolicyStatement(statement).is_action_permitted(action, resource)
            if result == PermissionResult.DENIED:
                return False
            allowed = allowed or result == PermissionResult.PERMITTED
    return allowed


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _principal(response: Any, access_key_id: str) -> Any:
    try:
        return create_access_key(
            account_id=response.current_account, partition="aws", access_key_id=access_key_id, headers={}
        )
    except CreateAccessKeyFailure:
        raise S3InvalidAccessKeyIdError() from None


def _presigned_principal(response: Any) -> Any:
    """Query-string SigV4 (a presigned URL): verify it the way S3 does."""
    query = urlparse(response.uri).query
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise S3AccessDeniedError()  # anonymous: the bucket is private
    access_key_id, date, region, service, _ = params["X-Amz-Credential"].split("/")
    principal = _principal(response, access_key_id)
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if datetime.now(UTC) > signed_at + timedelta(seconds=int(params["X-Amz-Expires"])):
        raise S3AccessDeniedError()  # S3: "Request has expired"
    pairs = sorted(pair.partition("=")[::2] for pair in query.split("&") if pair)
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs if k != "X-Amz-Signature")
    signed_headers = params["X-Amz-SignedHeaders"]
    headers = "".join(
        f"{name}:{' '.join(response.headers.get(name, '').split())}\n" for name in signed_headers.split(";")
    )
    payload = params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
    canonical = "\n".join([response.method, response.raw_path, canonical_query, headers, signed_headers, payload])
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    secret = principal._secret_access_key
    expected = hmac.new(_signing_key(secret, date, region, service), string_to_sign.encode(), hashlib.sha256)
    if not hmac.compare_digest(expected.hexdigest(), params.get("X-Amz-Signature", "")):
        raise S3SignatureDoesNotMatchError()
    return principal


def _post_policy_principal(response: Any, bucket: str) -> tuple[Any, str]:
    """A browser POST upload: verify the policy's signature, expiry, bucket and key."""
    form = {k.lower(): v[0] if isinstance(v, list) else v for k, v in response.querystring.items()}
    if "policy" not in form or "x-amz-signature" not in form:
        raise S3AccessDeniedError()
    access_key_id, date, region, service, _ = form["x-amz-credential"].split("/")
    principal = _principal(response, access_key_id)
    signature = hmac.new(
        _signing_key(principal._secret_access_key, date, region, service), form["policy"].encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(signature, form["x-amz-signature"]):
        raise S3SignatureDoesNotMatchError()
    policy = json.loads(base64.b64decode(form["policy"]))
    if datetime.now(UTC) > datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00")):
        raise S3AccessDeniedError()
    key = form["key"]
    for condition in policy.get("conditions", []):
        if isinstance(condition, dict):
            condition = ["eq", f"${next(iter(condition))}", next(iter(condition.values()))]
        operator, field, value = condition if len(condition) == 3 else (None, None, None)
        if field == "$key" and not (key == value if operator == "eq" else key.startswith(value)):
            raise S3AccessDeniedError()
        if field == "$bucket" and value != bucket:
            raise S3AccessDeniedError()
    return principal, key


def _authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    if iam_request_cls is not S3IAMRequest or ActionAuthenticatorMixin.request_count < (
        settings.INITIAL_NO_AUTH_ACTION_COUNT
    ):
        return _original(self, iam_request_cls, resource)
    action = self._get_action()
    action = S3_ACTION_NAMES.get(action, action)
    bucket, _, key = resource.removeprefix("arn:aws:s3:::").partition("/")
    query = {k: v[0] if isinstance(v, list) else v for k, v in self.querystring.items()}
    if self.method == "HEAD" and key and "versionId" in query:
        action = "GetObjectVersion"
    if "Authorization" in self.headers:
        path = self.raw_path + (f"?{urlparse(self.uri).query}" if urlparse(self.uri).query else "")
        request = iam_request_cls(
            account_id=self.current_account,
            method=self.method,
            path=path,
            data=self.data,
            body=self.raw_body,
            headers=self.headers,
            action=action,
        )
        request.check_signature()
        principal = request._access_key
    elif self.method == "POST" and not key:
        principal, key = _post_policy_principal(self, bucket)
        resource = f"arn:aws:s3:::{bucket}/{key}"
    else:
        principal = _presigned_principal(self)
    policies = principal.collect_policies()
    context = {"s3:prefix": query["prefix"]} if "prefix" in query and not key else {}
    try:
        allowed = permitted(policies, f"s3:{action}", resource, context)
    except UnsupportedCondition as exc:
        print(f"moto_iam_server: unsupported policy condition {exc}", file=sys.stderr, flush=True)
        raise
    if not allowed:
        raise BucketAccessDeniedError(bucket) if not key else S3AccessDeniedError()
    if key and action in ("GetObject", "GetObjectVersion") and self.method in ("GET", "HEAD"):
        exists = self.backend.get_object(bucket, key, version_id=query.get("versionId")) is not None
        if not exists and not permitted(policies, "s3:ListBucket", f"arn:aws:s3:::{bucket}", {}):
            raise S3AccessDeniedError()  # S3 hides whether the key exists


def main() -> None:
    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    print(server.get_host_and_port()[1], flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
