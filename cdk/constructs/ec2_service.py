"""The container on EC2: Auto Scaling group in private subnets behind a public ALB."""

from __future__ import annotations

import json
import shlex

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from cdk.config import Ec2Config
from cdk.constructs.monitoring_host import node_exporter_commands
from cdk.constructs.storage import secure_bucket
from cdk.nag import acknowledge

CONTAINER_PORT = 8000
READINESS_PATH = "/health/ready"
CWAGENT_NAMESPACE = "CWAgent"


def _cloudwatch_agent_config() -> str:
    """Memory and root-disk usage, aggregated per Auto Scaling group for the alarms."""
    return json.dumps(
        {
            "agent": {"metrics_collection_interval": 60},
            "metrics": {
                "namespace": CWAGENT_NAMESPACE,
                "append_dimensions": {
                    "AutoScalingGroupName": "${aws:AutoScalingGroupName}",
                    "InstanceId": "${aws:InstanceId}",
                },
                "aggregation_dimensions": [["AutoScalingGroupName"]],
                "metrics_collected": {
                    "mem": {"measurement": ["mem_used_percent"]},
                    "disk": {"measurement": ["used_percent"], "resources": ["/"], "drop_device": True},
                },
            },
        },
        indent=1,
    )


class Ec2Service(Construct):
    """Runs the ``server`` image on an Auto Scaling group (self-healing via ELB health checks on
    ``/health/ready``) in private subnets, behind an internet-facing ALB. HTTPS with the given
    ACM certificate when one is configured (HTTP then only redirects). No SSH: no key pair and no
    port 22; operators use Session Manager. IMDSv2 is required, volumes are encrypted, only the
    ALB reaches the instances. User data installs Docker and the CloudWatch agent (memory and disk
    metrics), pulls the image from ``repository`` and runs it under systemd with container logs
    sent to CloudWatch Logs.

    The stack grants the instance ``role`` what the app needs (bucket, secret, image pull).
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
        certificate_arn: str | None = None,
        node_exporter_image: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region

        self.container_log_group = logs.LogGroup(
            self, "ContainerLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.alb_logs = secure_bucket(
            self,
            "AlbAccessLogs",
            lifecycle_rules=[s3.LifecycleRule(id="expire-logs", expiration=Duration.days(365))],
            removal_policy=RemovalPolicy.RETAIN,
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
            "cloudwatch:PutMetricData (CloudWatch agent) and ecr:GetAuthorizationToken (image pull) "
            "support no resource-level permissions; every other statement names its resource.",
            "Resource::*",
        )

        self.https = bool(certificate_arn)
        # Without a custom domain, links the app builds point at the ALB itself.
        container_environment = {"PUBLIC_BASE_URL": self.url, **container_environment}
        image = f"{repository.repository_uri}:{config.image_tag}"
        registry = repository.repository_uri.split("/")[0]
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            *self._bootstrap_commands(
                region=region,
                image=image,
                registry=registry,
                environment=container_environment,
                workers=config.uvicorn_workers,
                log_group_name=self.container_log_group.log_group_name,
            )
        )
        if node_exporter_image:
            # Host metrics (CPU, memory, disk, network) for Prometheus on the monitoring host.
            user_data.add_commands(*node_exporter_commands(node_exporter_image))

        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(),
            role=self.role,
            security_group=self.instance_security_group,
            user_data=user_data,
            require_imdsv2=True,
            # The container reaches IMDSv2 for the instance role through one extra network hop.
            http_put_response_hop_limit=2,
            detailed_monitoring=True,
            block_devices=[
                ec2.BlockDevice(
                    device_name="/dev/xvda",
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.asg = autoscaling.AutoScalingGroup(
            self,
            "Asg",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            launch_template=self.launch_template,
            min_capacity=config.min_capacity,
            max_capacity=config.max_capacity,
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=Duration.seconds(config.health_check_grace_seconds),
            ),
            update_policy=autoscaling.UpdatePolicy.rolling_update(),
        )
        acknowledge(
            self.asg,
            "AwsSolutions-AS3",
            "Scaling activity is kept in the group's activity history; what needs a human "
            "(unhealthy hosts, CPU, status checks) alarms to the SNS topic instead.",
        )
        if config.max_capacity > config.min_capacity:
            self.asg.scale_on_cpu_utilization("CpuScaling", target_utilization_percent=60)

        if certificate_arn:
            listener = self.alb.add_listener(
                "Https",
                port=443,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn)],
                ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            )
            self.alb.add_redirect(source_port=80, target_port=443)
        else:
            listener = self.alb.add_listener("Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP)
        self.listener = listener
        self.target_group = listener.add_targets(
            "App",
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

    @property
    def url(self) -> str:
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.alb.load_balancer_dns_name}"

    @staticmethod
    def _bootstrap_commands(
        *,
        region: str,
        image: str,
        registry: str,
        environment: dict[str, str],
        workers: int,
        log_group_name: str,
    ) -> list[str]:
        env = dict(environment, WEB_CONCURRENCY=str(workers), PORT=str(CONTAINER_PORT))
        env_file = "\n".join(f"{k}={v}" for k, v in sorted(env.items()))
        health = (
            'python -c "import urllib.request; '
            f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{READINESS_PATH}', timeout=2)\""
        )
        run = " ".join(
            [
                "docker run --name recordings --rm",
                f"-p {CONTAINER_PORT}:{CONTAINER_PORT}",
                "--env-file /etc/recordings/app.env",
                "--log-driver awslogs",
                f"--log-opt awslogs-region={region}",
                f"--log-opt awslogs-group={log_group_name}",
                f"--health-cmd {shlex.quote(health)}",
                "--health-interval 15s --health-timeout 3s --health-retries 3 --health-start-period 20s",
                f"{image}",
            ]
        )
        return [
            "set -euxo pipefail",
            "dnf install -y docker amazon-cloudwatch-agent",
            "systemctl enable --now docker",
            "cat > /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json <<'CWAGENT'",
            _cloudwatch_agent_config(),
            "CWAGENT",
            "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s "
            "-c file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json",
            "install -d -m 0700 /etc/recordings",
            "cat > /etc/recordings/app.env <<'APPENV'",
            env_file,
            "APPENV",
            "chmod 0600 /etc/recordings/app.env",
            # A unit that retries: the first boot may come before CI pushed the image.
            "cat > /usr/local/bin/recordings-run <<'RUN'",
            "#!/bin/bash",
            "set -euo pipefail",
            f"aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin {registry}",
            f"docker pull {image}",
            "docker rm -f recordings 2>/dev/null || true",
            f"exec {run}",
            "RUN",
            "chmod 0755 /usr/local/bin/recordings-run",
            "cat > /etc/systemd/system/recordings.service <<'UNIT'",
            "[Unit]",
            "Description=Recordings API container",
            "After=docker.service network-online.target",
            "Requires=docker.service",
            "[Service]",
            "ExecStart=/usr/local/bin/recordings-run",
            "Restart=always",
            "RestartSec=15",
            "[Install]",
            "WantedBy=multi-user.target",
            "UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now recordings.service",
        ]
