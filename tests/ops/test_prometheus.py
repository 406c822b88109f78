"""Prometheus config and alert rules: promtool validation, the rule unit tests, the thresholds the
runbook promises, and that every rule uses metrics the app really exports."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from service.observability.metrics import http as http_metrics
from tests.ops.conftest import (
    PROMETHEUS_SYNTHETIC,
    REPO,
    promql_call_arguments,
    promql_comparison,
    promql_metric_names,
    tool,
)

PROM = REPO / "ops" / "prometheus"
RULES = PROM / "alerts.yml"
RULE_TESTS = PROM / "alerts.test.yml"


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess:
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules():
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests_pass():
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_config():
    # The AWS configuration is rendered by CDK and checked in tests/cdk/test_monitoring_host.py.
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_runbook_thresholds_are_in_the_rules():
    rules = _rules()
    assert {
        "RecordingsAppDown",
        "RecordingsHigh5xxRate",
        "RecordingsHighP99Latency",
        "RecordingsDbPoolSaturated",
    } <= set(rules)
    _, operator, threshold = promql_comparison(rules["RecordingsHigh5xxRate"]["expr"])
    assert (operator, threshold) == (">", 0.05)
    assert rules["RecordingsHigh5xxRate"]["for"] == "5m"
    latency, operator, threshold = promql_comparison(rules["RecordingsHighP99Latency"]["expr"])
    assert (operator, threshold) == (">", 0.5)
    assert latency.startswith("histogram_quantile(")
    assert [float(arguments[0]) for arguments in promql_call_arguments(latency, "histogram_quantile")] == [0.99]
    assert rules["RecordingsHighP99Latency"]["for"] == "5m"
    _, operator, threshold = promql_comparison(rules["RecordingsDbPoolSaturated"]["expr"])
    assert (operator, threshold) == (">", 0.8)
    assert 0.5 in http_metrics.LATENCY_BUCKETS, "the P99 threshold must be a bucket boundary"
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"page", "warning"}
        runbook = urlsplit(rule["annotations"]["runbook_url"])
        assert (runbook.scheme, runbook.path) == ("", "RUNBOOK.md")
        assert runbook.fragment


@pytest.mark.parametrize(
    ("alert", "original", "mutated"),
    [
        ("RecordingsHigh5xxRate", "> 0.05", "> 0.10"),
        ("RecordingsHighP99Latency", "> 0.5", "> 1"),
        ("RecordingsDbPoolSaturated", "> 0.8", "> 0.9"),
        ("RecordingsAppDown", "for: 2m", "for: 10m"),
    ],
)
def test_rule_unit_tests_catch_a_changed_threshold(tmp_path, alert, original, mutated):
    text = RULES.read_text()
    rules = yaml.safe_load(text)
    found = False
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                key = "for" if original.startswith("for:") else "expr"
                old, new = (original.split(": ")[1], mutated.split(": ")[1]) if key == "for" else (original, mutated)
                assert old in rule[key]
                rule[key] = rule[key].replace(old, new)
                found = True
    assert found
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(RULE_TESTS, tmp_path / "alerts.test.yml")
    result = _promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0, f"the unit tests did not notice {alert} changed to {mutated}"
    assert alert in result.stdout + result.stderr


def test_rules_use_only_metrics_the_app_exports(exported_metric_names):
    for name, rule in _rules().items():
        used = promql_metric_names(rule["expr"])
        assert used, f"{name}: no metric selector found"
        unknown = used - exported_metric_names - PROMETHEUS_SYNTHETIC
        assert not unknown, f"{name} uses metrics the app does not export: {unknown}"


def test_scrape_config_targets_the_app_job():
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["recordings"]["metrics_path"] == http_metrics.METRICS_PATH
    assert config["rule_files"] == ["alerts.yml"]
