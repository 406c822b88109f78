"""Every alarm watches a metric something actually emits.

An alarm on a metric nobody publishes stays in INSUFFICIENT_DATA forever and never pages. Each
alarm's namespace, metric name and dimensions are matched against an emitter:

- the CloudWatch agent configuration in the instances' user data (``CWAgent``), including the
  ``ec2:DescribeTags`` permission the agent needs to append the Auto Scaling group's name;
- the embedded metric format the Lambda code writes (Powertools ``Metrics`` in
  ``service/observability/emf.py`` and the handlers);
- AWS service metrics, whose dimensions must resolve (through references, exports or SSM
  parameters) to a resource of the kind that publishes them, in some stack of the profile.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# namespace -> (metric names AWS publishes there, {dimension: (resource type, attribute or None for Ref)})
AWS_METRICS = {
    "AWS/ApplicationELB": (
        {
            "HTTPCode_Target_5XX_Count",
            "HTTPCode_ELB_5XX_Count",
            "HTTPCode_Target_4XX_Count",
            "RequestCount",
            "TargetResponseTime",
            "UnHealthyHostCount",
            "HealthyHostCount",
        },
        {
            "LoadBalancer": ("AWS::ElasticLoadBalancingV2::LoadBalancer", "LoadBalancerFullName"),
            "TargetGroup": ("AWS::ElasticLoadBalancingV2::TargetGroup", "TargetGroupFullName"),
        },
    ),
    "AWS/EC2": (
        {"CPUUtilization", "StatusCheckFailed", "StatusCheckFailed_Instance", "StatusCheckFailed_System"},
        {
            "AutoScalingGroupName": ("AWS::AutoScaling::AutoScalingGroup", None),
            "InstanceId": ("AWS::EC2::Instance", None),  # the monitoring host
        },
    ),
    "AWS/Lambda": (
        {"Errors", "Throttles", "Duration", "Invocations", "ConcurrentExecutions"},
        {"FunctionName": ("AWS::Lambda::Function", None)},
    ),
    "AWS/ApiGateway": (
        {"5xx", "4xx", "Count", "Latency", "IntegrationLatency"},
        {"ApiId": ("AWS::ApiGatewayV2::Api", None)},
    ),
    "AWS/RDS": (
        {
            "CPUUtilization",
            "DatabaseConnections",
            "FreeableMemory",
            "DiskQueueDepth",
            "FreeStorageSpace",
            "ReadLatency",
            "WriteLatency",
            "ReplicaLag",  # read replicas only
        },
        {"DBInstanceIdentifier": ("AWS::RDS::DBInstance", None)},
    ),
    "AWS/SQS": (
        {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
        {"QueueName": ("AWS::SQS::Queue", "QueueName")},
    ),
}
# S3 request metrics exist only for a bucket with a metrics configuration of that FilterId.
S3_REQUEST_METRICS = {"AllRequests", "4xxErrors", "5xxErrors", "GetRequests", "PutRequests", "FirstByteLatency"}


class Sources:
    """The synthesized templates of one profile, with the lookups the checks need."""

    def __init__(self, templates: dict[str, dict]) -> None:
        self.templates = templates

    def resource(self, stack: str, logical_id: str) -> dict:
        return self.templates[stack]["Resources"][logical_id]

    def resolve(self, stack: str, value) -> tuple[str, object]:
        """Follow SSM parameters and exports to the producing stack and its raw value."""
        if isinstance(value, dict) and "Ref" in value:
            param = self.templates[stack].get("Parameters", {}).get(value["Ref"])
            if param is not None and "AWS::SSM::Parameter::Value" in param["Type"]:
                for name, template in self.templates.items():
                    for res in template["Resources"].values():
                        if res["Type"] == "AWS::SSM::Parameter" and res["Properties"]["Name"] == param["Default"]:
                            return self.resolve(name, res["Properties"]["Value"])
                raise LookupError(f"no stack writes the SSM parameter {param['Default']}")
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            wanted = value["Fn::ImportValue"]
            for name, template in self.templates.items():
                for output in template.get("Outputs", {}).values():
                    if output.get("Export", {}).get("Name") == wanted:
                        return self.resolve(name, output["Value"])
            raise LookupError(f"no stack exports {wanted}")
        return stack, value

    def resource_behind(self, stack: str, value) -> tuple[str | None, str | None]:
        """(resource type, attribute) a dimension value comes from; attribute None for Ref."""
        stack, raw = self.resolve(stack, value)
        if isinstance(raw, dict) and "Ref" in raw:
            return self.resource(stack, raw["Ref"])["Type"], None
        if isinstance(raw, dict) and "Fn::GetAtt" in raw:
            logical_id, attribute = raw["Fn::GetAtt"]
            return self.resource(stack, logical_id)["Type"], attribute
        return None, None

    def user_data_blocks(self, marker: str) -> list[str]:
        blocks = []
        for template in self.templates.values():
            for res in template["Resources"].values():
                # A plain EC2 instance's launch template (IMDSv2 only) carries no user data.
                if res["Type"] == "AWS::EC2::LaunchTemplate" and "UserData" in res["Properties"]["LaunchTemplateData"]:
                    parts = res["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Join"][1]
                    text = "".join(p if isinstance(p, str) else "TOKEN" for p in parts)
                    if f"<<'{marker}'\n" in text:
                        blocks.append(text.split(f"<<'{marker}'\n", 1)[1].split(f"\n{marker}", 1)[0])
        return blocks

    def instance_roles_may(self, action: str) -> bool:
        for template in self.templates.values():
            for logical_id, res in template["Resources"].items():
                if res["Type"] == "AWS::IAM::Policy" and "InstanceRole" in logical_id:
                    for st in res["Properties"]["PolicyDocument"]["Statement"]:
                        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                        if st["Effect"] == "Allow" and action in actions:
                            return True
        return False

    def lambda_environments(self) -> list[dict]:
        return [
            res["Properties"].get("Environment", {}).get("Variables", {})
            for template in self.templates.values()
            for res in template["Resources"].values()
            if res["Type"] == "AWS::Lambda::Function" and "ImageConfig" in res["Properties"]
        ]


def _agent_metrics(sources: Sources) -> tuple[str, set[str], list[set[str]]] | None:
    blocks = sources.user_data_blocks("CWAGENT")
    if not blocks:
        return None
    (config,) = {json.dumps(json.loads(b), sort_keys=True) for b in blocks}
    metrics = json.loads(config)["metrics"]
    names = set()
    for plugin, spec in metrics["metrics_collected"].items():
        for measurement in spec["measurement"]:
            name = measurement if isinstance(measurement, str) else measurement["name"]
            names.add(name if name.startswith(f"{plugin}_") else f"{plugin}_{name}")
    return metrics["namespace"], names, [set(d) for d in metrics["aggregation_dimensions"]]


def _emf_metrics() -> tuple[str, str, set[str]]:
    """Namespace default, service default and metric names the Lambda code can emit: the EMF
    listener (service/observability/emf.py) and every handler that counts through it."""
    emf_source = REPO_ROOT / "service" / "observability" / "emf.py"
    trees = [ast.parse(path.read_text()) for path in [emf_source, *sorted((REPO_ROOT / "handlers").glob("*.py"))]]
    dicts: dict[str, ast.Dict] = {}
    namespace = service = None
    names: set[str] = set()
    for node in ast.walk(trees[0]):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    dicts[target.id] = node.value
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Metrics":
            for kw in node.keywords:
                if kw.arg == "namespace":
                    namespace = ast.literal_eval(kw.value.args[1])
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "SERVICE_NAME" for t in node.targets):
            service = ast.literal_eval(node.value.args[1])
    for tree in trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            if called == "add_metric":
                (name_arg,) = [kw.value for kw in node.keywords if kw.arg == "name"]
            elif called == "count" and len(node.args) == 1:
                (name_arg,) = node.args
            else:
                continue
            if isinstance(name_arg, ast.Constant):
                names.add(name_arg.value)
            elif isinstance(name_arg, ast.Subscript) and isinstance(name_arg.value, ast.Name):
                names.update(ast.literal_eval(v) for v in dicts[name_arg.value.id].values)
    assert namespace, "the EMF namespace could not be read"
    assert service, "the EMF service dimension could not be read"
    assert names, "no EMF metric names found"
    return namespace, service, names


def _why_unfed(sources: Sources, stack: str, metric: dict) -> str | None:
    """None when something emits ``metric`` (an alarm's Metric), else the reason."""
    namespace, name = metric["Namespace"], metric["MetricName"]
    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
    if namespace in AWS_METRICS:
        names, dimension_sources = AWS_METRICS[namespace]
        if name not in names:
            return f"{namespace} publishes no {name}"
        for dim, value in dims.items():
            if dim not in dimension_sources:
                return f"{namespace} has no dimension {dim}"
            found = sources.resource_behind(stack, value)
            if found != dimension_sources[dim]:
                return f"{namespace}/{name}: {dim} comes from {found}, not {dimension_sources[dim]}"
        return None
    if namespace == "AWS/S3":
        if name not in S3_REQUEST_METRICS:
            return f"AWS/S3 request metrics have no {name}"
        buckets = [
            res["Properties"]
            for template in sources.templates.values()
            for res in template["Resources"].values()
            if res["Type"] == "AWS::S3::Bucket"
            and json.dumps(res["Properties"].get("BucketName"), sort_keys=True)
            == json.dumps(dims.get("BucketName"), sort_keys=True)
        ]
        if not buckets:
            return f"AWS/S3/{name}: no bucket named {dims.get('BucketName')}"
        ids = {c["Id"] for c in buckets[0].get("MetricsConfigurations", [])}
        if dims.get("FilterId") not in ids:
            return f"AWS/S3/{name}: no metrics configuration {dims.get('FilterId')}"
        return None
    agent = _agent_metrics(sources)
    if agent and namespace == agent[0]:
        _, names, aggregations = agent
        if name not in names:
            return f"the CloudWatch agent collects no {name}"
        if set(dims) not in aggregations:
            return f"the CloudWatch agent aggregates by {aggregations}, not {set(dims)}"
        if "AutoScalingGroupName" in dims:
            if sources.resource_behind(stack, dims["AutoScalingGroupName"]) != (
                "AWS::AutoScaling::AutoScalingGroup",
                None,
            ):
                return "AutoScalingGroupName does not name the group"
            if not sources.instance_roles_may("ec2:DescribeTags"):
                return "the agent cannot read the group's name without ec2:DescribeTags"
        return None
    for template in sources.templates.values():  # a metric filter counting log lines
        for res in template["Resources"].values():
            if res["Type"] != "AWS::Logs::MetricFilter":
                continue
            for transformation in res["Properties"]["MetricTransformations"]:
                if (transformation["MetricNamespace"], transformation["MetricName"]) == (namespace, name):
                    filter_dims = {d["Key"] for d in transformation.get("Dimensions", [])}
                    if set(dims) == filter_dims:
                        return None
    emf_namespace, emf_service, emf_names = _emf_metrics()
    namespaces = {env.get("POWERTOOLS_METRICS_NAMESPACE", emf_namespace) for env in sources.lambda_environments()}
    if namespace in namespaces:
        if name not in emf_names:
            return f"the Lambda code emits no {name}"
        services = {env.get("POWERTOOLS_SERVICE_NAME", emf_service) for env in sources.lambda_environments()}
        if set(dims) != {"service"} or dims["service"] not in services:
            return f"EMF metrics carry the dimension service={services}, not {dims}"
        return None
    return f"nothing emits namespace {namespace}"


def _alarm_metrics(alarm: dict) -> list[dict]:
    if "Metrics" in alarm:
        return [q["MetricStat"]["Metric"] for q in alarm["Metrics"] if "MetricStat" in q]
    return [{k: alarm[k] for k in ("Namespace", "MetricName", "Dimensions") if k in alarm}]


def _unfed_alarms(sources: Sources) -> dict[str, list[str]]:
    unfed = {}
    for stack, template in sources.templates.items():
        for logical_id, res in template["Resources"].items():
            if res["Type"] != "AWS::CloudWatch::Alarm":
                continue
            reasons = [r for m in _alarm_metrics(res["Properties"]) if (r := _why_unfed(sources, stack, m))]
            if reasons:
                unfed[f"{stack}/{logical_id}"] = reasons
    return unfed


def test_every_alarm_has_an_emitter(profile) -> None:
    sources = Sources(profile.all_templates())
    alarms = [r for t in sources.templates.values() for r in t["Resources"].values() if r["Type"].endswith("Alarm")]
    assert len(alarms) >= 20
    assert _unfed_alarms(sources) == {}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: m.update(MetricName="swap_used_percent"), "collects no swap_used_percent"),
        (lambda m: m.update(Namespace="Custom/Nobody"), "nothing emits namespace Custom/Nobody"),
        (lambda m: m["Dimensions"].append({"Name": "InstanceId", "Value": "i-1"}), "aggregates by"),
    ],
)
def test_an_alarm_nothing_feeds_is_reported(dev, change, reason) -> None:
    templates = json.loads(json.dumps(dev.all_templates()))
    stack = dev.stack_name("monitoring")
    (memory,) = [
        r["Properties"]
        for k, r in templates[f"{stack}.template.json"]["Resources"].items()
        if k.startswith("MonitoringEc2LowFreeMemory") and r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    change(memory)
    unfed = _unfed_alarms(Sources(templates))
    assert len(unfed) == 1
    (reasons,) = unfed.values()
    assert reason in reasons[0]


def test_without_describe_tags_the_memory_and_disk_alarms_are_reported(dev) -> None:
    templates = json.loads(json.dumps(dev.all_templates()))
    for template in templates.values():
        for logical_id, res in template["Resources"].items():
            if res["Type"] == "AWS::IAM::Policy" and "InstanceRole" in logical_id:
                for st in res["Properties"]["PolicyDocument"]["Statement"]:
                    actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                    st["Action"] = [a for a in actions if a != "ec2:DescribeTags"] or ["ec2:DescribeInstances"]
    unfed = _unfed_alarms(Sources(templates))
    alarms = sorted(k.split("/", 1)[1] for k in unfed)
    assert len(alarms) == 2
    assert alarms[0].startswith("MonitoringEc2LowFreeDisk")
    assert alarms[1].startswith("MonitoringEc2LowFreeMemory")
    assert all("DescribeTags" in reasons[0] for reasons in unfed.values())


def test_emf_emitter_is_read_from_the_lambda_code() -> None:
    namespace, service, names = _emf_metrics()
    assert namespace == "Recordings"
    assert service == "recordings"
    assert {"UploadsCompleted", "UploadsFailed", "VerificationLatency"} <= names
