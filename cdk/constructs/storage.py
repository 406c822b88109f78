"""The recordings bucket and its access-log bucket."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, Token
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.config import AlarmConfig, StorageConfig
from cdk.constructs.monitoring import FIVE_MINUTES, GTE, AlarmSpec, metric
from cdk.nag import acknowledge


@dataclass(frozen=True)
class BucketAccess:
    """The S3 actions one kind of process needs on the recordings bucket: object actions on its
    keys, bucket actions on the bucket, and s3:ListBucketVersions only for prefixes that match
    ``listed_prefixes`` (IAM ``StringLike`` patterns on ``s3:prefix``).

    tests/cdk/test_s3_permissions.py derives the same sets from the S3 calls in the code each
    role runs and fails when a role lacks one or has one no code calls.
    """

    objects: tuple[str, ...] = ()
    bucket: tuple[str, ...] = ()
    listed_prefixes: tuple[str, ...] = ()

    def __or__(self, other: BucketAccess) -> BucketAccess:
        def union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(a + b))

        return BucketAccess(
            objects=union(self.objects, other.objects),
            bucket=union(self.bucket, other.bucket),
            listed_prefixes=union(self.listed_prefixes, other.listed_prefixes),
        )


# A recording's key is "<tenant>/<recording id>" (a UUID, service/recordings/uploads.py s3_key_for),
# and the app lists the versions of one key at a time (purge, restore): never the whole bucket.
RECORDING_KEY_PREFIX = "*/????????-????-????-????-????????????"

# The HTTP API (EC2 and Lambda): presigned POST/PUT (s3:PutObject) and GET, multipart create,
# list parts, complete and abort, verification (HeadObject, GetObject for the checksum), delete
# and restore (versions), discarding rejected bytes, and the readiness probe (HeadBucket).
API_ACCESS = BucketAccess(
    objects=(
        "s3:PutObject",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ),
    bucket=("s3:ListBucket",),
    listed_prefixes=(RECORDING_KEY_PREFIX,),
)
# The S3 event handler: verification, and discarding the bytes of an upload that fails it.
S3_EVENTS_ACCESS = BucketAccess(
    objects=("s3:GetObject", "s3:GetObjectVersion", "s3:AbortMultipartUpload", "s3:DeleteObjectVersion"),
    bucket=("s3:ListBucket",),
    listed_prefixes=(RECORDING_KEY_PREFIX,),
)
# The reaper: abort the multipart upload and remove every version of an expired upload's key.
REAPER_ACCESS = BucketAccess(
    objects=("s3:AbortMultipartUpload", "s3:DeleteObjectVersion"), listed_prefixes=(RECORDING_KEY_PREFIX,)
)


# S3 refusing the app (permissions or configuration), counted for the StorageRejected alarm. The
# Lambda path emits it as EMF (service/observability/emf.py: namespace "Recordings", dimension
# service); the server path logs it (service/core/storage.py, logger service.core.storage at ERROR), and a
# metric filter on the container logs counts those lines (same namespace and name, no dimension).
APP_METRICS_NAMESPACE = "Recordings"
STORAGE_REJECTED_METRIC = "StorageRejected"
STORAGE_REJECTED_LOG = {"$.logger": "service.core.storage", "$.level": "ERROR"}


def count_storage_rejections(log_group: logs.ILogGroup, period: Duration) -> cloudwatch.IMetric:
    """A metric filter on the server's JSON logs (service/observability/logging.py) counting refused S3 calls."""
    metric_filter = log_group.add_metric_filter(
        STORAGE_REJECTED_METRIC,
        filter_pattern=logs.FilterPattern.all(
            *(logs.FilterPattern.string_value(field, "=", value) for field, value in STORAGE_REJECTED_LOG.items())
        ),
        metric_namespace=APP_METRICS_NAMESPACE,
        metric_name=STORAGE_REJECTED_METRIC,
        metric_value="1",
    )
    return metric_filter.metric(statistic="Sum", period=period)


def emitted_storage_rejections(period: Duration) -> cloudwatch.IMetric:
    """The Lambda functions' EMF count of refused S3 calls (service/observability/emf.py)."""
    return metric(APP_METRICS_NAMESPACE, STORAGE_REJECTED_METRIC, {"service": "recordings"}, "Sum", period)


