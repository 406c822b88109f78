"""The container on EC2: Auto Scaling group in private subnets behind a public ALB."""

from __future__ import annotations

import json
import shlex
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

from cdk.config import Ec2Config
from cdk.constructs.functions import REPO_ROOT
from cdk.constructs.storage import secure_bucket
from cdk.nag import acknowledge

CONTAINER_PORT = 8000
# Liveness: the process answers. Restarts the container (and never touches the instance).
LIVENESS_PATH = "/health"
# Readiness: database and bucket reachable. Takes a target out of the ALB, never replaces it.
READINESS_PATH = "/health/ready"
CWAGENT_NAMESPACE = "CWAgent"
# Where CI records the image it rolled out (``<repository-uri>@sha256:<digest>``); instances
# read it at boot, so a scale-out host runs what CI deployed. Absent: the image CDK built.
SERVER_IMAGE_PARAMETER = "/{project}/{env}/ec2/server-image"
# How long a new instance may take from launch to a ready container before the rollout fails.
SIGNAL_TIMEOUT = Duration.minutes(15)


def server_image_parameter_name(project: str, env_name: str) -> str:
    return SERVER_IMAGE_PARAMETER.format(project=project, env=env_name)


def cloudwatch_agent_config() -> dict:
    """Memory and root-disk usage, aggregated per Auto Scaling group for the alarms.

    ``${aws:AutoScalingGroupName}`` is read from the instance's tags: the role needs
    ``ec2:DescribeTags`` or the agent drops every metric that carries it.
    """
    return {
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
    }


def docker_daemon_config(*, region: str, log_group_name: str) -> dict:
    """Every container, whoever starts it (user data or a CI rollout), logs to CloudWatch.

    ``non-blocking`` keeps a CloudWatch Logs outage from stalling the app; the local cache
    (dual logging) keeps ``docker logs`` working and is rotated.
    """
    return {
        "log-driver": "awslogs",
        "log-opts": {
            "awslogs-region": region,
            "awslogs-group": log_group_name,
            "tag": "{{.Name}}/{{.ID}}",
            "mode": "non-blocking",
            "max-buffer-size": "4m",
            "cache-disabled": "false",
            "cache-max-size": "20m",
            "cache-max-file": "5",
            "cache-compress": "true",
        },
    }


@dataclass(frozen=True, kw_only=True)
class HttpsOptions:
    """The ALB's domain and certificate: an existing ACM certificate, or a hosted zone in which
    CDK requests a DNS-validated one (and points the domain at the ALB)."""

    domain_name: str
    certificate_arn: str | None = None
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None


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
            *self._bootstrap_commands(
                region=region,
                environment=container_environment,
                workers=config.uvicorn_workers,
                log_group_name=self.container_log_group.log_group_name,
                image_parameter_name=image_parameter_name,
                fallback_image=self.bootstrap_image.image_uri,
                signal=f"--stack {Aws.STACK_NAME} --resource {asg_logical_id} --region {region}",
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

    @staticmethod
    def _bootstrap_commands(
        *,
        region: str,
        environment: dict[str, str],
        workers: int,
        log_group_name: str,
        image_parameter_name: str,
        fallback_image: str,
        signal: str,
    ) -> list[str]:
        env = dict(environment, WEB_CONCURRENCY=str(workers), PORT=str(CONTAINER_PORT))
        env_file = "\n".join(f"{k}={v}" for k, v in sorted(env.items()))
        liveness = (
            'python -c "import urllib.request; '
            f"urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{LIVENESS_PATH}', timeout=2)\""
        )
        run = " ".join(
            [
                "docker run --name recordings --rm",
                f"-p {CONTAINER_PORT}:{CONTAINER_PORT}",
                "--env-file /etc/recordings/app.env",
                f"--health-cmd {shlex.quote(liveness)}",
                "--health-interval 15s --health-timeout 3s --health-retries 3 --health-start-period 20s",
                '"$IMAGE"',
            ]
        )
        return [
            "set -euxo pipefail",
            "dnf install -y docker amazon-cloudwatch-agent aws-cfn-bootstrap",
            # If anything below fails, CloudFormation hears it now instead of after the timeout.
            f"trap '/opt/aws/bin/cfn-signal --exit-code 1 {signal}' ERR",
            "install -d /etc/docker",
            "cat > /etc/docker/daemon.json <<'DOCKERD'",
            json.dumps(docker_daemon_config(region=region, log_group_name=log_group_name), indent=1),
            "DOCKERD",
            "systemctl enable --now docker",
            "cat > /opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json <<'CWAGENT'",
            json.dumps(cloudwatch_agent_config(), indent=1),
            "CWAGENT",
            "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s "
            "-c file:/opt/aws/amazon-cloudwatch-agent/etc/amazon-cloudwatch-agent.json",
            "install -d -m 0700 /etc/recordings",
            "cat > /etc/recordings/app.env <<'APPENV'",
            env_file,
            "APPENV",
            "chmod 0600 /etc/recordings/app.env",
            # Which image: the one CI recorded, else (first deploy) the one CDK built.
            "cat > /usr/local/bin/recordings-run <<'RUN'",
            "#!/bin/bash",
            "set -euo pipefail",
            f"if IMAGE=$(aws ssm get-parameter --region {region} --name {image_parameter_name} "
            "--query Parameter.Value --output text 2>/tmp/image-parameter.err); then :",
            f"elif grep -q ParameterNotFound /tmp/image-parameter.err; then IMAGE={fallback_image}",
            "else cat /tmp/image-parameter.err >&2; exit 1; fi",
            f"aws ecr get-login-password --region {region} | "
            'docker login --username AWS --password-stdin "${IMAGE%%/*}"',
            'docker pull "$IMAGE"',
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
            # Liveness: a container whose /health fails its checks is restarted, in place.
            "cat > /etc/systemd/system/recordings-liveness.service <<'UNIT'",
            "[Unit]",
            "Description=Restart the Recordings container when its liveness check fails",
            "[Service]",
            "Type=oneshot",
            # "$$" is systemd's escape for a literal "$".
            "ExecStart=/bin/bash -c 'if [ \"$$(docker inspect -f {{.State.Health.Status}} recordings "
            "2>/dev/null)\" = unhealthy ]; then systemctl restart recordings.service; fi'",
            "UNIT",
            "cat > /etc/systemd/system/recordings-liveness.timer <<'UNIT'",
            "[Unit]",
            "Description=Check the Recordings container's liveness every 30 seconds",
            "[Timer]",
            "OnBootSec=2min",
            "OnUnitActiveSec=30s",
            "[Install]",
            "WantedBy=timers.target",
            "UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now recordings.service recordings-liveness.timer",
            # Signal success only once the container is ready (database and bucket reachable).
            "for attempt in $(seq 1 60); do",
            f"  if curl -fsS -o /dev/null http://127.0.0.1:{CONTAINER_PORT}{READINESS_PATH}; then",
            f"    /opt/aws/bin/cfn-signal --exit-code 0 {signal}",
            "    exit 0",
            "  fi",
            "  sleep 10",
            "done",
            f"/opt/aws/bin/cfn-signal --exit-code 1 {signal}",
        ]
