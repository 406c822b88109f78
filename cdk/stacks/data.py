"""Stateful resources: database, recordings bucket, image repository."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.storage import RecordingsStorage
from cdk.nag import acknowledge
from cdk.retention import log_retention


class DataStack(Stack):
    """Everything that holds data. Termination protection on in prod; removal keeps data."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, vpc: ec2.IVpc, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, termination_protection=config.is_production, **kwargs)
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
            cors_origins=list(config.cors_origins),
            access_log_expiration=Duration.days(max(config.log_retention_days, 90)),
            replica_region=config.storage.replication_region if config.features.replication else None,
        )
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.AES_256,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"keep the last {config.ec2.ecr_keep_images} images",
                    max_image_count=config.ec2.ecr_keep_images,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        # The Lambda functions run the image CI pushed here (-c lambda_image_digest): the service
        # may pull, and the exports the backend stack imports then stay whether or not a deploy
        # passes a digest (an export in use cannot be removed).
        self.repository.grant_pull(iam.ServicePrincipal("lambda.amazonaws.com"))
        self.export_value(self.repository.repository_arn)
        self.export_value(self.repository.repository_name)

        CfnOutput(self, "BucketName", value=self.storage.bucket.bucket_name, description="Recordings bucket")
        CfnOutput(self, "RepositoryUri", value=self.repository.repository_uri, description="Push the server image here")
        CfnOutput(self, "DatabaseEndpoint", value=self.database.endpoint_host)
        if self.database.read_hosts:
            hosts = self.database.read_hosts
            CfnOutput(self, "DatabaseReadEndpoints", value=hosts, description="Read replicas (comma-separated)")
        CfnOutput(self, "DatabaseSecretArn", value=self.database.app_secret.secret_arn)
        CfnOutput(self, "DatabaseMasterSecretArn", value=self.database.master_secret.secret_arn)

        self._acknowledge(config)

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
                "multi-AZ primary (service/read_routing.py). Multi-AZ would double its cost for no gain.",
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
