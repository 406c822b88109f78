"""S3 failures: only what a retry can fix is a 503 with Retry-After; S3 refusing the service
(permissions, bucket, credentials) is a 500 with a generic body, logged with the operation, the
IAM action and the resource, and counted for the alarm. (How the API answers them:
tests/unit/web/test_errors.py.)"""

from __future__ import annotations

import logging

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.stub import Stubber
from prometheus_client import REGISTRY

from service.core.storage import Storage, StorageRejected, StorageUnavailable, is_retryable

# The Prometheus listener counts what the storage layer signals (subscribed on import).
from service.observability.metrics import domain  # noqa: F401

BUCKET = "recordings-test"


def client_error(code: str, status: int, operation: str = "DeleteObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("Throttling", 400),
        ("ThrottlingException", 400),
        ("RequestTimeout", 400),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("OperationAborted", 409),
        ("503", 503),  # HEAD requests carry no error body: the code is the status
        ("SomethingNew", 502),
    ],
)
def test_throttling_timeouts_and_5xx_are_retryable(code, status) -> None:
    assert is_retryable(client_error(code, status))


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("403", 403),
        ("AllAccessDisabled", 403),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("ExpiredToken", 400),
        ("NoSuchBucket", 404),
        ("PermanentRedirect", 301),
        ("AuthorizationHeaderMalformed", 400),
        ("InvalidRequest", 400),
    ],
)
def test_refusals_are_not_retryable(code, status) -> None:
    assert not is_retryable(client_error(code, status))


def test_connection_errors_are_retryable_missing_credentials_are_not() -> None:
    assert is_retryable(EndpointConnectionError(endpoint_url="https://s3"))
    assert is_retryable(ConnectTimeoutError(endpoint_url="https://s3"))
    assert is_retryable(ReadTimeoutError(endpoint_url="https://s3"))
    assert not is_retryable(NoCredentialsError())


@pytest.fixture
def stubbed():
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(client) as stubber:
        yield Storage(client=client, bucket=BUCKET, expires_in=60), stubber


def _rejected(operation: str) -> float:
    labels = {"operation": operation, "outcome": "rejected"}
    return REGISTRY.get_sample_value("recordings_storage_errors_total", labels) or 0.0


def test_access_denied_names_the_action_and_resource(stubbed, caplog) -> None:
    storage, stubber = stubbed
    stubber.add_response(
        "list_object_versions", {"Versions": [{"Key": "t/k", "VersionId": "v1"}]}, {"Bucket": BUCKET, "Prefix": "t/k"}
    )
    stubber.add_client_error("delete_object", "AccessDenied", "Access Denied", 403)
    before = _rejected("DeleteObject")
    with caplog.at_level(logging.ERROR, logger="service.core.storage"), pytest.raises(StorageRejected) as raised:
        storage.purge(key="t/k")
    assert raised.value.status == 500
    assert "Retry-After" not in raised.value.headers
    (record,) = [r for r in caplog.records if r.name == "service.core.storage"]
    message = record.getMessage()
    assert "S3 refused DeleteObject: AccessDenied (HTTP 403" in message
    assert f"s3:DeleteObjectVersion on arn:aws:s3:::{BUCKET}/t/k" in message
    assert _rejected("DeleteObject") == before + 1


def test_bucket_operations_name_the_bucket(stubbed, caplog) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("list_object_versions", "AccessDenied", "Access Denied", 403)
    with caplog.at_level(logging.ERROR, logger="service.core.storage"), pytest.raises(StorageRejected):
        storage.remove_delete_marker(key="t/k")
    message = caplog.records[-1].getMessage()
    assert f"s3:ListBucketVersions on arn:aws:s3:::{BUCKET} (s3:prefix t/k):" in message


def test_a_forbidden_head_is_not_a_missing_object(stubbed, caplog) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("head_object", "403", "", 403)
    with caplog.at_level(logging.ERROR, logger="service.core.storage"), pytest.raises(StorageRejected):
        storage.head(key="t/k", version_id="v1")
    assert "s3:GetObjectVersion and s3:ListBucket" in caplog.records[-1].getMessage()
    stubber.add_client_error("head_object", "404", "", 404)
    assert storage.head(key="t/k") is None


def test_throttling_is_unavailable(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("delete_object", "SlowDown", "Please reduce your request rate.", 503)
    with pytest.raises(StorageUnavailable) as raised:
        storage.delete(key="t/k")
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"]


def test_rejected_parts_and_missing_uploads_stay_with_the_caller(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("complete_multipart_upload", "NoSuchUpload", "", 404)
    assert storage.complete_multipart(key="t/k", upload_id="u", parts=[]) is False
    stubber.add_client_error("complete_multipart_upload", "InvalidPart", "", 400)
    with pytest.raises(ClientError):
        storage.complete_multipart(key="t/k", upload_id="u", parts=[])
    stubber.add_client_error("abort_multipart_upload", "NoSuchUpload", "", 404)
    storage.abort_multipart(key="t/k", upload_id="u")
    stubber.add_client_error("abort_multipart_upload", "AccessDenied", "", 403)
    with pytest.raises(StorageRejected):
        storage.abort_multipart(key="t/k", upload_id="u")
