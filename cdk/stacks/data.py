"""Stateful resources: database, recordings bucket, image repository."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk.config import AlarmConfig, DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.monitoring import AlarmSpec
from cdk.constructs.repository import image_repository
from cdk.constructs.storage import RecordingsStorage
from cdk.cross_stack import publish
from cdk.nag import acknowledge
from cdk.replica_access import publish_replicas, replica_identifiers
from cdk.retention import log_retention, removal_policy


class DataStack(Stack):
    """Everything that holds data. Termination protection on in prod, where removal keeps data;
    other profiles empty and remove their buckets and repository on ``cdk destroy``."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, vpc: ec2.IVpc, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=config.is_production, **kwargs)
        self.config = config
        retention = log_retention(config.log_retention_days)
        self.database = Database(
            self,
            "Database",
            vpc=vpc,
            config=config.database,
            enable_proxy=config.features.rds_proxy,
            proxy_max_connections_percent=config.proxy_max_connections_percent,
            log_retention=retention,
        )
        self.storage = RecordingsStorage(
            self,
            "Recordings",
            name_prefix=f"{config.project}-{config.env_name}",
            config=config.storage,
            cors_origins=list(config.allowed_origins),
            access_log_expiration=Duration.days(max(config.log_retention_days, 90)),
            replica_region=config.storage.replication_region if config.features.replication else None,
            removal_policy=removal_policy(config.removal_policy),
        )
        # Its exports below stay whether or not a deploy passes a Lambda image digest.
        self.repository = image_repository(
            self, "Repository", keep_images=config.ec2.ecr_keep_images, removal=removal_policy(config.removal_policy)
        )

        # What the functions connect to: the proxy with features.rds_proxy, else the instance.
        # Through SSM, so turning the proxy on or off never deadlocks on an export.
        host, _, target = self.database.lambda_endpoint()
        publish(self, config, "data", "lambda-database-host", host)
        publish(
            self,
            config,
            "data",
            "lambda-database-security-group",
            target.connections.security_groups[0].security_group_id,
        )

        publish_replicas(self, config, self.database)

        # Exported whether or not a stack imports them today (the EC2 service is a flag), so
        # turning a flag off never removes an export a deployed stack still imports.
        for value in (
            self.database.instance.connections.security_groups[0].security_group_id,
            self.database.endpoint_host,
            self.database.app_secret.secret_arn,
            self.database.master_secret.secret_arn,
            self.database.instance.instance_identifier,
            self.repository.repository_arn,
            self.repository.repository_name,
        ):
            self.export_value(value)

        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="Recordings bucket")
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri, description="Push the server image here")
        CfnOutput(self, "DatabaseEndpoint", value=self.database.endpoint_host)
        if self.database.read_hosts:
            hosts = self.database.read_hosts
            CfnOutput(self, "DatabaseReadEndpoints", value=hosts, description="Read replicas (comma-separated)")
        CfnOutput(self, "DatabaseSecretArn", value=self.database.app_secret.secret_arn)
        CfnOutput(self, "DatabaseMasterSecretArn", value=self.database.master_secret.secret_arn)

        self._acknowledge(config)

    def alarms(self, scope: Construct, thresholds: AlarmConfig) -> list[AlarmSpec]:
        """The database's and the bucket's alarms. The replicas' identifiers are read in ``scope``
        through SSM: their count is a setting, and an export would block lowering it."""
        return [
            *self.database.alarms(thresholds, replica_identifiers=replica_identifiers(scope, self.config)),
            *self.storage.alarms(thresholds),
        ]

    def _acknowledge(self, config: DeploymentConfig) -> None:
        db = self.database.instance
        for replica in self.database.replicas:
            acknowledge(
                replica,
                "AwsSolutions-RDS2",
                "Encrypted: a replica inherits its source's encryption and key, and CloudFormation "
                "refuses StorageEncrypted next to SourceDBInstanceIdentifier. The source is encrypted.",
            )
            acknowledge(
                replica,
                "AwsSolutions-RDS3",
                "A read replica is itself redundancy for reads: when it fails, the app reads from the "
                "multi-AZ primary (service/web/read_routing.py). Multi-AZ would double its cost for no gain.",
            )
            acknowledge(
                replica,
                "AwsSolutions-RDS11",
                f"The replica listens on the primary's non-default port {config.database.port} (Port is "
                "set; the rule cannot tell a replica's engine, which it inherits, so it assumes the default).",
            )
        if not config.database.multi_az:
            acknowledge(db, "AwsSolutions-RDS3", "dev runs single-AZ to halve cost; prod is multi-AZ (enforced).")
        if not config.database.deletion_protection:
            acknowledge(
                db,
                "AwsSolutions-RDS10",
                "dev can be torn down; removal still takes a final snapshot. prod has deletion protection.",
            )
