"""RDS PostgreSQL for recording metadata, with an optional RDS Proxy for the Lambda path."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from cdk.config import DatabaseConfig

POSTGRES_VERSION = rds.PostgresEngineVersion.VER_18_3  # current major
PROXY_PORT = 5432  # RDS Proxy always listens on the engine's default port


class Database(Construct):
    """A PostgreSQL instance in isolated subnets: encrypted, autoscaling storage, automated
    backups (point-in-time recovery), a parameter group that forces TLS and fixes
    ``max_connections`` (the connection budget is computed against it), log exports, Performance
    Insights, a non-default port and a master secret managed by RDS in Secrets Manager.

    Nothing can reach it until a stack calls ``connections.allow_to`` from an app security group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        config: DatabaseConfig,
        enable_proxy: bool,
        proxy_max_connections_percent: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        engine = rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION)
        self.parameter_group = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description="Recordings: TLS only, fixed max_connections",
            parameters={
                "rds.force_ssl": "1",
                "max_connections": str(config.max_connections),
                "log_min_duration_statement": "1000",
                "log_lock_waits": "1",
            },
        )
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="RDS PostgreSQL: ingress only from the app security groups",
            allow_all_outbound=False,
        )
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=engine,
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            instance_type=ec2.InstanceType(config.instance_type),
            port=config.port,
            database_name=config.database_name,
            manage_master_user_password=True,
            credentials=rds.Credentials.from_username(config.master_username),
            parameter_group=self.parameter_group,
            storage_encrypted=True,
            storage_type=rds.StorageType.GP3,
            allocated_storage=config.allocated_storage_gib,
            max_allocated_storage=config.max_allocated_storage_gib,
            backup_retention=Duration.days(config.backup_retention_days),
            preferred_backup_window="02:00-03:00",
            preferred_maintenance_window="sun:03:30-sun:04:30",
            copy_tags_to_snapshot=True,
            delete_automated_backups=False,
            multi_az=config.multi_az,
            deletion_protection=config.deletion_protection,
            removal_policy=RemovalPolicy.SNAPSHOT,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=["postgresql", "upgrade"],
            cloudwatch_logs_retention=log_retention,
            enable_performance_insights=True,
            performance_insight_retention=rds.PerformanceInsightRetention.DEFAULT,
        )
        if self.instance.secret is None:  # pragma: no cover - manage_master_user_password sets it
            raise RuntimeError("RDS did not expose its managed master secret")
        self.secret = self.instance.secret

        self.proxy: rds.DatabaseProxy | None = None
        if enable_proxy:
            proxy_sg = ec2.SecurityGroup(
                self,
                "ProxySecurityGroup",
                vpc=vpc,
                description="RDS Proxy: ingress only from the Lambda functions",
                allow_all_outbound=False,
            )
            self.proxy = self.instance.add_proxy(
                "Proxy",
                vpc=vpc,
                vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                secrets=[self.secret],
                security_groups=[proxy_sg],
                require_tls=True,
                iam_auth=False,
                max_connections_percent=proxy_max_connections_percent,
                borrow_timeout=Duration.seconds(30),
            )
            proxy_sg.connections.allow_to(self.instance, ec2.Port.tcp(config.port), "proxy to db")

    @property
    def endpoint_host(self) -> str:
        return self.instance.db_instance_endpoint_address

    def lambda_endpoint(self) -> tuple[str, int, ec2.IConnectable]:
        """Host, port and connectable target the Lambda functions should use."""
        if self.proxy is not None:
            return self.proxy.endpoint, PROXY_PORT, self.proxy
        return self.endpoint_host, self.config.port, self.instance

    def grant_secret_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """GetSecretValue on the one master secret, nothing else."""
        return iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["secretsmanager:GetSecretValue"],
            resource_arns=[self.secret.secret_arn],
        )
