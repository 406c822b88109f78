"""Alarms (runbook thresholds) and the dashboard for one environment."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.ec2_user_data import CWAGENT_NAMESPACE
from cdk.constructs.monitoring import FIVE_MINUTES, GT, GTE, LT, ONE_MINUTE, ServiceMonitoring, Watch
from cdk.constructs.storage import APP_METRICS_NAMESPACE, STORAGE_REJECTED_METRIC
from cdk.cross_stack import read
from cdk.replica_access import replica_identifiers
from cdk.stacks.backend import BackendStack
from cdk.stacks.data import DataStack
from cdk.stacks.ec2_service import Ec2ServiceStack


class MonitoringStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        topic: sns.ITopic,
        data: DataStack,
        backend: BackendStack,
        ec2_service: Ec2ServiceStack | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.monitoring = ServiceMonitoring(
            self, "Monitoring", topic=topic, thresholds=config.alarms, dashboard_name=f"{config.prefix}-service"
        )
        if ec2_service is not None:
            self._watch_ec2(ec2_service)
        self._watch_lambda(backend)
        self._watch_database(data)
        self._watch_replicas()
        self._watch_bucket(data)
        self._watch_storage_rejections(ec2_service)
        self.monitoring.finish()
        CfnOutput(self, "DashboardName", value=f"{config.prefix}-service")

    @property
    def alarms(self) -> dict[str, cloudwatch.Alarm]:
        return self.monitoring.alarms

    def _watch_ec2(self, stack: Ec2ServiceStack) -> None:
        m, t = self.monitoring, self.config.alarms
        section = "EC2 path (ALB + Auto Scaling group)"
        # Through SSM, not exports: the EC2 stack exists only with features.ec2_service.
        alb_name = read(self, self.config, "ec2", "alb-full-name")
        target_group_name = read(self, self.config, "ec2", "target-group-full-name")
        asg_name = read(self, self.config, "ec2", "asg-name")

        def alb_metric(name: str, statistic: str, **extra_dimensions: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/ApplicationELB",
                metric_name=name,
                dimensions_map={"LoadBalancer": alb_name, **extra_dimensions},
                statistic=statistic,
                period=ONE_MINUTE,
            )

        errors = cloudwatch.MathExpression(
            expression="FILL(target5xx, 0) + FILL(elb5xx, 0)",
            using_metrics={
                "target5xx": alb_metric("HTTPCode_Target_5XX_Count", "Sum"),
                "elb5xx": alb_metric("HTTPCode_ELB_5XX_Count", "Sum"),
            },
            period=ONE_MINUTE,
        )
        m.error_rate(
            name="Alb5xxRate",
            section=section,
            errors=errors,
            requests=alb_metric("RequestCount", "Sum"),
            what="ALB",
        )
        m.add(
            Watch(
                name="AlbP99Latency",
                section=section,
                description=f"ALB p99 latency > {t.p99_latency_ms} ms for 5 minutes",
                metric=alb_metric("TargetResponseTime", "p99"),
                threshold=t.p99_latency_ms / 1000,  # the ALB reports seconds
                comparison=GT,
                evaluation_periods=5,
            )
        )
        m.add(
            Watch(
                name="AlbUnhealthyHosts",
                section=section,
                description="Unhealthy targets behind the ALB for 3 minutes",
                metric=alb_metric("UnHealthyHostCount", "Maximum", TargetGroup=target_group_name),
                threshold=1,
                comparison=GTE,
                evaluation_periods=3,
            )
        )
        asg = {"AutoScalingGroupName": asg_name}

        def ec2_metric(namespace: str, name: str, statistic: str, period: Duration) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace, metric_name=name, dimensions_map=asg, statistic=statistic, period=period
            )

        m.add(
            Watch(
                name="Ec2Cpu",
                section=section,
                description=f"EC2 CPU > {t.cpu_percent:g}% for 15 minutes",
                metric=ec2_metric("AWS/EC2", "CPUUtilization", "Average", FIVE_MINUTES),
                threshold=t.cpu_percent,
                comparison=GT,
                evaluation_periods=3,
            )
        )
        m.add(
            Watch(
                name="Ec2StatusCheckFailed",
                section=section,
                description="EC2 status check failed for 2 minutes",
                metric=ec2_metric("AWS/EC2", "StatusCheckFailed", "Maximum", ONE_MINUTE),
                threshold=1,
                comparison=GTE,
                evaluation_periods=2,
            )
        )
        m.add(
            Watch(
                name="Ec2LowFreeMemory",
                section=section,
                description=f"EC2 free memory < {t.free_memory_percent:g}% for 15 minutes",
                metric=ec2_metric(CWAGENT_NAMESPACE, "mem_used_percent", "Maximum", FIVE_MINUTES),
                threshold=100 - t.free_memory_percent,
                comparison=GT,
                evaluation_periods=3,
            )
        )
        m.add(
            Watch(
                name="Ec2LowFreeDisk",
                section=section,
                description=f"EC2 free disk < {t.free_disk_percent:g}%",
                metric=ec2_metric(CWAGENT_NAMESPACE, "disk_used_percent", "Maximum", FIVE_MINUTES),
                threshold=100 - t.free_disk_percent,
                comparison=GT,
                evaluation_periods=1,
            )
        )

    def _watch_lambda(self, stack: BackendStack) -> None:
        m, t = self.monitoring, self.config.alarms
        section = "Lambda path (HTTP API + functions)"
        if stack.http_api is not None:
            # Through SSM, not exports: the HTTP API exists only with features.lambda_api.
            api_id = read(self, self.config, "backend", "http-api-id")

            def api_metric(name: str, statistic: str) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace="AWS/ApiGateway",
                    metric_name=name,
                    dimensions_map={"ApiId": api_id},
                    statistic=statistic,
                    period=ONE_MINUTE,
                )

            m.error_rate(
                name="Api5xxRate",
                section=section,
                errors=api_metric("5xx", "Sum"),
                requests=api_metric("Count", "Sum"),
                what="API Gateway",
            )
            m.add(
                Watch(
                    name="ApiP99Latency",
                    section=section,
                    description=f"API Gateway p99 latency > {t.p99_latency_ms} ms for 5 minutes",
                    metric=api_metric("Latency", "p99"),
                    threshold=t.p99_latency_ms,  # API Gateway reports milliseconds
                    comparison=GT,
                    evaluation_periods=5,
                )
            )
        functions = {fn.node.id: fn.function.function_name for fn in stack.functions}
        if stack.api is not None:
            functions["Api"] = read(self, self.config, "backend", "api-function-name")

        def lambda_metric(function_name: str, metric_name: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name=metric_name,
                dimensions_map={"FunctionName": function_name},
                statistic="Sum",
                period=FIVE_MINUTES,
            )

        for name, function_name in functions.items():
            m.add(
                Watch(
                    name=f"{name}Errors",
                    section=section,
                    description=f"Lambda {name}: errors in 5 minutes",
                    metric=lambda_metric(function_name, "Errors"),
                    threshold=1,
                    comparison=GTE,
                    evaluation_periods=1,
                )
            )
            m.add(
                Watch(
                    name=f"{name}Throttles",
                    section=section,
                    description=f"Lambda {name}: throttled in 5 minutes",
                    metric=lambda_metric(function_name, "Throttles"),
                    threshold=1,
                    comparison=GTE,
                    evaluation_periods=1,
                )
            )
        m.add(
            Watch(
                name="S3EventsDeadLetters",
                section=section,
                description="S3 events that failed verification after retries (dead-letter queue)",
                metric=stack.dead_letters.metric_approximate_number_of_messages_visible(
                    period=FIVE_MINUTES, statistic="Maximum"
                ),
                threshold=1,
                comparison=GTE,
                evaluation_periods=1,
            )
        )

    def _watch_database(self, stack: DataStack) -> None:
        m, t, cfg = self.monitoring, self.config.alarms, self.config
        db = stack.database.instance
        section = "RDS PostgreSQL"
        max_conn = cfg.database.max_connections
        m.add(
            Watch(
                name="DbCpu",
                section=section,
                description=f"RDS CPU > {t.cpu_percent:g}% for 15 minutes",
                metric=db.metric_cpu_utilization(period=FIVE_MINUTES),
                threshold=t.cpu_percent,
                comparison=GT,
                evaluation_periods=3,
            )
        )
        m.add(
            Watch(
                name="DbConnections",
                section=section,
                description=f"RDS connections > {t.db_connections_percent:g}% of max_connections ({max_conn})",
                metric=db.metric_database_connections(period=ONE_MINUTE, statistic="Maximum"),
                threshold=round(max_conn * t.db_connections_percent / 100),
                comparison=GT,
                evaluation_periods=5,
            )
        )
        m.add(
            Watch(
                name="DbLowFreeableMemory",
                section=section,
                description=f"RDS freeable memory < {t.free_memory_percent:g}% for 15 minutes",
                metric=db.metric_freeable_memory(period=FIVE_MINUTES, statistic="Minimum"),
                threshold=int(cfg.database_memory_bytes * t.free_memory_percent / 100),
                comparison=LT,
                evaluation_periods=3,
            )
        )
        m.add(
            Watch(
                name="DbDiskQueueDepth",
                section=section,
                description=f"RDS disk queue depth > {t.db_disk_queue_depth:g} for 15 minutes",
                metric=db.metric("DiskQueueDepth", period=FIVE_MINUTES, statistic="Average"),
                threshold=t.db_disk_queue_depth,
                comparison=GT,
                evaluation_periods=3,
            )
        )
        m.add(
            Watch(
                name="DbLowFreeStorage",
                section=section,
                description=f"RDS free storage < {t.free_disk_percent:g}% of the allocated storage",
                metric=db.metric_free_storage_space(period=FIVE_MINUTES, statistic="Minimum"),
                threshold=int(cfg.database.allocated_storage_gib * 1024**3 * t.free_disk_percent / 100),
                comparison=LT,
                evaluation_periods=1,
            )
        )

    def _watch_replicas(self) -> None:
        """Each read replica: replay lag, and the primary's CPU, connection and memory alarms.
        Their identifiers come through SSM (cdk/replica_access.py): the count is a setting."""
        m, t, cfg = self.monitoring, self.config.alarms, self.config
        max_conn = cfg.database.max_connections
        for number, identifier in enumerate(replica_identifiers(self, cfg), start=1):
            name, section = f"DbReplica{number}", f"RDS read replica {number}"

            def rds(
                metric_name: str, statistic: str, period: Duration, identifier: str = identifier
            ) -> cloudwatch.Metric:
                return cloudwatch.Metric(
                    namespace="AWS/RDS",
                    metric_name=metric_name,
                    dimensions_map={"DBInstanceIdentifier": identifier},
                    statistic=statistic,
                    period=period,
                )

            m.add(
                Watch(
                    name=f"{name}Lag",
                    section=section,
                    description=f"Replica {number} lag > {t.db_replica_lag_seconds:g} s for 5 minutes "
                    f"(reads go to the primary beyond {cfg.database.read_max_lag_seconds:g} s)",
                    metric=rds("ReplicaLag", "Maximum", ONE_MINUTE),
                    threshold=t.db_replica_lag_seconds,
                    comparison=GT,
                    evaluation_periods=5,
                )
            )
            m.add(
                Watch(
                    name=f"{name}Cpu",
                    section=section,
                    description=f"Replica {number} CPU > {t.cpu_percent:g}% for 15 minutes",
                    metric=rds("CPUUtilization", "Average", FIVE_MINUTES),
                    threshold=t.cpu_percent,
                    comparison=GT,
                    evaluation_periods=3,
                )
            )
            m.add(
                Watch(
                    name=f"{name}Connections",
                    section=section,
                    description=f"Replica {number} connections > {t.db_connections_percent:g}% of "
                    f"max_connections ({max_conn})",
                    metric=rds("DatabaseConnections", "Maximum", ONE_MINUTE),
                    threshold=round(max_conn * t.db_connections_percent / 100),
                    comparison=GT,
                    evaluation_periods=5,
                )
            )
            m.add(
                Watch(
                    name=f"{name}LowFreeableMemory",
                    section=section,
                    description=f"Replica {number} freeable memory < {t.free_memory_percent:g}% for 15 minutes",
                    metric=rds("FreeableMemory", "Minimum", FIVE_MINUTES),
                    threshold=int(cfg.database_memory_bytes * t.free_memory_percent / 100),
                    comparison=LT,
                    evaluation_periods=3,
                )
            )

    def _watch_bucket(self, stack: DataStack) -> None:
        t = self.config.alarms
        self.monitoring.add(
            Watch(
                name="S3ServerErrors",
                section="S3",
                description=f"S3 5xx errors >= {t.s3_5xx_errors_per_5_minutes} in 5 minutes",
                metric=cloudwatch.Metric(
                    namespace="AWS/S3",
                    metric_name="5xxErrors",
                    dimensions_map={"BucketName": stack.storage.bucket_name, "FilterId": "EntireBucket"},
                    statistic="Sum",
                    period=FIVE_MINUTES,
                ),
                threshold=t.s3_5xx_errors_per_5_minutes,
                comparison=GTE,
                evaluation_periods=1,
            )
        )

    def _watch_storage_rejections(self, ec2_service: Ec2ServiceStack | None) -> None:
        """S3 refused a call of the app (AccessDenied, NoSuchBucket, bad credentials...): the
        request answered 500 and the app's log names the missing IAM action. Retrying never fixes
        it, so one is enough to alarm."""
        counts: dict[str, cloudwatch.IMetric] = {
            "functions": cloudwatch.Metric(
                namespace=APP_METRICS_NAMESPACE,
                metric_name=STORAGE_REJECTED_METRIC,
                dimensions_map={"service": "recordings"},
                statistic="Sum",
                period=FIVE_MINUTES,
            )
        }
        if ec2_service is not None:
            counts["server"] = ec2_service.storage_rejected
        self.monitoring.add(
            Watch(
                name="StorageRejected",
                section="S3",
                description="S3 refused the app's requests (permissions or configuration) in 5 minutes",
                metric=cloudwatch.MathExpression(
                    expression=" + ".join(f"FILL({name}, 0)" for name in counts),
                    using_metrics=counts,
                    period=FIVE_MINUTES,
                    label="refused S3 calls",
                ),
                threshold=1,
                comparison=GTE,
                evaluation_periods=1,
            )
        )
