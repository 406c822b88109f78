"""What an operator deploying to a fresh account relies on: HTTPS, alarms that reach someone,
health checks that do not kill the fleet, a first deploy that becomes healthy, quotas, a dev
profile that can be destroyed and re-created, and the cost levers."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from cdk.constructs.ec2_user_data import docker_daemon_config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _one(resources: dict[str, dict]) -> dict:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))["Properties"]


def _token(value) -> str:
    """A CloudFormation intrinsic as quote-free text, e.g. <Ref:Foo> or <GetAtt:Vpc.CidrBlock>."""
    if not isinstance(value, dict):  # an index, as in Fn::Select
        return str(value)
    (fn, arg), *_ = value.items()
    if isinstance(arg, list):
        arg = ".".join(a if isinstance(a, str) else _token(a) for a in arg)
    elif isinstance(arg, dict):
        arg = _token(arg)
    return f"<{fn.removeprefix('Fn::')}:{arg}>"


def _user_data(profile) -> str:
    lt = _one(profile.resources("ec2", "AWS::EC2::LaunchTemplate"))["LaunchTemplateData"]
    parts = lt["UserData"]["Fn::Base64"]["Fn::Join"][1]
    return "".join(p if isinstance(p, str) else _token(p) for p in parts)


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _container_env(profile) -> dict[str, str]:
    text = _user_data(profile)
    block = text.split("<<'APPENV'\n", 1)[1].split("\nAPPENV", 1)[0]
    return dict(line.split("=", 1) for line in block.splitlines())


def _instance_policy_statements(profile) -> list[dict]:
    return [
        st
        for k, v in profile.resources("ec2", "AWS::IAM::Policy").items()
        if k.startswith("ServiceInstanceRole")
        for st in v["Properties"]["PolicyDocument"]["Statement"]
    ]


# ---- 1. HTTPS -----------------------------------------------------------------------------------


def _listeners(profile) -> dict[int, dict]:
    return {
        v["Properties"]["Port"]: v["Properties"]
        for v in profile.resources("ec2", "AWS::ElasticLoadBalancingV2::Listener").values()
    }


def test_prod_serves_https_with_a_dns_validated_certificate_and_redirects_http(prod) -> None:
    listeners = _listeners(prod)
    assert set(listeners) == {80, 443}
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (cert_ref,) = https["Certificates"]
    cert_id = cert_ref["CertificateArn"]["Ref"]
    cert = prod.template_json("ec2")["Resources"][cert_id]
    assert cert["Type"] == "AWS::CertificateManager::Certificate"
    assert cert["Properties"]["DomainName"] == prod.config.domain_name
    assert cert["Properties"]["ValidationMethod"] == "DNS"
    assert cert["Properties"]["DomainValidationOptions"][0]["HostedZoneId"] == prod.config.hosted_zone_id
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    record = _one(prod.resources("ec2", "AWS::Route53::RecordSet"))
    assert record["Name"].rstrip(".") == prod.config.domain_name
    assert "AliasTarget" in record


def test_prod_app_trusts_the_alb_knows_its_https_url_and_sets_secure_cookies(prod) -> None:
    env = _container_env(prod)
    assert env["PUBLIC_BASE_URL"] == f"https://{prod.config.domain_name}"
    assert env["SESSION_COOKIE_SECURE"] == "true"
    # The VPC's CIDR (where the ALB's nodes live), never "*".
    assert "CidrBlock" in env["FORWARDED_ALLOW_IPS"]
    assert f"https://{prod.config.domain_name}" in env["CORS_ORIGINS"].split(",")


def test_dev_runs_plain_http_as_its_profile_says(dev) -> None:
    assert dev.config.allow_plain_http
    listeners = _listeners(dev)
    assert set(listeners) == {80}
    assert listeners[80]["Protocol"] == "HTTP"
    env = _container_env(dev)
    assert env["PUBLIC_BASE_URL"].startswith("http://")
    assert "CidrBlock" in env["FORWARDED_ALLOW_IPS"]
    assert "SESSION_COOKIE_SECURE" not in env


def test_lambda_front_door_knows_its_url_and_sets_secure_cookies(profile) -> None:
    fns = {k: v["Properties"] for k, v in profile.resources("backend", "AWS::Lambda::Function").items()}
    (api,) = [p for k, p in fns.items() if k.startswith("ApiFunction") and "ImageConfig" in p]
    env = api["Environment"]["Variables"]
    assert env["SESSION_COOKIE_SECURE"] == "true"
    url = json.dumps(env["PUBLIC_BASE_URL"])
    assert "https://" in url
    assert "execute-api" in url
    assert "HttpApi" in url


# ---- 2. alarms reach someone --------------------------------------------------------------------


def test_cloudwatch_may_publish_to_the_alarm_topic_for_this_account_only(profile) -> None:
    policy = _one(profile.resources("foundation", "AWS::SNS::TopicPolicy"))
    (allow,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert allow["Action"] == "sns:Publish"
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert ":alarm:*" in json.dumps(allow["Condition"]["ArnLike"]["aws:SourceArn"])
    # The topic is encrypted: CloudWatch must also be allowed to use the key, equally scoped.
    key = _one(profile.resources("foundation", "AWS::KMS::Key"))
    (kms,) = [s for s in key["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(kms["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert kms["Condition"] == allow["Condition"]


def test_alarm_recipients_are_the_profiles(profile) -> None:
    subs = [v["Properties"] for v in profile.resources("foundation", "AWS::SNS::Subscription").values()]
    assert sorted(s["Endpoint"] for s in subs) == sorted(profile.config.alarm_emails)
    assert all(s["Protocol"] == "email" for s in subs)
    if profile.profile == "prod":
        assert len(subs) >= 1


def test_every_alarm_notifies_the_topic(profile) -> None:
    for props in (v["Properties"] for v in profile.resources("monitoring", "AWS::CloudWatch::Alarm").values()):
        assert props["AlarmActions"]
        assert props["OKActions"]


# ---- 3. the CloudWatch agent can name its metrics ------------------------------------------------


def test_instance_role_may_describe_tags_for_the_agent(profile) -> None:
    assert any(
        "ec2:DescribeTags" in _actions(st) and st["Effect"] == "Allow" for st in _instance_policy_statements(profile)
    )
    assert "${aws:AutoScalingGroupName}" in _user_data(profile)


# ---- 4. liveness replaces, readiness only takes out of rotation ----------------------------------


def test_asg_replaces_on_liveness_target_group_checks_readiness(profile) -> None:
    asg = _one(profile.resources("ec2", "AWS::AutoScaling::AutoScalingGroup"))
    assert asg["HealthCheckType"] == "EC2"
    tg = _one(profile.resources("ec2", "AWS::ElasticLoadBalancingV2::TargetGroup"))
    assert tg["HealthCheckPath"] == "/health/ready"
    user_data = _user_data(profile)
    # The container's own liveness check is /health (no database), and failing it restarts the
    # container in place.
    health_cmd = user_data.split("--health-cmd ", 1)[1].split(" --health-interval", 1)[0]
    assert ":8000/health" in health_cmd
    assert "/health/ready" not in health_cmd
    assert "recordings-liveness.timer" in user_data


def test_runbook_says_which_check_is_which() -> None:
    runbook = (REPO_ROOT / "RUNBOOK.md").read_text()
    assert "Liveness" in runbook
    assert "Readiness" in runbook
    assert "/health/ready" in runbook
    assert "HealthCheckType" in runbook


# ---- 5. first deploy without a manual push --------------------------------------------------------


def test_first_deploy_runs_an_image_cdk_builds_for_the_instances_platform(profile) -> None:
    manifest = json.loads((profile.outdir / f"{profile.stack_name('ec2')}.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    assert image["source"]["dockerBuildTarget"] == "server"
    assert image["source"]["platform"] == "linux/amd64"
    lt = _one(profile.resources("ec2", "AWS::EC2::LaunchTemplate"))["LaunchTemplateData"]
    assert lt["InstanceType"].split(".")[0] in {"t3", "m7i", "m6i", "c7i", "t3a"}  # x86_64
    user_data = _user_data(profile)
    # CI's image (recorded in SSM) wins; the asset is the fallback until CI rolled one out.
    parameter = f"/recordings/{profile.profile}/image-digest"  # what CI writes (ops/deploy/release.sh)
    assert f"--name {parameter}" in user_data
    assert "ParameterNotFound" in user_data
    assert "container-assets" in user_data


def test_docs_build_commands_name_the_platform() -> None:
    for path in [REPO_ROOT / "docs" / "deploy.md", REPO_ROOT / "README.md", REPO_ROOT / "RUNBOOK.md"]:
        for line in path.read_text().splitlines():
            if re.search(r"docker (buildx )?build\b", line) and "`docker build`" not in line:
                assert "--platform linux/amd64" in line, f"{path.name}: {line}"


def test_instances_signal_readiness_and_rollouts_keep_the_minimum(profile) -> None:
    asg = profile.template_json("ec2")["Resources"]
    (asg_id,) = [k for k, v in asg.items() if v["Type"] == "AWS::AutoScaling::AutoScalingGroup"]
    res = asg[asg_id]
    rolling = res["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["MinInstancesInService"] == profile.config.ec2.min_capacity
    assert rolling["MaxBatchSize"] == 1
    assert rolling["WaitOnResourceSignals"] is True
    assert profile.config.ec2.max_capacity > profile.config.ec2.min_capacity
    assert res["CreationPolicy"]["ResourceSignal"]["Count"] == profile.config.ec2.min_capacity
    user_data = _user_data(profile)
    assert f"--resource {asg_id}" in user_data
    assert user_data.index("/health/ready") < user_data.index("--exit-code 0")
    assert any("cloudformation:SignalResource" in _actions(st) for st in _instance_policy_statements(profile))


# ---- 8. dev can be destroyed and re-created ------------------------------------------------------


def test_dev_buckets_and_repository_are_removed_prod_keeps_them(profile) -> None:
    destroy = profile.profile == "dev"
    for name, template in profile.all_templates().items():
        resources = template["Resources"]
        auto_deleted = {
            json.dumps(v["Properties"]["BucketName"])
            for v in resources.values()
            if v["Type"] == "Custom::S3AutoDeleteObjects"
        }
        for logical_id, res in resources.items():
            if res["Type"] == "AWS::S3::Bucket":
                assert res["DeletionPolicy"] == ("Delete" if destroy else "Retain"), (name, logical_id)
                assert (json.dumps({"Ref": logical_id}) in auto_deleted) == destroy, (name, logical_id)
    repo = profile.resources("data", "AWS::ECR::Repository")
    (res,) = repo.values()
    assert res["DeletionPolicy"] == ("Delete" if destroy else "Retain")
    assert res["Properties"].get("EmptyOnDelete", False) == destroy


# ---- 9. cost ------------------------------------------------------------------------------------


def test_flow_logs_record_rejected_traffic_with_a_short_retention(profile) -> None:
    flow = _one(profile.resources("foundation", "AWS::EC2::FlowLog"))
    assert flow["TrafficType"] == profile.config.network.flow_log_traffic == "REJECT"
    groups = profile.resources("foundation", "AWS::Logs::LogGroup")
    (group,) = [v for k, v in groups.items() if k.startswith("NetworkFlowLogs")]
    assert group["Properties"]["RetentionInDays"] == profile.config.network.flow_log_retention_days <= 90


def test_dev_has_one_nat_gateway(dev) -> None:
    dev.template("foundation").resource_count_is("AWS::EC2::NatGateway", 1)


def test_container_logs_reach_cloudwatch_from_every_rollout(profile) -> None:
    user_data = _user_data(profile)
    daemon = json.loads(user_data.split("<<'DOCKERD'\n", 1)[1].split("\nDOCKERD", 1)[0])
    # The daemon's default, so containers a CI rollout starts ship their logs too.
    assert daemon["log-driver"] == "awslogs"
    assert daemon["log-opts"]["cache-max-size"]
    assert daemon["log-opts"]["cache-max-file"]
    assert "ContainerLogs" in daemon["log-opts"]["awslogs-group"]
    assert "--log-driver" not in user_data.split("<<'RUN'", 1)[1]
    assert set(docker_daemon_config(region="r", log_group_name="g")) == set(daemon)


def test_replica_bucket_ages_out_what_the_source_ages_out(prod) -> None:
    template = prod.template_json("replica")
    buckets = [v["Properties"] for v in template["Resources"].values() if v["Type"] == "AWS::S3::Bucket"]
    (replica,) = [b for b in buckets if "VersioningConfiguration" in b]
    rules = {r["Id"]: r for r in replica["LifecycleConfiguration"]["Rules"]}
    storage = prod.config.storage
    assert rules["noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": storage.noncurrent_expiration_days
    }
    assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": storage.abort_incomplete_multipart_days
    }
    assert rules["expired-delete-markers"]["ExpiredObjectDeleteMarker"] is True


def test_cost_estimate_is_documented_per_profile() -> None:
    doc = (REPO_ROOT / "docs" / "deploy.md").read_text()
    section = doc.split("## Monthly cost", 1)[1].split("\n## ", 1)[0]
    for profile in ("dev", "prod"):
        assert f"| **{profile} total**" in section or f"**{profile}" in section
    assert "NAT gateway" in section
    assert "$" in section


def test_the_albs_domain_is_an_allowed_origin_everywhere(profile) -> None:
    cfg = profile.config
    origins = set(cfg.allowed_origins)
    assert set(cfg.cors_origins) <= origins
    if cfg.https:
        assert f"https://{cfg.domain_name}" in origins
    buckets = profile.resources("data", "AWS::S3::Bucket").values()
    (cors,) = [
        b["Properties"]["CorsConfiguration"]["CorsRules"][0] for b in buckets if "CorsConfiguration" in b["Properties"]
    ]
    assert set(cors["AllowedOrigins"]) == origins
    api = _one(profile.resources("backend", "AWS::ApiGatewayV2::Api"))
    assert set(api["CorsConfiguration"]["AllowOrigins"]) == origins
    assert set(_container_env(profile)["CORS_ORIGINS"].split(",")) == origins


# ---- profile options: interface endpoints, an existing trail ------------------------------------


@pytest.fixture(scope="module")
def lean_dev(tmp_path_factory):
    """dev with interface endpoints on, an existing trail reused and a pinned AMI (cdk-nag included)."""
    from app import create_app
    from cdk.application import cdk_json_context

    context = copy.deepcopy(cdk_json_context())
    dev = context["recordings"]["profiles"]["dev"]
    dev["network"]["interface_endpoints"] = True
    dev["features"]["cloudtrail"] = False
    dev["existing_trail_arn"] = "arn:aws:cloudtrail:eu-west-1:111122223333:trail/organization"
    dev["ec2"]["ami_id"] = "ami-0123456789abcdef0"
    outdir = tmp_path_factory.mktemp("lean-dev")
    deployment = create_app(context={**context, "env": "dev"}, outdir=str(outdir))
    assembly = deployment.app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    return deployment, {s.stack_name: s.template for s in assembly.stacks}, report


def test_interface_endpoints_are_a_profile_option(lean_dev) -> None:
    _, templates, report = lean_dev
    endpoints = [
        r["Properties"]
        for r in templates["Recordings-dev-foundation"]["Resources"].values()
        if r["Type"] == "AWS::EC2::VPCEndpoint" and r["Properties"].get("VpcEndpointType") == "Interface"
    ]
    services = {json.dumps(e["ServiceName"]) for e in endpoints}
    for name in ("secretsmanager", "ssm", "ecr.api", "ecr.dkr", "logs", "monitoring", "sts"):
        assert any(f".{name}" in s for s in services), name
    assert all(e["PrivateDnsEnabled"] for e in endpoints)
    nag = {r["pluginName"]: r for r in report["pluginReports"]}["AwsSolutions"]
    assert nag["violations"] == []


def test_an_existing_trail_is_reused_instead_of_creating_one(lean_dev, dev) -> None:
    deployment, templates, _ = lean_dev
    assert "audit" not in deployment.stacks
    assert not any(r["Type"] == "AWS::CloudTrail::Trail" for t in templates.values() for r in t["Resources"].values())
    assert "audit" in dev.deployment.stacks


def test_user_data_is_valid_bash(profile, tmp_path) -> None:
    import subprocess

    lt = _one(profile.resources("ec2", "AWS::EC2::LaunchTemplate"))["LaunchTemplateData"]
    parts = lt["UserData"]["Fn::Base64"]["Fn::Join"][1]
    script = tmp_path / "user-data.sh"
    script.write_text("".join(p if isinstance(p, str) else "TOKEN" for p in parts))
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    run = script.read_text().split("<<'RUN'\n", 1)[1].split("\nRUN\n", 1)[0]
    (tmp_path / "run.sh").write_text(run)
    result = subprocess.run(["bash", "-n", str(tmp_path / "run.sh")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_pinned_ami_is_used_as_given(lean_dev, dev) -> None:
    _, templates, _ = lean_dev
    (lt,) = [
        r["Properties"]["LaunchTemplateData"]
        for r in templates["Recordings-dev-ec2"]["Resources"].values()
        if r["Type"] == "AWS::EC2::LaunchTemplate"
    ]
    assert lt["ImageId"] == "ami-0123456789abcdef0"
    # Unpinned (the default), the newest Amazon Linux 2023 is resolved at each deploy.
    unpinned = _one(dev.resources("ec2", "AWS::EC2::LaunchTemplate"))["LaunchTemplateData"]
    assert "Ref" in unpinned["ImageId"]
