"""Prometheus, Alertmanager and Grafana on one small private host; node exporter everywhere.

The configuration files are rendered here (pure functions, so tests can run ``promtool check
config`` and ``amtool check-config`` on exactly what the host gets). YAML is written as JSON,
which is YAML too.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import MonitoringHostConfig
from cdk.constructs.network import encrypted_root_volume
from cdk.nag import acknowledge

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "ops" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "ops" / "grafana"

APP_PORT = 8000
NODE_EXPORTER_PORT = 9100
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3000
CONFIG_DIR = "/etc/prometheus"
METRICS_TOKEN_FILE = "metrics-token"  # noqa: S105 - a file name
NOBODY = "65534"  # the user the prom/* images run as
GRAFANA_UID = "472"  # the user the grafana image runs as
GRAFANA_DATASOURCE_UID = "prometheus"  # the dashboard's datasource (ops/grafana/provisioning)


def _ec2_targets(*, region: str, stack_name: str, port: int) -> dict:
    return {
        "ec2_sd_configs": [
            {
                "region": region,
                "port": port,
                "filters": [
                    {"name": "tag:aws:cloudformation:stack-name", "values": [stack_name]},
                    {"name": "instance-state-name", "values": ["running"]},
                ],
            }
        ],
        "relabel_configs": [
            {"source_labels": ["__meta_ec2_private_ip"], "target_label": "__address__", "replacement": f"$1:{port}"},
            {"source_labels": ["__meta_ec2_instance_id"], "target_label": "instance_id"},
            {"source_labels": ["__meta_ec2_availability_zone"], "target_label": "availability_zone"},
        ],
    }


def prometheus_config(
    *, region: str, app_stack_name: str, environment: str, retention_days: int, config_dir: str = CONFIG_DIR
) -> str:
    """prometheus.yml for the host: the app's /metrics (bearer token from a file) and node exporter
    on every instance of the EC2 service stack, found by EC2 service discovery; the repository's
    alert rules; alerts to the local Alertmanager."""
    del retention_days  # a command-line flag, kept in the signature so callers state it once
    config = {
        "global": {
            "scrape_interval": "15s",
            "evaluation_interval": "15s",
            "external_labels": {"environment": environment},
        },
        "rule_files": [f"{config_dir}/alerts.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{ALERTMANAGER_PORT}"]}]}]},
        "scrape_configs": [
            {
                "job_name": "recordings",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": f"{config_dir}/{METRICS_TOKEN_FILE}"},
                **_ec2_targets(region=region, stack_name=app_stack_name, port=APP_PORT),
            },
            {"job_name": "node", **_ec2_targets(region=region, stack_name=app_stack_name, port=NODE_EXPORTER_PORT)},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{PROMETHEUS_PORT}"]}]},
        ],
    }
    return json.dumps(config, indent=1)


def alertmanager_config(*, topic_arn: str, region: str) -> str:
    """alertmanager.yml: every alert (and its resolution) to the SNS topic of the CloudWatch
    alarms, signed with the host role's credentials (SigV4)."""
    config = {
        "route": {
            "receiver": "alarm-topic",
            "group_by": ["alertname", "job"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {
                "name": "alarm-topic",
                "sns_configs": [
                    {
                        "topic_arn": topic_arn,
                        "sigv4": {"region": region},
                        "subject": "[{{ .Status | toUpper }}] Prometheus: {{ .CommonLabels.alertname }}",
                        "send_resolved": True,
                    }
                ],
            }
        ],
    }
    return json.dumps(config, indent=1)


def grafana_datasource() -> str:
    """Grafana's Prometheus data source on the host (same uid as the local stack's)."""
    return json.dumps(
        {
            "apiVersion": 1,
            "datasources": [
                {
                    "name": "Prometheus",
                    "uid": GRAFANA_DATASOURCE_UID,
                    "type": "prometheus",
                    "access": "proxy",
                    "url": f"http://127.0.0.1:{PROMETHEUS_PORT}",
                    "isDefault": True,
                    "editable": False,
                    "jsonData": {"timeInterval": "15s"},
                }
            ],
        },
        indent=1,
    )


def container_unit(
    name: str, description: str, run_args: list[str], image: str, command: list[str], *, log_driver: str | None = None
) -> list[str]:
    """Shell lines writing a systemd unit that runs ``image`` in the foreground and restarts it
    (the first boot may come before the network reaches the registry). ``log_driver`` None: the
    Docker daemon's (CloudWatch Logs on the app instances)."""
    log = [f"--log-driver {log_driver}"] if log_driver else []
    run = " ".join(["/usr/bin/docker run --rm", f"--name {name}", *log, *run_args, image, *map(shlex.quote, command)])
    return [
        f"cat > /etc/systemd/system/{name}.service <<'UNIT'",
        "[Unit]",
        f"Description={description}",
        "After=docker.service network-online.target",
        "Requires=docker.service",
        "[Service]",
        f"ExecStartPre=-/usr/bin/docker rm -f {name}",
        f"ExecStart={run}",
        "Restart=always",
        "RestartSec=15",
        "[Install]",
        "WantedBy=multi-user.target",
        "UNIT",
        "systemctl daemon-reload",
        f"systemctl enable --now {name}.service",
    ]


def node_exporter_commands(image: str) -> list[str]:
    """User-data lines that run node exporter on a host (port 9100, the host's network, its root
    filesystem read-only), under systemd like the app. Reachable only from the monitoring host's
    security group."""
    return container_unit(
        "node-exporter",
        "Prometheus node exporter",
        ["--net host", "--pid host", "-v /:/host:ro,rslave"],
        image,
        ["--path.rootfs=/host", f"--web.listen-address=:{NODE_EXPORTER_PORT}"],
    )


class MonitoringHost(Construct):
    """One instance in a private subnet running Prometheus (EC2 service discovery of the app
    instances, the rules of ``ops/prometheus/alerts.yml``, the metrics token from Secrets
    Manager), Alertmanager (to the alarm SNS topic) and Grafana (the provisioned dashboard of
    ``ops/grafana``, its admin password generated in Secrets Manager), plus node exporter.

    Nothing listens beyond loopback and the security group has no ingress: operators reach
    Grafana and Prometheus with Session Manager port forwarding. Instance loss: an alarm
    recovers it (StatusCheckFailed_System) and notifies the topic; its metrics history (15 days
    by default) lives on its encrypted root volume and is lost when the host is replaced.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        config: MonitoringHostConfig,
        environment: str,
        app_stack_name: str,
        app_security_group: ec2.ISecurityGroup,
        topic: sns.ITopic,
        metrics_token_secret_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        # The EC2 service's own /metrics token (cdk/app_environment.py), which the app checks.
        self.metrics_token_secret_arn = metrics_token_secret_arn
        self.grafana_admin = secretsmanager.Secret(
            self,
            "GrafanaAdminPassword",
            description="Grafana admin password (user admin) on the monitoring host",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=32, exclude_punctuation=True),
        )
        acknowledge(
            self.grafana_admin,
            "AwsSolutions-SMG4",
            "Read once at boot by the monitoring host; rotating it means replacing the host "
            "(cdk deploy), which the runbook describes. No database or service depends on it.",
        )

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Monitoring host: no ingress (Session Manager); scrapes the app instances",
            allow_all_outbound=False,
        )
        self.security_group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs (EC2, SNS, Secrets Manager, SSM), image registry"
        )
        for port, what in ((APP_PORT, "app /metrics"), (NODE_EXPORTER_PORT, "node exporter")):
            self.security_group.connections.allow_to(app_security_group, ec2.Port.tcp(port), f"Prometheus to {what}")

        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="Recordings monitoring host (Prometheus, Alertmanager, Grafana)",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
        )
        # EC2 service discovery; neither action supports resource-level permissions.
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"], resources=["*"])
        )
        # GetSecretValue alone (grant_read would add DescribeSecret), on these two secrets.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[metrics_token_secret_arn, self.grafana_admin.secret_arn],
            )
        )
        topic.grant_publish(self.role)
        rules = s3_assets.Asset(self, "PrometheusRules", path=str(PROMETHEUS_DIR))
        dashboards = s3_assets.Asset(self, "GrafanaFiles", path=str(GRAFANA_DIR))
        # The two objects, not the whole asset bucket (Asset.grant_read would allow s3:List*).
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[a.bucket.arn_for_objects(a.s3_object_key) for a in (rules, dashboards)],
            )
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "AmazonSSMManagedInstanceCore is the AWS-maintained minimum for Session Manager, the only "
            "way in (no SSH, no ingress).",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore",
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "ec2:DescribeInstances/DescribeAvailabilityZones (Prometheus EC2 service discovery) take no "
            "resource; kms:GenerateDataKey* is what SNS needs to publish to the topic under its key.",
            "Resource::*",
            "Action::kms:GenerateDataKey*",
        )

        user_data = ec2.UserData.for_linux()
        user_data.add_commands("set -euxo pipefail", "dnf install -y docker", "systemctl enable --now docker")
        rules_zip = user_data.add_s3_download_command(bucket=rules.bucket, bucket_key=rules.s3_object_key)
        files_zip = user_data.add_s3_download_command(bucket=dashboards.bucket, bucket_key=dashboards.s3_object_key)
        user_data.add_commands(
            *self._host_commands(
                region=region,
                config=config,
                environment=environment,
                app_stack_name=app_stack_name,
                topic_arn=topic.topic_arn,
                metrics_token_arn=metrics_token_secret_arn,
                grafana_secret_arn=self.grafana_admin.secret_arn,
                rules_zip=rules_zip,
                files_zip=files_zip,
            )
        )
        self.instance = ec2.Instance(
            self,
            "Host",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.latest_amazon_linux2023(
                cpu_type=_cpu_type(config.instance_type),
            ),
            role=self.role,
            security_group=self.security_group,
            user_data=user_data,
            # A changed configuration takes effect on a new host (user data runs at first boot).
            user_data_causes_replacement=True,
            require_imdsv2=True,
            detailed_monitoring=True,
            block_devices=[encrypted_root_volume(config.root_volume_gib)],
        )
        # CloudFormation takes the AZ from the subnet; a literal AZ in the template is a lint warning.
        cfn_instance = self.instance.node.default_child
        if isinstance(cfn_instance, ec2.CfnInstance):
            cfn_instance.add_property_deletion_override("AvailabilityZone")
        acknowledge(
            self.instance,
            "AwsSolutions-EC29",
            "A replaceable host (its configuration is all in CDK); the recovery alarm restarts it on "
            "failed system checks. Termination protection would block every configuration change.",
        )
        self.recovery_alarm = cloudwatch.Alarm(
            self,
            "RecoveryAlarm",
            alarm_description="Monitoring host failed its system status check for 2 minutes: recovering it",
            metric=cloudwatch.Metric(
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed_System",
                dimensions_map={"InstanceId": self.instance.instance_id},
                statistic="Maximum",
                period=Duration.minutes(1),
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.recovery_alarm.add_alarm_action(cw_actions.Ec2Action(cw_actions.Ec2InstanceAction.RECOVER))
        self.recovery_alarm.add_alarm_action(cw_actions.SnsAction(topic))

        CfnOutput(self, "InstanceId", value=self.instance.instance_id, description="Session Manager target")
        CfnOutput(self, "GrafanaAdminSecretArn", value=self.grafana_admin.secret_arn)

    @staticmethod
    def _host_commands(
        *,
        region: str,
        config: MonitoringHostConfig,
        environment: str,
        app_stack_name: str,
        topic_arn: str,
        metrics_token_arn: str,
        grafana_secret_arn: str,
        rules_zip: str,
        files_zip: str,
    ) -> list[str]:
        prometheus_yml = prometheus_config(
            region=region,
            app_stack_name=app_stack_name,
            environment=environment,
            retention_days=config.retention_days,
        )

        def secret(arn: str) -> str:
            query = "--query SecretString --output text"
            return f"aws secretsmanager get-secret-value --region {region} {query} --secret-id {arn}"

        return [
            f"install -d -m 0755 {CONFIG_DIR} /etc/alertmanager /etc/grafana/provisioning",
            f"install -d -m 0755 -o {NOBODY} -g {NOBODY} /var/lib/prometheus /var/lib/alertmanager",
            f"install -d -m 0755 -o {GRAFANA_UID} -g {GRAFANA_UID} /var/lib/grafana",
            # The repository's alert rules and Grafana files (dashboard, provisioning).
            f"python3 -m zipfile -e {rules_zip} {CONFIG_DIR}/",
            f"python3 -m zipfile -e {files_zip} /etc/grafana/",
            f"cat > {CONFIG_DIR}/prometheus.yml <<'PROMETHEUS'",
            prometheus_yml,
            "PROMETHEUS",
            "cat > /etc/alertmanager/alertmanager.yml <<'ALERTMANAGER'",
            alertmanager_config(topic_arn=topic_arn, region=region),
            "ALERTMANAGER",
            "cat > /etc/grafana/provisioning/datasources/prometheus.yml <<'DATASOURCE'",
            grafana_datasource(),
            "DATASOURCE",
            # Secrets: read at boot with the host role into files only their reader may open;
            # tracing off so that no value reaches the cloud-init log.
            "set +x",
            "umask 077",
            f"printf 'GF_SECURITY_ADMIN_PASSWORD=%s\\n' \"$({secret(grafana_secret_arn)})\" > /etc/grafana/grafana.env",
            "cat >> /etc/grafana/grafana.env <<'GRAFANAENV'",
            # Loopback only (Session Manager port forwarding), no sign-up, no anonymous access.
            "GF_SERVER_HTTP_ADDR=127.0.0.1",
            f"GF_SERVER_HTTP_PORT={GRAFANA_PORT}",
            "GF_USERS_ALLOW_SIGN_UP=false",
            "GF_AUTH_ANONYMOUS_ENABLED=false",
            "GF_ANALYTICS_REPORTING_ENABLED=false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES=false",
            "GRAFANAENV",
            "umask 022",
            "set -x",
            # The metrics token, now and every 5 minutes (the app follows a new secret value
            # within 5 minutes; Prometheus reads the file at every scrape).
            "cat > /usr/local/bin/refresh-metrics-token <<'REFRESH'",
            "#!/bin/bash",
            "set -euo pipefail",
            "umask 077",
            f"next=$(mktemp {CONFIG_DIR}/.{METRICS_TOKEN_FILE}.XXXXXX)",
            f'{secret(metrics_token_arn)} > "$next"',
            f'chown {NOBODY}:{NOBODY} "$next"',
            f'mv -f "$next" {CONFIG_DIR}/{METRICS_TOKEN_FILE}',
            "REFRESH",
            "chmod 0755 /usr/local/bin/refresh-metrics-token",
            "/usr/local/bin/refresh-metrics-token",
            "cat > /etc/systemd/system/refresh-metrics-token.service <<'UNIT'",
            "[Unit]",
            "Description=Copy the app's /metrics token from Secrets Manager for Prometheus",
            "[Service]",
            "Type=oneshot",
            "ExecStart=/usr/local/bin/refresh-metrics-token",
            "UNIT",
            "cat > /etc/systemd/system/refresh-metrics-token.timer <<'UNIT'",
            "[Unit]",
            "Description=Refresh the /metrics token every 5 minutes",
            "[Timer]",
            "OnBootSec=5min",
            "OnUnitActiveSec=5min",
            "[Install]",
            "WantedBy=timers.target",
            "UNIT",
            "systemctl daemon-reload",
            "systemctl enable --now refresh-metrics-token.timer",
            f"chown -R {NOBODY}:{NOBODY} /var/lib/prometheus /var/lib/alertmanager",
            *container_unit(
                "alertmanager",
                "Prometheus Alertmanager",
                ["--net host", "-v /etc/alertmanager:/etc/alertmanager:ro", "-v /var/lib/alertmanager:/alertmanager"],
                config.alertmanager_image,
                [
                    "--config.file=/etc/alertmanager/alertmanager.yml",
                    "--storage.path=/alertmanager",
                    f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
                    "--cluster.listen-address=",
                ],
                log_driver="journald",
            ),
            *container_unit(
                "prometheus",
                "Prometheus",
                ["--net host", f"-v {CONFIG_DIR}:{CONFIG_DIR}:ro", "-v /var/lib/prometheus:/prometheus"],
                config.prometheus_image,
                [
                    f"--config.file={CONFIG_DIR}/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={config.retention_days}d",
                    f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
                ],
                log_driver="journald",
            ),
            *container_unit(
                "grafana",
                "Grafana",
                [
                    "--net host",
                    "--env-file /etc/grafana/grafana.env",
                    "-v /etc/grafana/provisioning:/etc/grafana/provisioning:ro",
                    "-v /etc/grafana/dashboards:/var/lib/grafana/dashboards:ro",
                    "-v /var/lib/grafana:/var/lib/grafana",
                ],
                config.grafana_image,
                [],
                log_driver="journald",
            ),
            *node_exporter_commands(config.node_exporter_image),
        ]


def _cpu_type(instance_type: str) -> ec2.AmazonLinuxCpuType:
    family = instance_type.split(".")[0]
    graviton = family.endswith("g") or "g" in family[2:]
    return ec2.AmazonLinuxCpuType.ARM_64 if graviton else ec2.AmazonLinuxCpuType.X86_64
