"""CloudTrail trail into an encrypted, TLS-only bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.constructs.storage import secure_bucket


class AuditTrail(Construct):
    """Multi-region CloudTrail trail (management events, log file validation) writing to a
    private, encrypted, TLS-only bucket whose own access is logged to a second bucket."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        retention: Duration,
        removal_policy: RemovalPolicy = RemovalPolicy.RETAIN,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = {"removal_policy": removal_policy, "auto_delete_objects": removal_policy == RemovalPolicy.DESTROY}
        self.access_logs = secure_bucket(
            self,
            "AccessLogs",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=retention)],
            **removal,
        )
        self.bucket = secure_bucket(
            self,
            "Bucket",
            versioned=True,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="trail-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-trail", expiration=retention, noncurrent_version_expiration=retention)
            ],
            **removal,
        )
        self.trail = cloudtrail.Trail(
            self,
            "Trail",
            bucket=self.bucket,
            enable_file_validation=True,
            is_multi_region_trail=True,
            include_global_service_events=True,
            management_events=cloudtrail.ReadWriteType.ALL,
        )