@dataclass(frozen=True)
class StorageRejections:
    """S3 refused a call of the app (AccessDenied, NoSuchBucket, bad credentials...): the request
    answered 500 and the app's log names the missing IAM action. Retrying never fixes it, so one
    is enough to alarm. ``counts``: every path's count of refused calls, by expression id."""

    counts: Mapping[str, cloudwatch.IMetric]

    def alarms(self, scope: Construct, thresholds: AlarmConfig) -> Sequence[AlarmSpec]:
        return [
            AlarmSpec(
                name="StorageRejected",
                section="S3",
                description="S3 refused the app's requests (permissions or configuration) in 5 minutes",
                metric=cloudwatch.MathExpression(
                    expression=" + ".join(f"FILL({name}, 0)" for name in self.counts),
                    using_metrics=dict(self.counts),
                    period=FIVE_MINUTES,
                    label="refused S3 calls",
                ),
                threshold=1,
                comparison=GTE,
                evaluation_periods=1,
            )
        ]


def replica_bucket_name(*, name_prefix: str, replica_region: str) -> str:
    """Deterministic so the source stack needs no cross-region reference to the replica."""
    return f"{name_prefix}-replica-{Aws.ACCOUNT_ID}-{replica_region}"


def secure_bucket(scope: Construct, construct_id: str, **kwargs) -> s3.Bucket:
    """A bucket with the non-negotiables: SSE, Block Public Access, TLS-only, no ACLs."""
    return s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        **kwargs,
    )


