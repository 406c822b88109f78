"""User data of the app instances: Docker with CloudWatch logging, the CloudWatch agent, the
container under systemd with a liveness restart, and the readiness signal to CloudFormation."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

CONTAINER_PORT = 8000
# Liveness: the process answers. Restarts the container (and never touches the instance).
LIVENESS_PATH = "/health"
# Readiness: database and bucket reachable. Takes a target out of the ALB, never replaces it.
READINESS_PATH = "/health/ready"
CWAGENT_NAMESPACE = "CWAgent"


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


def bootstrap_commands(
    *,
    region: str,
    environment: dict[str, str],
    workers: int,
    log_group_name: str,
    image_parameter_name: str,
    repository_uri: str,
    fallback_image: str,
    signal: str,
    extra_commands: Sequence[str] = (),
) -> list[str]:
    """``extra_commands`` run after the app's units are enabled, before the readiness signal
    (the script ends there)."""
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
        f"if DIGEST=$(aws ssm get-parameter --region {region} --name {image_parameter_name} "
        f"--query Parameter.Value --output text 2>/tmp/image-parameter.err); then IMAGE={repository_uri}@$DIGEST",
        f"elif grep -q ParameterNotFound /tmp/image-parameter.err; then IMAGE={fallback_image}",
        "else cat /tmp/image-parameter.err >&2; exit 1; fi",
        f'aws ecr get-login-password --region {region} | docker login --username AWS --password-stdin "${{IMAGE%%/*}}"',
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
        *extra_commands,
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
