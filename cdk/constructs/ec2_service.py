"""The container on EC2: Auto Scaling group in private subnets behind a public ALB."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.config import AlarmConfig, DeploymentConfig, Ec2Config
from cdk.constructs.ec2_user_data import (
    CONTAINER_PORT,
    CWAGENT_NAMESPACE,
    READINESS_PATH,
    bootstrap_commands,
)
from cdk.constructs.functions import REPO_ROOT
from cdk.constructs.monitoring import FIVE_MINUTES, GT, GTE, ONE_MINUTE, AlarmSpec, error_rate_alarm, metric
from cdk.constructs.monitoring_host import node_exporter_commands
from cdk.constructs.network import encrypted_root_volume
from cdk.constructs.storage import secure_bucket
from cdk.nag import acknowledge

# Where CI records the digest of the server image it rolled out (``sha256:<digest>``, an image of
# the project repository); instances read it at boot, so a scale-out host runs what CI deployed.
# Absent: the image CDK built. The deploy role may write it (cdk/stacks/github_oidc.py).
SERVER_IMAGE_PARAMETER = "/{project}/{env}/image-digest"
# How long a new instance may take from launch to a ready container before the rollout fails.
SIGNAL_TIMEOUT = Duration.minutes(15)


def server_image_parameter_name(project: str, env_name: str) -> str:
    return SERVER_IMAGE_PARAMETER.format(project=project, env=env_name)


@dataclass(frozen=True, kw_only=True)
class HttpsOptions:
    """The ALB's domain and certificate: an existing ACM certificate, or a hosted zone in which
    CDK requests a DNS-validated one (and points the domain at the ALB)."""

    domain_name: str
    certificate_arn: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None

    @classmethod
    def from_config(cls, config: DeploymentConfig) -> HttpsOptions | None:
        """The profile's HTTPS settings; None when it serves plain HTTP (allow_plain_http)."""
        if not config.https:
            return None
        return cls(
            domain_name=str(config.domain_name),
            certificate_arn=config.certificate_arn,
            hosted_zone_id=config.hosted_zone_id,
            hosted_zone_name=config.hosted_zone_name,
        )


