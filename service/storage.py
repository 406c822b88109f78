"""The only module that talks to S3. One boto3 client per process and configuration.

Missing objects and uploads come back as ``None``/``False``; connection problems raise
``StorageUnavailable`` (answered as 503 by the error handlers).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from service.config import Settings
from service.errors import ServiceUnavailable

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchVersion", "NoSuchUpload"}


class StorageUnavailable(ServiceUnavailable):
    def __init__(self, detail: str = "Object storage is unavailable; retry shortly.") -> None:
        super().__init__(detail, slug="storage-unavailable")


def _client_key(settings: Settings) -> tuple:
    return (
        settings.s3_endpoint_url,
        settings.aws_region,
        settings.s3_connect_timeout_seconds,
        settings.s3_read_timeout_seconds,
        settings.s3_max_attempts,
        settings.environment == "local",
    )


def s3_client(settings: Settings) -> Any:
    """The cached S3 client for these settings (created on first use, never per request)."""
    key = _client_key(settings)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = _build_client(settings)
    return client


def _build_client(settings: Settings) -> Any:
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
    return error.response.get("Error", {}).get("Code") in _MISSING


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None
    version_id: str | None
    etag: str | None
    checksum_sha256: str | None


@dataclass(frozen=True)
class Storage:
    client: Any
    bucket: str
    expires_in: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        return cls(client=s3_client(settings), bucket=settings.s3_bucket, expires_in=settings.presign_expires_seconds)

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, **params)
        except BotoCoreError as exc:
            raise StorageUnavailable() from exc

    # Presigning (local computation, no network).
    def presign_post(
        self, *, key: str, content_type: str, size: int | None, checksum_sha256: str | None, max_size: int = 0
    ) -> dict:
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
        return self._call("create_multipart_upload", Key=key, ContentType=content_type)["UploadId"]

    def list_parts(self, *, key: str, upload_id: str) -> list[dict] | None:
        parts: list[dict] = []
        marker = 0
        while True:
            try:
                page = self._call("list_parts", Key=key, UploadId=upload_id, PartNumberMarker=marker)
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
            parts.extend(page.get("Parts", []))
            if not page.get("IsTruncated"):
                return parts
            marker = int(page["NextPartNumberMarker"])

    def complete_multipart(self, *, key: str, upload_id: str, parts: list[dict]) -> bool:
        """Assemble the object; False when the upload no longer exists (completed or aborted)."""
        try:
            self._call(
                "complete_multipart_upload",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
            )
        except ClientError as exc:
            if _is_missing(exc):
                return False
            raise
        return True

    def abort_multipart(self, *, key: str, upload_id: str) -> None:
        try:
            self._call("abort_multipart_upload", Key=key, UploadId=upload_id)
        except ClientError as exc:
            if not _is_missing(exc):
                raise

    # Objects.
    def head(self, *, key: str, version_id: str | None = None) -> ObjectInfo | None:
        params: dict[str, Any] = {"Key": key, "ChecksumMode": "ENABLED"}
        if version_id:
            params["VersionId"] = version_id
        try:
            response = self._call("head_object", **params)
        except ClientError as exc:
            if _is_missing(exc) or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise
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
            raise StorageUnavailable() from exc
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

    def _versions(self, key: str) -> list[dict]:
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