class RecordingsStorage(Construct):
    """Versioned, encrypted, private, TLS-only bucket for recording bytes, written by clients
    through presigned URLs. CORS is open only to the configured browser origins with the methods
    presigned POST/PUT/multipart need (``ETag`` and ``Location`` exposed so browsers can complete
    multipart uploads); lifecycle rules clean up abandoned multipart uploads and age out
    noncurrent versions after the restore window; server access logs go to a log bucket; request
    metrics feed the 5xx alarm. With ``replication_destination`` every object is replicated."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name_prefix: str,
        config: StorageConfig,
        cors_origins: list[str],
        access_log_expiration: Duration,
        replica_region: str | None = None,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        # DESTROY (dev): `cdk destroy` empties and deletes the buckets, so the fixed name is
        # free again for the next deploy. Never for a profile that keeps data (prod).
        removal = {"removal_policy": removal_policy, "auto_delete_objects": removal_policy == RemovalPolicy.DESTROY}
        stack = Stack.of(self)
        partition = "<AWS::Partition>" if Token.is_unresolved(stack.partition) else stack.partition
        self.access_logs = secure_bucket(
            self,
            "AccessLogs",
            versioned=False,
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=access_log_expiration)],
            **removal,
        )
        replication_rules = None
        if replica_region is not None:
            destination = s3.Bucket.from_bucket_name(
                self, "ReplicaBucket", replica_bucket_name(name_prefix=name_prefix, replica_region=replica_region)
            )
            replication_rules = [
                s3.ReplicationRule(
                    destination=destination,
                    priority=1,
                    delete_marker_replication=True,
                    storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                )
            ]
        # A fixed name (account and region make it unique) lets other stacks address the bucket
        # without cross-stack exports, and keeps IAM findings readable.
        region = stack.region
        self.bucket_name = f"{name_prefix}-{Aws.ACCOUNT_ID}-{region}"
        # How cdk-nag renders the name (pseudo parameters in angle brackets).
        self._rendered_name = f"{name_prefix}-<AWS::AccountId>-{region}"
        self.bucket = secure_bucket(
            self,
            "Bucket",
            bucket_name=self.bucket_name,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="recordings/",
            cors=[
                s3.CorsRule(
                    allowed_origins=list(cors_origins),
                    allowed_methods=[
                        s3.HttpMethods.GET,
                        s3.HttpMethods.HEAD,
                        s3.HttpMethods.PUT,
                        s3.HttpMethods.POST,
                    ],
                    allowed_headers=["*"],
                    exposed_headers=["ETag", "Location"],
                    max_age=3000,
                )
            ],
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(config.abort_incomplete_multipart_days),
                ),
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_transitions=[
                        s3.NoncurrentVersionTransition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(config.noncurrent_transition_days),
                        )
                    ],
                    noncurrent_version_expiration=Duration.days(config.noncurrent_expiration_days),
                ),
                s3.LifecycleRule(id="expired-delete-markers", expired_object_delete_marker=True),
            ],
            metrics=[s3.BucketMetrics(id="EntireBucket")],
            replication_rules=replication_rules,
            **removal,
        )
        if replica_region is not None:
            bucket_id = stack.get_logical_id(self.bucket.node.default_child)
            acknowledge(
                self.bucket,
                "AwsSolutions-IAM5",
                "The replication role must read every object version of the source bucket and "
                "replicate to any key of the one replica bucket.",
                f"Resource::<{bucket_id}.Arn>/*",
                f"Resource::arn:{partition}:s3:::{name_prefix}-replica-<AWS::AccountId>-{replica_region}/*",
            )

    def alarms(self, thresholds: AlarmConfig) -> list[AlarmSpec]:
        """S3 5xx errors (the bucket's request metrics, filter ``EntireBucket``)."""
        errors = thresholds.s3_5xx_errors_per_5_minutes
        dimensions = {"BucketName": self.bucket_name, "FilterId": "EntireBucket"}
        return [
            AlarmSpec(
                name="S3ServerErrors",
                section="S3",
                description=f"S3 5xx errors >= {errors} in 5 minutes",
                metric=metric("AWS/S3", "5xxErrors", dimensions, "Sum", FIVE_MINUTES),
                threshold=errors,
                comparison=GTE,
                evaluation_periods=1,
            )
        ]

    def grant_app_access(self, grantee: iam.IGrantable, *, access: BucketAccess, principal_scope: Construct) -> None:
        """Exactly ``access``: object actions on the bucket's keys, bucket actions on the bucket,
        version listing only under the allowed prefixes.

        ``bucket.grant_read_write`` would add wildcard actions (``s3:GetObject*``, ``s3:List*``,
        ``s3:Abort*``) and bucket-configuration reads the app never makes. ``principal_scope`` is
        the construct holding the grantee's policy, where the object-wildcard finding is
        acknowledged.
        """
        stack = Stack.of(principal_scope)
        bucket_arn = stack.format_arn(service="s3", region="", account="", resource=self.bucket_name)
        partition = "<AWS::Partition>" if Token.is_unresolved(stack.partition) else stack.partition
        if access.objects:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=list(access.objects), resources=[f"{bucket_arn}/*"])
            )
            acknowledge(
                principal_scope,
                "AwsSolutions-IAM5",
                "Recording keys are server-chosen per tenant and upload; the app needs object actions "
                "on any key of its own bucket (the actions themselves are listed, no wildcards).",
                f"Resource::arn:{partition}:s3:::{self._rendered_name}/*",
            )
        if access.bucket:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(actions=list(access.bucket), resources=[bucket_arn])
            )
        if access.listed_prefixes:
            grantee.grant_principal.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucketVersions"],
                    resources=[bucket_arn],
                    conditions={"StringLike": {"s3:prefix": list(access.listed_prefixes)}},
                )
            )


class ReplicaBucket(Construct):
    """Destination of cross-region replication, in the replica region, with a name the source
    stack can derive without a cross-region reference. Noncurrent versions, abandoned multipart
    uploads and expired delete markers age out on the source's schedule, so the copy does not
    outgrow the original."""

    def __init__(self, scope: Construct, construct_id: str, *, bucket_name: str, config: StorageConfig) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = secure_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.bucket = secure_bucket(
            self,
            "Bucket",
            bucket_name=bucket_name,
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="replica/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-multipart",
                    abort_incomplete_multipart_upload_after=Duration.days(config.abort_incomplete_multipart_days),
                ),
                s3.LifecycleRule(
                    id="noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_expiration_days),
                ),
                s3.LifecycleRule(id="expired-delete-markers", expired_object_delete_marker=True),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