class Ec2Service(Construct):
    """Runs the ``server`` image on an Auto Scaling group in private subnets, behind an
    internet-facing ALB.

    - HTTPS when ``https`` is given (port 80 only redirects); the app trusts ``X-Forwarded-*``
      only from addresses of the VPC (``FORWARDED_ALLOW_IPS``), so it knows when a request came
      over HTTPS, sends HSTS and marks the session cookie ``Secure``.
    - Health: the group replaces an instance only when EC2 says it is broken (liveness of the
      machine); the container's liveness check (``/health``) restarts the container; the
      target group checks readiness (``/health/ready``) and only takes a target out of rotation.
    - First deploy: CDK builds the ``server`` image for linux/amd64 as an asset; afterwards the
      image CI records in the SSM parameter ``image_parameter_name`` wins (read at every boot).
    - Rollouts of the launch template replace one instance at a time, keep ``min_capacity`` in
      service and wait for each new instance's ``cfn-signal`` (sent once the container is ready).
    - No SSH (Session Manager only), IMDSv2, encrypted volumes, only the ALB reaches the
      instances; Docker's default log driver ships every container's output to CloudWatch Logs.

    The stack grants the instance ``role`` what the app needs (bucket, secret).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        config: Ec2Config,
        repository: ecr.IRepository,
        container_environment: dict[str, str],
        log_retention: logs.RetentionDays,
        log_removal_policy: RemovalPolicy,
        image_parameter_name: str,
        https: HttpsOptions | None = None,
        node_exporter_image: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        region = stack.region

        self.container_log_group = logs.LogGroup(
            self, "ContainerLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.alb_logs = secure_bucket(
            self,
            "AlbAccessLogs",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
            removal_policy=log_removal_policy,
            auto_delete_objects=log_removal_policy == RemovalPolicy.DESTROY,
        )

        self.alb_security_group = ec2.SecurityGroup(
            self, "AlbSecurityGroup", vpc=vpc, description="Public ALB", allow_all_outbound=False
        )
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=self.alb_security_group,
            drop_invalid_header_fields=True,
            idle_timeout=Duration.seconds(60),
        )
        self.alb.log_access_logs(self.alb_logs, prefix="alb")

        self.instance_security_group = ec2.SecurityGroup(
            self,
            "InstanceSecurityGroup",
            vpc=vpc,
            description="App instances: ingress only from the ALB on the container port",
            allow_all_outbound=False,
        )
        # HTTPS out only: ECR, SSM, CloudWatch, S3, Secrets Manager, the OS package mirrors.
        self.instance_security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs")
        self.role = iam.Role(
            self,
            "InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Recordings app instances",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        self.container_log_group.grant_write(self.role)
        cloudwatch.Metric.grant_put_metric_data(self.role)
        # The CloudWatch agent resolves ${aws:AutoScalingGroupName} from the instance's tags.
        self.role.add_to_policy(iam.PolicyStatement(actions=["ec2:DescribeTags"], resources=["*"]))
        repository.grant_pull(self.role)
        self.image_parameter_name = image_parameter_name
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter"],
                resources=[
                    stack.format_arn(service="ssm", resource="parameter", resource_name=image_parameter_name[1:])
                ],
            )
        )
        # The image for the first deploy, built by `cdk deploy` for the instances' platform.
        self.bootstrap_image = ecr_assets.DockerImageAsset(
            self,
            "ServerImage",
            directory=str(REPO_ROOT),
            target="server",
            platform=ecr_assets.Platform.LINUX_AMD64,
        )
        self.bootstrap_image.repository.grant_pull(self.role)
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "AmazonSSMManagedInstanceCore is the AWS-maintained minimum for Session Manager, which "
            "replaces SSH (no key pair, no port 22).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "cloudwatch:PutMetricData and ec2:DescribeTags (CloudWatch agent) and "
            "ecr:GetAuthorizationToken (image pull) support no resource-level permissions; every "
            "other statement names its resource.",
            "Resource::*",
        )

        self.https = https is not None
        self.domain_name = https.domain_name if https else None
        # The app's own origin: the domain, or the ALB's name while there is none.
        container_environment = {
            "PUBLIC_BASE_URL": self.url,
            # Only the ALB (inside the VPC) may tell the app the client's scheme and address.
            "FORWARDED_ALLOW_IPS": vpc.vpc_cidr_block,
            **container_environment,
        }
        if self.https:
            container_environment["SESSION_COOKIE_SECURE"] = "true"

        machine_image = (
            ec2.MachineImage.generic_linux({region: config.ami_id})
            if config.ami_id
            else ec2.MachineImage.latest_amazon_linux2023()
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=machine_image,
            role=self.role,
            security_group=self.instance_security_group,
            user_data=ec2.UserData.for_linux(),
            require_imdsv2=True,
            # The container reaches IMDSv2 for the instance role through one extra network hop.
            http_put_response_hop_limit=2,
            detailed_monitoring=True,
            block_devices=[encrypted_root_volume(config.root_volume_gib)],
        )
        self.asg = autoscaling.AutoScalingGroup(
            self,
            "Asg",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=self.launch_template,
            min_capacity=config.min_capacity,
            max_capacity=config.max_capacity,
            # Liveness of the machine only: a database outage must never replace the fleet.
            health_checks=autoscaling.HealthChecks.ec2(
                grace_period=Duration.seconds(config.health_check_grace_seconds)
            ),
            signals=autoscaling.Signals.wait_for_min_capacity(timeout=SIGNAL_TIMEOUT),
            update_policy=autoscaling.UpdatePolicy.rolling_update(
                max_batch_size=1,
                min_instances_in_service=config.min_capacity,
                wait_on_resource_signals=True,
                pause_time=SIGNAL_TIMEOUT,
            ),
        )
        asg_logical_id = stack.get_logical_id(self.asg.node.default_child)
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:SignalResource"], resources=[Aws.STACK_ID])
        )
        self.launch_template.user_data.add_commands(  # type: ignore[union-attr]
            *bootstrap_commands(
                region=region,
                environment=container_environment,
                workers=config.uvicorn_workers,
                log_group_name=self.container_log_group.log_group_name,
                image_parameter_name=image_parameter_name,
                repository_uri=repository.repository_uri,
                fallback_image=self.bootstrap_image.image_uri,
                signal=f"--stack {Aws.STACK_NAME} --resource {asg_logical_id} --region {region}",
                # Host metrics (CPU, memory, disk, network) for Prometheus on the monitoring host.
                extra_commands=node_exporter_commands(node_exporter_image) if node_exporter_image else (),
            )
        )
        acknowledge(
            self.asg,
            "AwsSolutions-AS3",
            "Scaling activity is kept in the group's activity history; what needs a human "
            "(unhealthy hosts, CPU, status checks) alarms to the SNS topic instead.",
        )
        if config.max_capacity > config.min_capacity:
            self.asg.scale_on_cpu_utilization("CpuScaling", target_utilization_percent=60)

        # One target group whatever the listeners: its identity (and every alarm on it) survives
        # turning HTTPS on.
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "AppTargets",
            vpc=vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.asg],
            deregistration_delay=Duration.seconds(30),
            health_check=elbv2.HealthCheck(
                path=READINESS_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )
        if https is not None:
            certificate = self._certificate(https)
            self.listener = self.alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_certificate_manager(certificate)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
                default_target_groups=[self.target_group],
            )
            self.alb.add_redirect(source_port=80, target_port=443)
        else:
            self.listener = self.alb.add_listener(
                "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, default_target_groups=[self.target_group]
            )

    def _certificate(self, https: HttpsOptions) -> acm.ICertificate:
        if https.certificate_arn:
            return acm.Certificate.from_certificate_arn(self, "Certificate", https.certificate_arn)
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self, "Zone", hosted_zone_id=str(https.hosted_zone_id), zone_name=str(https.hosted_zone_name)
        )
        route53.ARecord(
            self,
            "AliasRecord",
            zone=zone,
            record_name=https.domain_name,
            target=route53.RecordTarget.from_alias(route53_targets.LoadBalancerTarget(self.alb)),
        )
        return acm.Certificate(
            self,
            "Certificate",
            domain_name=https.domain_name,
            validation=acm.CertificateValidation.from_dns(zone),
        )

    @property
    def url(self) -> str:
        if self.domain_name:
            return f"https://{self.domain_name}"
        return f"http://{self.alb.load_balancer_dns_name}"

    def alarms(
        self,
        thresholds: AlarmConfig,
        *,
        alb_name: str | None = None,
        target_group_name: str | None = None,
        asg_name: str | None = None,
    ) -> list[AlarmSpec]:
        """The ALB's error rate, latency and unhealthy targets; the instances' CPU, status checks,
        memory and disk (the last two from the CloudWatch agent). The names default to this
        construct's own; another stack passes the values it read through SSM."""
        t, section = thresholds, "EC2 path (ALB + Auto Scaling group)"
        alb = {"LoadBalancer": alb_name or self.alb.load_balancer_full_name}
        target_group = {"TargetGroup": target_group_name or self.target_group.target_group_full_name}
        asg = {"AutoScalingGroupName": asg_name or self.asg.auto_scaling_group_name}
        lb = "AWS/ApplicationELB"
        return [
            error_rate_alarm(
                name="Alb5xxRate",
                section=section,
                errors=cloudwatch.MathExpression(
                    expression="FILL(target5xx, 0) + FILL(elb5xx, 0)",
                    using_metrics={
                        "target5xx": metric(lb, "HTTPCode_Target_5XX_Count", alb, "Sum", ONE_MINUTE),
                        "elb5xx": metric(lb, "HTTPCode_ELB_5XX_Count", alb, "Sum", ONE_MINUTE),
                    },
                    period=ONE_MINUTE,
                ),
                requests=metric(lb, "RequestCount", alb, "Sum", ONE_MINUTE),
                what="ALB",
                thresholds=t,
            ),
            AlarmSpec(
                name="AlbP99Latency",
                section=section,
                description=f"ALB p99 latency > {t.p99_latency_ms} ms for 5 minutes",
                metric=metric(lb, "TargetResponseTime", alb, "p99", ONE_MINUTE),
                threshold=t.p99_latency_ms / 1000,  # the ALB reports seconds
                comparison=GT,
                evaluation_periods=5,
            ),
            AlarmSpec(
                name="AlbUnhealthyHosts",
                section=section,
                description="Unhealthy targets behind the ALB for 3 minutes",
                metric=metric(lb, "UnHealthyHostCount", {**alb, **target_group}, "Maximum", ONE_MINUTE),
                threshold=1,
                comparison=GTE,
                evaluation_periods=3,
            ),
            AlarmSpec(
                name="Ec2Cpu",
                section=section,
                description=f"EC2 CPU > {t.cpu_percent:g}% for 15 minutes",
                metric=metric("AWS/EC2", "CPUUtilization", asg, "Average", FIVE_MINUTES),
                threshold=t.cpu_percent,
                comparison=GT,
                evaluation_periods=3,
            ),
            AlarmSpec(
                name="Ec2StatusCheckFailed",
                section=section,
                description="EC2 status check failed for 2 minutes",
                metric=metric("AWS/EC2", "StatusCheckFailed", asg, "Maximum", ONE_MINUTE),
                threshold=1,
                comparison=GTE,
                evaluation_periods=2,
            ),
            AlarmSpec(
                name="Ec2LowFreeMemory",
                section=section,
                description=f"EC2 free memory < {t.free_memory_percent:g}% for 15 minutes",
                metric=metric(CWAGENT_NAMESPACE, "mem_used_percent", asg, "Maximum", FIVE_MINUTES),
                threshold=100 - t.free_memory_percent,
                comparison=GT,
                evaluation_periods=3,
            ),
            AlarmSpec(
                name="Ec2LowFreeDisk",
                section=section,
                description=f"EC2 free disk < {t.free_disk_percent:g}%",
                metric=metric(CWAGENT_NAMESPACE, "disk_used_percent", asg, "Maximum", FIVE_MINUTES),
                threshold=100 - t.free_disk_percent,
                comparison=GT,
                evaluation_periods=1,
            ),
        ]
