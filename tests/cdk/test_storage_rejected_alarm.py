"""The StorageRejected alarm watches what the code emits when S3 refuses a call: the Lambda
functions' EMF metric and, on the EC2 path, a metric filter over the container's JSON log lines."""

from __future__ import annotations

import io
import json
import logging
import re

from botocore.exceptions import ClientError

from service.core.storage import storage_failure
from service.observability import emf
from service.observability.logging import JsonFormatter


def _alarm(profile) -> dict:
    alarms = profile.resources("monitoring", "AWS::CloudWatch::Alarm")
    (props,) = [v["Properties"] for k, v in alarms.items() if k.startswith("MonitoringStorageRejected")]
    return props


def test_alarm_fires_on_the_first_refused_call(profile) -> None:
    props = _alarm(profile)
    assert props["Threshold"] == 1
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == 1
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"]
    assert props["OKActions"]
    stats = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    (expression,) = [m["Expression"] for m in props["Metrics"] if "Expression" in m]
    assert {stat["Period"] for stat in stats.values()} == {300}
    assert all(stat["Stat"] == "Sum" for stat in stats.values())
    assert expression == " + ".join(f"FILL({name}, 0)" for name in stats)

    functions = stats["functions"]["Metric"]
    assert functions["Namespace"] == emf.metrics.namespace
    assert functions["MetricName"] == emf.COUNTED["storage.rejected"]
    assert functions["Dimensions"] == [{"Name": "service", "Value": emf.SERVICE_NAME}]
    assert ("server" in stats) == profile.config.features.ec2_service


def _refused_log_line() -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service.core.storage")
    logger.addHandler(handler)
    try:
        error = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "DeleteObject")
        storage_failure(error, operation="delete_object", bucket="b", key="t/k", versioned=True)
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    return json.loads(line)


def test_server_metric_filter_counts_the_line_the_code_logs(profile) -> None:
    if not profile.config.features.ec2_service:
        return
    (metric_filter,) = profile.resources("ec2", "AWS::Logs::MetricFilter").values()
    props = metric_filter["Properties"]
    (transformation,) = props["MetricTransformations"]
    server = _alarm(profile)["Metrics"]
    (server_stat,) = [m["MetricStat"]["Metric"] for m in server if m["Id"] == "server"]
    assert transformation["MetricNamespace"] == server_stat["Namespace"]
    assert transformation["MetricName"] == server_stat["MetricName"]
    assert "Dimensions" not in server_stat
    assert "Dimensions" not in transformation
    assert transformation["MetricValue"] == "1"

    conditions = re.findall(r'\$\.(\w+) = "([^"]*)"', props["FilterPattern"])
    assert conditions, props["FilterPattern"]
    line = _refused_log_line()
    for field, value in conditions:
        assert line[field] == value, (field, line)
    assert "s3:DeleteObjectVersion" in line["message"]
    assert "arn:aws:s3:::b/t/k" in line["message"]
