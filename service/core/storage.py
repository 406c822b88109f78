"""The only module that talks to S3. One boto3 client per process and configuration.

Missing objects and uploads come back as ``None``/``False``. Other failures are logged and counted
(``recordings_storage_errors_total``) and raised as one of two problems:

- ``StorageUnavailable`` (503 with ``Retry-After``): throttling, timeouts, connection errors and
  S3 5xx, where retrying helps;
- ``StorageRejected`` (500, generic body): S3 refused the request for a reason a retry does not
  fix (``AccessDenied``, ``NoSuchBucket``, ``InvalidAccessKeyId``, ...). The log line names the
  operation, the IAM action it needs and the resource, so a missing permission reads as one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from service.core import signals
from service.core.problems import ProblemError, ServiceUnavailable
from service.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("service.core.storage")

# Endpoint URL, region, connect and read timeouts, max attempts, local environment.
_ClientKey = tuple[str | None, str, float, float, int, bool]
_clients: dict[_ClientKey, S3Client] = {}
_lock = threading.Lock()
_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchUpload"})
# Parts that S3 will not assemble: the caller turns these into a 422 for the client.
_REJECTED_PARTS = frozenset({"InvalidPart", "InvalidPartOrder", "EntityTooSmall"})

# The IAM actions each S3 operation of the service needs (AWS: "Actions, resources, and condition
# keys for Amazon S3"). On a specific version, the object actions become their *Version form.
# The error log names the action from here, and tests/cdk/test_s3_permissions.py maps every S3
# call it finds in the code through this table to check the roles in the synthesized templates.
S3_ACTIONS: dict[str, tuple[str, ...]] = {
    "head_bucket": ("s3:ListBucket",),
    # s3:ListBucket too: without it S3 answers 403, not 404, for a key that does not exist, and
    # `head` must tell "nothing uploaded yet" from "forbidden".
    "head_object": ("s3:GetObject", "s3:ListBucket"),
    "get_object": ("s3:GetObject",),
    "put_object": ("s3:PutObject",),  # also the browser's presigned POST (PostObject)
    "create_multipart_upload": ("s3:PutObject",),
    "upload_part": ("s3:PutObject",),
    "complete_multipart_upload": ("s3:PutObject",),
    "abort_multipart_upload": ("s3:AbortMultipartUpload",),
    "list_parts": ("s3:ListMultipartUploadParts",),
    "delete_object": ("s3:DeleteObject",),
    "list_object_versions": ("s3:ListBucketVersions",),
    "get_bucket_versioning": ("s3:GetBucketVersioning",),
}
VERSIONED_ACTIONS = {"s3:GetObject": "s3:GetObjectVersion", "s3:DeleteObject": "s3:DeleteObjectVersion"}
# Operations on the bucket itself (resource ``arn:aws:s3:::bucket``); the others act on an object.
BUCKET_OPERATIONS = frozenset({"head_bucket", "list_object_versions", "get_bucket_versioning"})

# Errors where a retry may succeed: throttling, timeouts and S3's own failures (and any 5xx).
_RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
        "OperationAborted",
        "InternalError",
        "ServiceUnavailable",
    }
)


def iam_actions(operation: str, *, versioned: bool = False) -> tuple[str, ...]:
    """The IAM actions one S3 operation needs (``versioned``: it names a VersionId)."""
    actions = S3_ACTIONS[operation]
    return tuple(VERSIONED_ACTIONS.get(a, a) for a in actions) if versioned else actions


def api_name(operation: str) -> str:
    """``delete_object`` -> ``DeleteObject`` (the name in S3's documentation and error messages)."""
    return "".join(part.title() for part in operation.split("_"))


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_retryable(exc: Exception) -> bool:
    """Throttling, timeouts, connection errors and 5xx: worth a retry. Anything else S3 answers
    (permissions, missing bucket, bad credentials, wrong region) and botocore's own errors
    (no credentials, invalid parameters) fail the same way again."""
    if isinstance(exc, ClientError):
        status = _http_status(exc) or 0
        return error_code(exc) in _RETRYABLE_CODES or status >= 500
    return isinstance(exc, BotoConnectionError | HTTPClientError)


class StorageUnavailable(ServiceUnavailable):
    def __init__(self, detail: str = "Object storage is unavailable; retry shortly.") -> None:
        super().__init__(detail, slug="storage-unavailable")


class StorageRejected(ProblemError):
    """S3 refused a request and a retry will not help (permissions, bucket, credentials): an
    internal error for the caller, an alert for the operator (the log names what is missing)."""

    def __init__(self) -> None:
        super().__init__(500, "internal-error", "An internal error occurred.")


def storage_failure(
    exc: Exception,
    *,
    operation: str | None,
    bucket: str | None,
    key: str | None = None,
    prefix: str | None = None,
    versioned: bool = False,
) -> ProblemError:
    """Log and count one failed S3 call; the problem to raise for it (503 or 500)."""
    known = operation in S3_ACTIONS
    name = api_name(operation) if operation else "unknown"
    retryable = is_retryable(exc)
    # "unavailable" (throttled, timed out, 5xx: worth a retry) or "rejected" (an operator must act).
    signals.emit("storage.unavailable" if retryable else "storage.rejected", operation=name if known else "other")
    if isinstance(exc, ClientError):
        status = _http_status(exc)
        request_id = exc.response.get("ResponseMetadata", {}).get("RequestId") or "-"
        reason = f"{error_code(exc) or 'error'} (HTTP {status}, request id {request_id})"
    else:
        reason = type(exc).__name__
    if retryable:
        log.warning("S3 %s failed: %s (retryable: storage unavailable)", name, reason)
        return StorageUnavailable()
    actions = (
        " and ".join(iam_actions(operation, versioned=versioned)) if operation in S3_ACTIONS else "an S3 permission"
    )
    resource = f"arn:aws:s3:::{bucket or '*'}"
    if key is not None and operation not in BUCKET_OPERATIONS:
        resource = f"{resource}/{key}"
    if prefix is not None:
        resource = f"{resource} (s3:prefix {prefix})"
    log.error(
        "S3 refused %s: %s. It needs %s on %s: check the role's policy, the bucket name and the credentials.",
        name,
        reason,
        actions,
        resource,
    )
    return StorageRejected()


def _client_key(settings: Settings) -> _ClientKey:
    return (
        settings.s3_endpoint_url,
        settings.aws_region,
        settings.s3_connect_timeout_seconds,
        settings.s3_read_timeout_seconds,
        settings.s3_max_attempts,
        settings.environment == "local",
    )


def s3_client(settings: Settings) -> S3Client:
    """The cached S3 client for these settings (created on first use, never per request)."""
    key = _client_key(settings)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _build_client(settings)
    return client


def _build_client(settings: Settings) -> S3Client:
    import boto3

    config = Config(
        signature_version="s3v4",
        region_name=settings.aws_region,
        connect_timeout=settings.s3_connect_timeout_seconds,
        read_timeout=settings.s3_read_timeout_seconds,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "virtual"},
        # Only compute checksums where an operation requires one: presigned requests must not
        # carry checksum parameters the browser cannot reproduce.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": settings.aws_region}
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    if settings.environment == "local":
        # The embedded S3 server accepts any credentials; real ones come from the default chain.
        kwargs.update(aws_access_key_id="local", aws_secret_access_key="local")  # noqa: S106
    return boto3.session.Session().client("s3", **kwargs)


def _is_missing(error: ClientError) -> bool:
    return error_code(error) in _MISSING


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a multipart upload: its number, its ETag (without quotes) and, where S3 reported
    it, its size."""

    number: int
    etag: str
    size: int | None = None


def normalize_etag(etag: str) -> str:
    return etag.strip().strip('"')


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None
    version_id: str | None
    etag: str | None
    checksum_sha256: str | None


@dataclass(frozen=True)
class Storage:
    client: S3Client
    bucket: str
    expires_in: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(client=s3_client(settings), bucket=settings.s3_bucket, expires_in=settings.presign_expires_seconds)

    def _call(self, operation: str, *, handled: frozenset[str] = frozenset(), **params: Any) -> Any:
        """One S3 request. Errors whose code is in ``handled`` reach the caller as ClientError;
        any other failure becomes StorageUnavailable or StorageRejected (``storage_failure``)."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except ClientError as exc:
            if error_code(exc) in handled:
                raise
            raise self._failure(operation, params, exc) from exc
        except BotoCoreError as exc:
            raise self._failure(operation, params, exc) from exc

    def _failure(self, operation: str, params: dict[str, Any], exc: Exception) -> ProblemError:
        return storage_failure(
            exc,
            operation=operation,
            bucket=self.bucket,
            key=params.get("Key"),
            prefix=params.get("Prefix"),
            versioned="VersionId" in params,
        )

    # Presigning (local computation, no network).
    def presign_post(
        self, *, key: str, content_type: str, size: int | None, checksum_sha256: str | None, max_size: int = 0
    ) -> dict[str, Any]:
        """A POST form for exactly ``size`` bytes, or (size unknown) for 1 to ``max_size`` bytes."""
        fields: dict[str, str] = {"Content-Type": content_type}
        low, high = (size, size) if size is not None else (1, max_size)
        conditions: list[Any] = [{"Content-Type": content_type}, ["content-length-range", low, high]]
        if checksum_sha256:
            fields["x-amz-checksum-sha256"] = checksum_sha256
            conditions.append({"x-amz-checksum-sha256": checksum_sha256})
        return self.client.generate_presigned_post(
            Bucket=self.bucket, Key=key, Fields=fields, Conditions=conditions, ExpiresIn=self.expires_in
        )

    def presign_part(self, *, key: str, upload_id: str, part_number: int) -> str:
        return self.client.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=self.expires_in,
        )

    def presign_get(self, *, key: str, version_id: str | None, content_disposition: str, content_type: str) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": content_disposition,
            "ResponseContentType": content_type,
        }
        if version_id:
            params["VersionId"] = version_id
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.expires_in)

    # Multipart uploads.
    def create_multipart(self, *, key: str, content_type: str) -> str:
        upload_id: str = self._call("create_multipart_upload", Key=key, ContentType=content_type)["UploadId"]
        return upload_id

    def list_parts(self, *, key: str, upload_id: str) -> list[Part] | None:
        """The parts S3 holds for the upload; None when the upload no longer exists."""
        parts: list[Part] = []
        marker = 0
        while True:
            try:
                page = self._call("list_parts", handled=_MISSING, Key=key, UploadId=upload_id, PartNumberMarker=marker)
            except ClientError:
                return None
            parts.extend(
                Part(number=int(p["PartNumber"]), etag=normalize_etag(p["ETag"]), size=int(p["Size"]))
                for p in page.get("Parts", [])
            )
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def complete_multipart(self, *, key: str, upload_id: str, parts: list[Part]) -> bool:
        """Assemble the object; False when the upload no longer exists (completed or aborted).
        Parts S3 will not assemble raise ClientError (InvalidPart, InvalidPartOrder, EntityTooSmall)."""
        try:
            self._call(
                "complete_multipart_upload",
                handled=_MISSING | _REJECTED_PARTS,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in parts]},
            )
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def abort_multipart(self, *, key: str, upload_id: str) -> None:
        with contextlib.suppress(ClientError):  # already completed or aborted
            self._call("abort_multipart_upload", handled=_MISSING, Key=key, UploadId=upload_id)

    # Objects.
    def head(self, *, key: str, version_id: str | None = None) -> ObjectInfo | None:
        params: dict[str, Any] = {"Key": key, "ChecksumMode": "ENABLED"}
        if version_id:
            params["VersionId"] = version_id
        try:
            response = self._call("head_object", handled=_MISSING, **params)
        except ClientError:
            return None
        return ObjectInfo(
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            version_id=response.get("VersionId"),
            etag=response.get("ETag"),
            checksum_sha256=response.get("ChecksumSHA256"),
        )

    def sha256(self, *, key: str, version_id: str | None) -> str:
        """Base64 SHA-256 of a stored object, read in chunks (for stores that report none)."""
        params: dict[str, Any] = {"Key": key}
        if version_id:
            params["VersionId"] = version_id
        digest = hashlib.sha256()
        body = self._call("get_object", **params)["Body"]
        try:
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
        except BotoCoreError as exc:
            raise self._failure("get_object", params, exc) from exc
        finally:
            body.close()
        return base64.b64encode(digest.digest()).decode()

    def delete(self, *, key: str) -> None:
        """Delete the current version; on a versioned bucket this leaves a restorable delete marker."""
        self._call("delete_object", Key=key)

    def purge(self, *, key: str) -> int:
        """Remove every version and delete marker of exactly this key (bytes that must not stay)."""
        removed = 0
        for version in self._versions(key):
            self._call("delete_object", Key=key, VersionId=version["VersionId"])
            removed += 1
        return removed

    def _versions(self, key: str) -> list[dict[str, Any]]:
        response = self._call("list_object_versions", Prefix=key)
        entries = response.get("Versions", []) + response.get("DeleteMarkers", [])
        return [entry for entry in entries if entry["Key"] == key]

    def remove_untracked(self, *, key: str, keep_version_id: str | None, keep_delete_markers: bool) -> int:
        """Remove the versions of exactly this key except ``keep_version_id`` (and, if asked, the
        delete markers): bytes that arrived after the recording stopped taking uploads."""
        removed = 0
        response = self._call("list_object_versions", Prefix=key)
        entries = response.get("Versions", []) + ([] if keep_delete_markers else response.get("DeleteMarkers", []))
        for entry in entries:
            if entry["Key"] == key and entry["VersionId"] != keep_version_id:
                self._call("delete_object", Key=key, VersionId=entry["VersionId"])
                removed += 1
        return removed

    def remove_delete_marker(self, *, key: str) -> bool:
        """Undo a delete: remove the latest delete marker. False when the key has none."""
        response = self._call("list_object_versions", Prefix=key)
        markers = [m for m in response.get("DeleteMarkers", []) if m["Key"] == key and m.get("IsLatest")]
        if not markers:
            return False
        self._call("delete_object", Key=key, VersionId=markers[0]["VersionId"])
        return True

    def check_bucket(self) -> None:
        self._call("head_bucket")


def expires_at(now: datetime, seconds: int) -> datetime:
    return now + timedelta(seconds=seconds)
