"""Template assertions for security, data safety and the runbook's thresholds."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match


def _one(resources: dict[str, dict]) -> dict:
    assert len(resources) == 1, list(resources)
    return next(iter(resources.values()))["Properties"]


# ---- database -----------------------------------------------------------------------------------


def test_database_is_encrypted_backed_up_and_private(profile) -> None:
    cfg = profile.config.database
    db = profile.template("data")
    db.has_resource(
        "AWS::RDS::DBInstance",
        {
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": Match.object_like(
                {
                    "StorageEncrypted": True,
                    "BackupRetentionPeriod": {"dev": 7, "prod": 30}[profile.profile],
                    "MultiAZ": profile.profile == "prod",
                    "DeletionProtection": profile.profile == "prod",
                    "Port": str(cfg.port),
                    "PubliclyAccessible": False,
                    "EnablePerformanceInsights": True,
                    "EnableCloudwatchLogsExports": ["postgresql", "upgrade"],
                    "MaxAllocatedStorage": cfg.max_allocated_storage_gib,
                    "Engine": "postgres",
                    "EngineVersion": Match.string_like_regexp(r"^18\."),
                }
            ),
        },
    )
    assert cfg.port != 5432
    params = _one(profile.resources("data", "AWS::RDS::DBParameterGroup"))["Parameters"]
    assert params["rds.force_ssl"] == "1"
    assert params["max_connections"] == str(cfg.max_connections)


def test_database_subnets_are_isolated(profile) -> None:
    groups = profile.resources("data", "AWS::RDS::DBSubnetGroup")
    assert len(groups) == 1 + profile.config.database.read_replicas  # the primary's, each replica's
    foundation = profile.template_json("foundation")
    outputs = foundation.get("Outputs", {})
    # Subnet ids come from the foundation stack's isolated ("data") subnets.
    for group in groups.values():
        for ref in group["Properties"]["SubnetIds"]:
            export = ref["Fn::ImportValue"]
            output = next(o for o in outputs.values() if o.get("Export", {}).get("Name") == export)
            assert "VpcdataSubnet" in output["Value"]["Ref"]


def test_database_ingress_only_from_app_security_groups(profile) -> None:
    rules = {}
    for key in ("data", "backend", "ec2"):
        rules.update(profile.resources(key, "AWS::EC2::SecurityGroupIngress"))
    db_port = profile.config.database.port
    to_db = [r["Properties"] for r in rules.values() if r["Properties"].get("FromPort") in (db_port, 5432)]
    assert to_db, "someone must be allowed in"
    for rule in to_db:
        assert "SourceSecurityGroupId" in rule
        assert "CidrIp" not in rule
    # EC2 and Lambda (or the proxy, and Lambda to the proxy) to the primary; EC2 and Lambda to
    # the replicas' security group when there are replicas.
    expected = (3 if profile.config.features.rds_proxy else 2) + (2 if profile.config.database.read_replicas else 0)
    assert len(to_db) == expected


def test_rds_proxy_follows_the_flag(profile) -> None:
    proxies = profile.resources("data", "AWS::RDS::DBProxy")
    if profile.config.features.rds_proxy:
        assert _one(proxies)["RequireTLS"] is True
        target = _one(profile.resources("data", "AWS::RDS::DBProxyTargetGroup"))
        pct = target["ConnectionPoolConfigurationInfo"]["MaxConnectionsPercent"]
        assert pct == profile.config.proxy_max_connections_percent
    else:
        assert proxies == {}


# ---- storage ------------------------------------------------------------------------------------


def _recordings_bucket(profile) -> dict:
    buckets = profile.resources("data", "AWS::S3::Bucket")
    (props,) = [b["Properties"] for b in buckets.values() if "CorsConfiguration" in b["Properties"]]
    return props


def test_every_bucket_is_private_encrypted_and_tls_only(profile) -> None:
    for name, template in profile.all_templates().items():
        resources = template["Resources"]
        buckets = {k: v for k, v in resources.items() if v["Type"] == "AWS::S3::Bucket"}
        policies = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::S3::BucketPolicy"]
        for logical_id, bucket in buckets.items():
            props = bucket["Properties"]
            assert props["PublicAccessBlockConfiguration"] == {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }, (name, logical_id)
            assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"], (name, logical_id)
            # prod keeps data; dev empties and removes its buckets so it can be re-created.
            expected = "Retain" if profile.profile == "prod" else "Delete"
            assert bucket.get("DeletionPolicy") == expected, (name, logical_id)
            denies_plain_http = [
                s
                for p in policies
                if p["Bucket"] == {"Ref": logical_id}
                for s in p["PolicyDocument"]["Statement"]
                if s["Effect"] == "Deny"
                and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            ]
            assert denies_plain_http, f"{name}/{logical_id} must deny non-TLS requests"


def test_recordings_bucket_versioning_cors_lifecycle_logs(profile) -> None:
    props = _recordings_bucket(profile)
    cfg = profile.config
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedOrigins"] == list(cfg.allowed_origins)
    assert set(cors["AllowedMethods"]) == {"GET", "HEAD", "PUT", "POST"}
    assert set(cors["ExposedHeaders"]) == {"ETag", "Location"}
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": cfg.storage.abort_incomplete_multipart_days
    }
    noncurrent = rules["noncurrent-versions"]
    assert noncurrent["NoncurrentVersionTransitions"] == [
        {"StorageClass": "STANDARD_IA", "TransitionInDays": cfg.storage.noncurrent_transition_days}
    ]
    assert noncurrent["NoncurrentVersionExpiration"] == {"NoncurrentDays": cfg.storage.noncurrent_expiration_days}
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    assert props["MetricsConfigurations"] == [{"Id": "EntireBucket"}]
    assert ("ReplicationConfiguration" in props) == cfg.features.replication


def test_object_created_notifications_reach_the_s3_event_function(profile) -> None:
    notif = _one(profile.resources("backend", "Custom::S3BucketNotifications"))
    (config,) = notif["NotificationConfiguration"]["LambdaFunctionConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    fn_id = config["LambdaFunctionArn"]["Fn::GetAtt"][0]
    assert fn_id.startswith("S3EventsFunction")


# ---- EC2 path -----------------------------------------------------------------------------------


def test_instances_require_imdsv2_encrypted_volumes_no_ssh(profile) -> None:
    lt = _one(profile.resources("ec2", "AWS::EC2::LaunchTemplate"))["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required"
    assert "KeyName" not in lt
    assert all(d["Ebs"]["Encrypted"] for d in lt["BlockDeviceMappings"])
    user_data = str(lt["UserData"])
    for needle in ("amazon-cloudwatch-agent", "dnf install -y docker", "docker pull", "mem_used_percent"):
        assert needle in user_data


def _covers_port(rule: dict, port: int) -> bool:
    if str(rule.get("IpProtocol")) == "-1":
        return True
    low, high = rule.get("FromPort", 0), rule.get("ToPort", 65535)
    if isinstance(low, dict) or isinstance(high, dict):
        # Only the database's own port is ever a token (RDS Proxy -> instance endpoint port).
        assert "Endpoint.Port" in str(low), rule
        assert low == high, rule
        return False
    return low <= port <= high


def test_no_security_group_opens_ssh(profile) -> None:
    for name, template in profile.all_templates().items():
        for logical_id, res in template["Resources"].items():
            if res["Type"] == "AWS::EC2::SecurityGroup":
                ingress = res["Properties"].get("SecurityGroupIngress", [])
            elif res["Type"] == "AWS::EC2::SecurityGroupIngress":
                ingress = [res["Properties"]]
            else:
                continue
            assert not any(_covers_port(r, 22) for r in ingress), f"{name}/{logical_id}"


def test_only_the_alb_reaches_the_instances(profile) -> None:
    ingress = [r["Properties"] for r in profile.resources("ec2", "AWS::EC2::SecurityGroupIngress").values()]
    to_app = [r for r in ingress if r.get("FromPort") == 8000]
    assert len(to_app) == 1
    assert to_app[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0].startswith("ServiceAlbSecurityGroup")
    instance_sg = next(
        v["Properties"]
        for k, v in profile.resources("ec2", "AWS::EC2::SecurityGroup").items()
        if k.startswith("ServiceInstanceSecurityGroup")
    )
    assert "SecurityGroupIngress" not in instance_sg


def test_asg_runs_in_app_subnets_and_ecr_scans(profile) -> None:
    asg = _one(profile.resources("ec2", "AWS::AutoScaling::AutoScalingGroup"))
    assert asg["MinSize"] == str(profile.config.ec2.min_capacity)
    assert asg["MaxSize"] == str(profile.config.ec2.max_capacity)
    assert all("appSubnet" in str(s) for s in asg["VPCZoneIdentifier"])
    tg = _one(profile.resources("ec2", "AWS::ElasticLoadBalancingV2::TargetGroup"))
    assert tg["Port"] == 8000
    ecr = _one(profile.resources("data", "AWS::ECR::Repository"))
    assert ecr["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert f'"countNumber":{profile.config.ec2.ecr_keep_images}' in ecr["LifecyclePolicy"]["LifecyclePolicyText"]


def test_alb_logs_and_drops_invalid_headers(profile) -> None:
    alb = _one(profile.resources("ec2", "AWS::ElasticLoadBalancingV2::LoadBalancer"))
    attrs = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    assert attrs["access_logs.s3.enabled"] == "true"
    assert attrs["routing.http.drop_invalid_header_fields.enabled"] == "true"
    assert alb["Scheme"] == "internet-facing"


# ---- Lambda path --------------------------------------------------------------------------------


def _functions(profile) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in profile.resources("backend", "AWS::Lambda::Function").items()}


def _app_function(profile, prefix: str) -> dict:
    (props,) = [p for k, p in _functions(profile).items() if k.startswith(prefix) and "ImageConfig" in p]
    return props


@pytest.mark.parametrize(
    ("prefix", "command"),
    [
        ("ApiFunction", "handlers.api.handler"),
        ("S3EventsFunction", "handlers.s3_events.handler"),
        ("ReaperFunction", "handlers.jobs.reap_handler"),
        ("MigrateFunction", "handlers.jobs.migrate_handler"),
    ],
)
def test_functions_run_the_lambda_image_with_their_handler(profile, prefix: str, command: str) -> None:
    fn = _app_function(profile, prefix)
    assert fn["PackageType"] == "Image"
    assert fn["ImageConfig"]["Command"] == [command]
    env = fn["Environment"]["Variables"]
    assert env["RUNTIME"] == "lambda"
    assert env["ENVIRONMENT"] == profile.profile
    assert env["DB_POOL_SIZE"] == "1"
    assert env["DB_MAX_OVERFLOW"] == "0"
    assert env["CORS_ORIGINS"] == ",".join(profile.config.allowed_origins)
    assert "AWS_REGION" not in env
    assert fn["VpcConfig"]["SubnetIds"]


def test_reserved_concurrency_is_opt_in_and_matches_the_budget(profile) -> None:
    cfg = profile.config
    reserved = {
        prefix: _app_function(profile, prefix).get("ReservedConcurrentExecutions")
        for prefix in ("ApiFunction", "S3EventsFunction", "ReaperFunction", "MigrateFunction")
    }
    if not cfg.lambda_.reserve_concurrency:
        # A new account (quota 10, 100 kept unreserved) cannot reserve anything.
        assert set(reserved.values()) == {None}
        lambda_conns = cfg.lambda_.concurrency_quota
    else:
        assert reserved == {
            "ApiFunction": cfg.lambda_.api_reserved_concurrency,
            "S3EventsFunction": cfg.lambda_.s3_events_reserved_concurrency,
            "ReaperFunction": 1,
            "MigrateFunction": 1,
        }
        lambda_conns = sum(reserved.values())
        assert cfg.lambda_.concurrency_quota - lambda_conns >= 100
    ec2 = cfg.ec2
    peak = lambda_conns + ec2.max_capacity * ec2.uvicorn_workers * (ec2.db_pool_size + ec2.db_max_overflow)
    peak += cfg.database.reserved_admin_connections
    params = _one(profile.resources("data", "AWS::RDS::DBParameterGroup"))["Parameters"]
    assert peak < int(params["max_connections"])


def test_s3_event_failures_go_to_a_dead_letter_queue(profile) -> None:
    invoke = profile.template("backend")
    invoke.has_resource_properties(
        "AWS::Lambda::EventInvokeConfig",
        {
            "MaximumRetryAttempts": 2,
            "DestinationConfig": {
                "OnFailure": {"Destination": {"Fn::GetAtt": [Match.string_like_regexp("^S3EventsDeadLetters"), "Arn"]}}
            },
        },
    )
    invoke.has_resource_properties("AWS::SQS::Queue", {"SqsManagedSseEnabled": True})


def test_reaper_runs_on_a_schedule(profile) -> None:
    rule = _one(profile.resources("backend", "AWS::Events::Rule"))
    assert rule["ScheduleExpression"] == f"rate({profile.config.lambda_.reaper_interval_minutes} minutes)"
    assert rule["Targets"][0]["Arn"]["Fn::GetAtt"][0].startswith("ReaperFunction")


def test_migration_runs_before_the_api(profile) -> None:
    resources = profile.template_json("backend")["Resources"]
    (migration_id,) = [k for k, v in resources.items() if v["Type"] == "Custom::DatabaseMigration"]
    assert resources[migration_id]["Properties"]["MigrationsFingerprint"]
    api_fn = next(
        k for k, v in resources.items() if k.startswith("ApiFunction") and v["Type"] == "AWS::Lambda::Function"
    )
    stage = next(k for k, v in resources.items() if v["Type"] == "AWS::ApiGatewayV2::Stage")
    for dependent in (api_fn, stage):
        assert migration_id in resources[dependent].get("DependsOn", []), dependent
    # The EC2 service stack is deployed only after the backend stack (and so the migration).
    deps = profile.deployment.stacks["ec2"].dependencies
    assert profile.deployment.stacks["backend"] in deps


def test_http_api_throttles_logs_and_limits_cors(profile) -> None:
    api = _one(profile.resources("backend", "AWS::ApiGatewayV2::Api"))
    assert api["CorsConfiguration"]["AllowOrigins"] == list(profile.config.allowed_origins)
    assert set(api["CorsConfiguration"]["ExposeHeaders"]) == {"etag", "location"}
    stage = _one(profile.resources("backend", "AWS::ApiGatewayV2::Stage"))
    assert stage["StageName"] == "$default"
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == profile.config.lambda_.throttle_rate_limit
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == profile.config.lambda_.throttle_burst_limit
    assert "$context.requestId" in stage["AccessLogSettings"]["Format"]
    assert stage["AccessLogSettings"]["DestinationArn"]


def test_log_groups_have_retention(profile) -> None:
    for name, template in profile.all_templates().items():
        for logical_id, res in template["Resources"].items():
            if res["Type"] == "AWS::Logs::LogGroup":
                assert res["Properties"].get("RetentionInDays"), f"{name}/{logical_id}"


# ---- least privilege ----------------------------------------------------------------------------


def _statements(profile) -> list[tuple[str, dict]]:
    out = []
    for name, template in profile.all_templates().items():
        for logical_id, res in template["Resources"].items():
            if res["Type"] == "AWS::IAM::Policy":
                for st in res["Properties"]["PolicyDocument"]["Statement"]:
                    out.append((f"{name}/{logical_id}", st))
    return out


def test_no_wildcard_actions_for_the_app(profile) -> None:
    for where, st in _statements(profile):
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert "*" not in actions, where
        assert "s3:*" not in actions, where
        app_role = any(p in where for p in ("ApiFunction", "S3EventsFunction", "ReaperFunction", "ServiceInstanceRole"))
        if app_role:
            wildcard = [a for a in actions if a.endswith("*") and a.split(":")[0] in {"s3", "secretsmanager", "kms"}]
            assert not wildcard, (where, wildcard)


def test_app_secret_access_is_get_secret_value_only(profile) -> None:
    secret_actions = {
        a
        for _, st in _statements(profile)
        for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])
        if a.startswith("secretsmanager:")
    }
    # The RDS Proxy role (prod) reads the secret through aws-cdk-lib's grantRead.
    allowed = {"secretsmanager:GetSecretValue"}
    if profile.config.features.rds_proxy:
        allowed.add("secretsmanager:DescribeSecret")
    assert secret_actions
    assert secret_actions <= allowed


# ---- monitoring and audit -----------------------------------------------------------------------


def _alarms(profile) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in profile.resources("monitoring", "AWS::CloudWatch::Alarm").items()}


def _alarm(profile, prefix: str) -> dict:
    (props,) = [p for k, p in _alarms(profile).items() if k.startswith(f"Monitoring{prefix}")]
    return props


@pytest.mark.parametrize(
    ("alarm", "threshold", "period", "periods", "operator"),
    [
        ("Alb5xxRate", 5, 60, 5, "GreaterThanThreshold"),
        ("AlbP99Latency", 0.5, 60, 5, "GreaterThanThreshold"),
        ("Api5xxRate", 5, 60, 5, "GreaterThanThreshold"),
        ("ApiP99Latency", 500, 60, 5, "GreaterThanThreshold"),
        ("Ec2Cpu", 80, 300, 3, "GreaterThanThreshold"),
        ("Ec2LowFreeMemory", 90, 300, 3, "GreaterThanThreshold"),
        ("Ec2LowFreeDisk", 90, 300, 1, "GreaterThanThreshold"),
        ("Ec2StatusCheckFailed", 1, 60, 2, "GreaterThanOrEqualToThreshold"),
        ("AlbUnhealthyHosts", 1, 60, 3, "GreaterThanOrEqualToThreshold"),
        ("DbCpu", 80, 300, 3, "GreaterThanThreshold"),
        ("DbDiskQueueDepth", 10, 300, 3, "GreaterThanThreshold"),
        ("S3ServerErrors", 5, 300, 1, "GreaterThanOrEqualToThreshold"),
    ],
)
def test_runbook_alarm_thresholds(profile, alarm, threshold, period, periods, operator) -> None:
    props = _alarm(profile, alarm)
    assert props["Threshold"] == threshold
    assert props["EvaluationPeriods"] == periods == props["DatapointsToAlarm"]
    assert props["ComparisonOperator"] == operator
    if "Metrics" in props:  # metric math: the period sits on each metric
        periods_seen = {m["MetricStat"]["Period"] for m in props["Metrics"] if "MetricStat" in m}
        assert periods_seen == {period}
    else:
        assert props["Period"] == period
    assert props["AlarmActions"]
    assert props["OKActions"]


def test_database_alarms_scale_with_the_instance(profile) -> None:
    cfg = profile.config
    assert _alarm(profile, "DbConnections")["Threshold"] == round(cfg.database.max_connections * 0.8)
    assert _alarm(profile, "DbLowFreeableMemory")["Threshold"] == int(cfg.database_memory_bytes * 0.1)
    assert _alarm(profile, "DbLowFreeStorage")["Threshold"] == int(cfg.database.allocated_storage_gib * 1024**3 * 0.1)


def test_every_function_has_error_and_throttle_alarms(profile) -> None:
    names = set(_alarms(profile))
    for fn in ("Migrate", "S3Events", "Reaper", "Api"):
        assert any(n.startswith(f"Monitoring{fn}Errors") for n in names), fn
        assert any(n.startswith(f"Monitoring{fn}Throttles") for n in names), fn


def test_dashboard_shows_every_alarm(profile) -> None:
    dashboard = _one(profile.resources("monitoring", "AWS::CloudWatch::Dashboard"))
    body = str(dashboard["DashboardBody"])
    assert body.count('"alarms":') == len(_alarms(profile))


def test_alert_topic_is_encrypted_and_tls_only(profile) -> None:
    foundation = profile.template("foundation")
    foundation.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    foundation.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )


def test_network_has_flow_logs_nat_and_s3_endpoint(profile) -> None:
    foundation = profile.template("foundation")
    foundation.resource_count_is("AWS::EC2::NatGateway", profile.config.network.nat_gateways)
    foundation.resource_count_is("AWS::EC2::FlowLog", 1)
    endpoints = [
        e["Properties"]
        for e in profile.resources("foundation", "AWS::EC2::VPCEndpoint").values()
        if e["Properties"].get("VpcEndpointType") == "Gateway"
    ]
    (endpoint,) = endpoints
    assert ".s3" in str(endpoint["ServiceName"])
    assert len(endpoint["RouteTableIds"]) >= len(profile.config.network.availability_zones)
    subnets = profile.resources("foundation", "AWS::EC2::Subnet")
    assert len(subnets) == 3 * len(profile.config.network.availability_zones)


def test_cloudtrail_validates_log_files(profile) -> None:
    trail = _one(profile.resources("audit", "AWS::CloudTrail::Trail"))
    assert trail["EnableLogFileValidation"] is True
    assert trail["IsMultiRegionTrail"] is True
    assert trail["IsLogging"] is True


def test_stateful_stacks_are_protected_in_prod(prod, dev) -> None:
    assert prod.deployment.stacks["data"].termination_protection is True
    assert dev.deployment.stacks["data"].termination_protection is False
