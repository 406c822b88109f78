"""Prometheus, Alertmanager and Grafana in AWS: the rendered configuration passes the tools' own
checks, the host is private and reachable only through Session Manager, its user data does what
the runbook says, and node exporter runs on every app instance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cdk.constructs.monitoring_host import (
    ALERTMANAGER_PORT,
    APP_PORT,
    GRAFANA_PORT,
    NODE_EXPORTER_PORT,
    PROMETHEUS_PORT,
    alertmanager_config,
    prometheus_config,
)
from tests.cdk.conftest import REPO_ROOT

RULES = REPO_ROOT / "ops" / "prometheus" / "alerts.yml"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed (Debian packages prometheus / prometheus-alertmanager; .ci/run)")
    return found


def _user_data_text(user_data: dict) -> str:
    """The user data script with every CloudFormation token shown as <TOKEN>."""
    parts = user_data["Fn::Base64"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "<TOKEN>" for part in parts)


def _host(profile) -> dict:
    (instance,) = profile.resources("observability", "AWS::EC2::Instance").values()
    return instance["Properties"]


def _heredoc(script: str, marker: str) -> str:
    match = re.search(rf"<<'{marker}'\n(.*?)\n{marker}\n", script, flags=re.S)
    assert match, f"no {marker} heredoc in the user data"
    return match.group(1)


def test_the_monitoring_host_is_on_in_both_profiles(profile) -> None:
    assert profile.config.features.monitoring_host
    assert "observability" in profile.deployment.stacks


def test_rendered_prometheus_config_passes_promtool(tmp_path: Path, prod) -> None:
    """Exactly the file the host gets (from the synthesized user data), checked with its rule file
    and token file in place."""
    script = _user_data_text(_host(prod)["UserData"])
    deployed = _heredoc(script, "PROMETHEUS")
    expected = prometheus_config(
        region=prod.config.region,
        app_stack_name=prod.stack_name("ec2"),
        environment="prod",
        retention_days=prod.config.monitoring_host.retention_days,
    )
    assert deployed == expected
    rendered = prometheus_config(
        region=prod.config.region,
        app_stack_name=prod.stack_name("ec2"),
        environment="prod",
        retention_days=15,
        config_dir=str(tmp_path),
    )
    (tmp_path / "prometheus.yml").write_text(rendered)
    shutil.copy(RULES, tmp_path / "alerts.yml")
    (tmp_path / "metrics-token").write_text("token\n")
    result = subprocess.run(
        [_tool("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "1 rule groups found" in result.stdout or "rules found" in result.stdout


def test_prometheus_scrapes_the_app_and_node_exporter_of_the_ec2_stack(prod) -> None:
    config = json.loads(
        prometheus_config(region="eu-west-1", app_stack_name="Stack-ec2", environment="prod", retention_days=15)
    )
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["recordings"]["authorization"]["credentials_file"] == "/etc/prometheus/metrics-token"
    for job, port in (("recordings", APP_PORT), ("node", NODE_EXPORTER_PORT)):
        (sd,) = jobs[job]["ec2_sd_configs"]
        assert sd["port"] == port
        assert {"name": "tag:aws:cloudformation:stack-name", "values": ["Stack-ec2"]} in sd["filters"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"127.0.0.1:{ALERTMANAGER_PORT}"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_rendered_alertmanager_config_passes_amtool_and_targets_the_alarm_topic(tmp_path: Path, prod) -> None:
    arn = "arn:aws:sns:eu-west-1:123456789012:Recordings-prod-foundation-AlertsTopic"
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_config(topic_arn=arn, region="eu-west-1"))
    result = subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    # On the host, the topic is the CloudWatch alarms' topic (an import from the foundation stack).
    script = json.dumps(_host(prod)["UserData"])
    topic_export = next(
        o["Export"]["Name"]
        for o in prod.template_json("foundation")["Outputs"].values()
        if o.get("Value") == {"Ref": _topic_id(prod)} and "Export" in o
    )
    assert topic_export in script


def _topic_id(profile) -> str:
    (topic_id,) = profile.resources("foundation", "AWS::SNS::Topic")
    return topic_id


def test_the_host_is_private_without_ingress_ssh_or_public_address(profile) -> None:
    host = _host(profile)
    assert "KeyName" not in host
    assert "AvailabilityZone" not in host  # taken from the subnet
    subnet = host["SubnetId"]["Fn::ImportValue"]
    foundation_outputs = profile.template_json("foundation")["Outputs"].values()
    (output,) = [o for o in foundation_outputs if o.get("Export", {}).get("Name") == subnet]
    assert "VpcappSubnet" in output["Value"]["Ref"]  # private with egress, not public
    (group_ref,) = host["SecurityGroupIds"]
    group = profile.resources("observability", "AWS::EC2::SecurityGroup")[group_ref["Fn::GetAtt"][0]]["Properties"]
    assert "SecurityGroupIngress" not in group
    ingress_to_host = [
        r
        for r in profile.resources("observability", "AWS::EC2::SecurityGroupIngress").values()
        if group_ref["Fn::GetAtt"][0] in json.dumps(r["Properties"]["GroupId"])
    ]
    assert not ingress_to_host
    egress = group["SecurityGroupEgress"] + [
        r["Properties"] for r in profile.resources("observability", "AWS::EC2::SecurityGroupEgress").values()
    ]
    assert sorted(e["FromPort"] for e in egress) == [443, APP_PORT, NODE_EXPORTER_PORT]
    assert [b["Ebs"]["Encrypted"] for b in host["BlockDeviceMappings"]] == [True]
    launch = next(iter(profile.resources("observability", "AWS::EC2::LaunchTemplate").values()))["Properties"]
    assert launch["LaunchTemplateData"]["MetadataOptions"]["HttpTokens"] == "required"


def test_only_the_monitoring_host_reaches_node_exporter_and_metrics_on_the_app_instances(profile) -> None:
    rules = [r["Properties"] for r in profile.resources("observability", "AWS::EC2::SecurityGroupIngress").values()]
    ports = sorted(r["FromPort"] for r in rules)
    assert ports == [APP_PORT, NODE_EXPORTER_PORT]
    for rule in rules:
        assert "ec2" in json.dumps(rule["GroupId"]).lower()  # the app instances' group (imported)
        assert "SourceSecurityGroupId" in rule
        assert "CidrIp" not in rule


def test_user_data_runs_the_pinned_containers_on_loopback_with_secrets_from_secrets_manager(profile) -> None:
    cfg = profile.config.monitoring_host
    script = _user_data_text(_host(profile)["UserData"])
    for needle in (
        "dnf install -y docker",
        "ExecStart=/usr/bin/docker run --rm --name prometheus --log-driver journald --net host",
        f"{cfg.prometheus_image} --config.file=/etc/prometheus/prometheus.yml",
        f"--storage.tsdb.retention.time={cfg.retention_days}d",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        f"{cfg.alertmanager_image} --config.file=/etc/alertmanager/alertmanager.yml",
        f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
        cfg.grafana_image,
        f"GF_SERVER_HTTP_ADDR=127.0.0.1\nGF_SERVER_HTTP_PORT={GRAFANA_PORT}",
        "GF_AUTH_ANONYMOUS_ENABLED=false",
        "GF_USERS_ALLOW_SIGN_UP=false",
        cfg.node_exporter_image,
        "python3 -m zipfile -e",
        "systemctl enable --now prometheus.service",
        "systemctl enable --now grafana.service",
        "systemctl enable --now alertmanager.service",
    ):
        assert needle in script, needle
    # Secrets are read at boot (the Grafana password with tracing off) and never written into
    # the template; the metrics token is copied again every 5 minutes.
    secrets_part = script[script.index("set +x") : script.index("set -x\n", script.index("set +x"))]
    assert secrets_part.count("aws secretsmanager get-secret-value") == 1
    assert "GF_SECURITY_ADMIN_PASSWORD=%s" in secrets_part
    refresh = _heredoc(script, "REFRESH")
    assert "aws secretsmanager get-secret-value" in refresh
    assert 'mv -f "$next" /etc/prometheus/metrics-token' in refresh
    assert "systemctl enable --now refresh-metrics-token.timer" in script
    datasource = json.loads(_heredoc(script, "DATASOURCE"))["datasources"][0]
    assert datasource["url"] == f"http://127.0.0.1:{PROMETHEUS_PORT}"
    assert datasource["uid"] == "prometheus"  # the dashboard's datasource variable


def test_the_host_downloads_the_repositorys_rules_and_dashboard(profile) -> None:
    """The two assets are ops/prometheus and ops/grafana as in the repository."""
    script = _user_data_text(_host(profile)["UserData"])
    staged = {p.name: p for p in profile.outdir.glob("asset.*") if p.is_dir()}
    zips = re.findall(r"/tmp/([0-9a-f]{64})\.zip", script)
    assert len(set(zips)) == 2
    found = {}
    for digest in set(zips):
        directory = staged[f"asset.{digest}"]
        found.update({p.relative_to(directory).as_posix(): p for p in directory.rglob("*") if p.is_file()})
    assert found["alerts.yml"].read_text() == RULES.read_text()
    dashboard = REPO_ROOT / "ops" / "grafana" / "dashboards" / "recordings.json"
    assert found["dashboards/recordings.json"].read_text() == dashboard.read_text()


def test_prometheus_uses_the_token_the_app_checks(profile) -> None:
    """The EC2 stack's MetricsToken secret (the app reads it with METRICS_TOKEN_SECRET_ARN),
    handed over through SSM; the host reads it and nothing else does besides the app."""
    name = f"/{profile.config.project}/{profile.config.env_name}/ec2/metrics-token-secret-arn"
    (published,) = [
        r["Properties"]["Value"]
        for r in profile.resources("ec2", "AWS::SSM::Parameter").values()
        if r["Properties"]["Name"] == name
    ]
    assert profile.resources("ec2", "AWS::SecretsManager::Secret")[published["Ref"]]
    parameters = profile.template_json("observability")["Parameters"]
    (reference,) = [key for key, p in parameters.items() if p.get("Default") == name]
    (host,) = profile.resources("observability", "AWS::EC2::Instance").values()
    user_data = host["Properties"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
    start = next(i for i, part in enumerate(user_data) if isinstance(part, str) and "<<'REFRESH'" in part)
    token = next(part for part in user_data[start:] if not isinstance(part, str))
    assert user_data[start].rstrip().endswith("--secret-id")
    assert token == {"Ref": reference}
    (policy,) = profile.resources("observability", "AWS::IAM::Policy").values()
    reads = [
        st["Resource"]
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        if st["Action"] == "secretsmanager:GetSecretValue"
    ]
    assert {"Ref": reference} in reads[0]


def test_the_host_role_is_least_privilege(profile) -> None:
    (policy,) = profile.resources("observability", "AWS::IAM::Policy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    by_action = {}
    for statement in statements:
        for action in statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]:
            by_action[action] = statement["Resource"]
    assert by_action["ec2:DescribeInstances"] == "*"  # no resource-level permissions exist
    assert "Fn::ImportValue" in json.dumps(by_action["sns:Publish"])  # the alarm topic only
    assert len(by_action["secretsmanager:GetSecretValue"]) == 2  # metrics token, Grafana password
    assert len(by_action["s3:GetObject"]) == 2
    assert ".zip" in json.dumps(by_action["s3:GetObject"])
    wildcards = {a for a, r in by_action.items() if r == "*"}
    assert wildcards == {"ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"}


def test_a_failed_host_is_recovered_and_reported(profile) -> None:
    (alarm,) = profile.resources("observability", "AWS::CloudWatch::Alarm").values()
    props = alarm["Properties"]
    assert props["MetricName"] == "StatusCheckFailed_System"
    actions = json.dumps(props["AlarmActions"])
    assert ":ec2:recover" in actions
    assert "Fn::ImportValue" in actions  # the alarm topic


def test_node_exporter_runs_on_every_app_instance(profile) -> None:
    launch = next(iter(profile.resources("ec2", "AWS::EC2::LaunchTemplate").values()))["Properties"]
    script = _user_data_text(launch["LaunchTemplateData"]["UserData"])
    image = profile.config.monitoring_host.node_exporter_image
    assert f"--pid host -v /:/host:ro,rslave {image} --path.rootfs=/host --web.listen-address=:9100" in script
    assert "systemctl enable --now node-exporter.service" in script
    assert "Restart=always" in script
    # The app's own bootstrap is unchanged and comes first.
    assert script.index("recordings.service") < script.index("node-exporter.service")


def test_the_runbook_commands_name_outputs_the_stack_has(profile) -> None:
    runbook = (REPO_ROOT / "RUNBOOK.md").read_text()
    outputs = profile.template_json("observability")["Outputs"]
    for prefix in ("MonitoringHostInstanceId", "MonitoringHostGrafanaAdminSecretArn"):
        assert f"starts_with(OutputKey, '{prefix}')" in runbook
        assert [key for key in outputs if key.startswith(prefix)], prefix
    assert "AWS-StartPortForwardingSession" in runbook
    assert f'"portNumber":["{GRAFANA_PORT}"]' in runbook
    assert f'"portNumber":["{PROMETHEUS_PORT}"]' in runbook


def test_user_data_stays_within_the_ec2_limit(profile) -> None:
    """EC2 refuses user data over 16 KB; the rules and dashboard travel as S3 assets instead."""
    parts = _host(profile)["UserData"]["Fn::Base64"]["Fn::Join"][1]
    # A token becomes an ARN or a name when deployed: count each as 200 bytes.
    size = sum(len(part.encode()) if isinstance(part, str) else 200 for part in parts)
    assert size < 16 * 1024, size
