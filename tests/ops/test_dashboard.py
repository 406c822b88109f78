"""The Grafana dashboard: the panels the runbook lists, each with a query on a metric the app
really exports, and the provisioning that loads it."""

from __future__ import annotations

import json
import re

import yaml

from service.observability.metrics import exposition
from tests.ops.conftest import (
    PROMETHEUS_SYNTHETIC,
    REPO,
    promql_call_arguments,
    promql_metric_names,
    promql_selectors,
)

GRAFANA = REPO / "ops" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "recordings.json"


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _on_node_exporter(expr: str) -> bool:
    """Whether every selector of a query picks the node exporter's job."""
    selectors = promql_selectors(expr)
    return bool(selectors) and all(matchers.get("job") == ("=", "node") for _, matchers in selectors)


def test_every_panel_queries_an_exported_metric(exported_metric_names, node_exporter_metric_names):
    """App panels query the service's registry; host panels (job "node") query names a real node
    exporter exposes."""
    panels = _dashboard()["panels"]
    assert panels
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets, f"panel {panel['title']!r} has no query"
        for target in targets:
            used = promql_metric_names(target["expr"])
            assert used, f"panel {panel['title']!r}: query without a metric: {target['expr']}"
            exporter = "node exporter" if _on_node_exporter(target["expr"]) else "the app"
            known = node_exporter_metric_names if exporter == "node exporter" else exported_metric_names
            unknown = used - known - PROMETHEUS_SYNTHETIC
            assert not unknown, f"panel {panel['title']!r} queries metrics {exporter} does not export: {unknown}"


def test_the_runbook_host_panels_are_present():
    """CPU, memory, disk space, disk I/O and network I/O of the app instances (node exporter)."""
    host = {
        panel["title"]: set().union(*(promql_metric_names(t["expr"]) for t in panel["targets"]))
        for panel in _dashboard()["panels"]
        if all(_on_node_exporter(t["expr"]) for t in panel["targets"])
    }
    used = set().union(*host.values())
    for metric in (
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_filesystem_avail_bytes",
        "node_disk_read_bytes_total",
        "node_disk_written_bytes_total",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
    ):
        assert metric in used, metric
    assert len(host) >= 5


def test_the_runbook_panels_are_present():
    expressions = [target["expr"] for panel in _dashboard()["panels"] for target in panel["targets"]]
    quantiles = {
        float(arguments[0]) for expr in expressions for arguments in promql_call_arguments(expr, "histogram_quantile")
    }
    assert {0.5, 0.9, 0.99} <= quantiles
    rated = {
        name
        for expr in expressions
        for arguments in promql_call_arguments(expr, "rate")
        for name in promql_metric_names(arguments[0])
    }
    assert "http_requests_total" in rated
    # The request rate split by status code.
    groupings = {
        tuple(label.strip() for label in labels.split(","))
        for expr in expressions
        for labels in re.findall(r"\bsum\s+by\s*\(([^)]*)\)", expr)
    }
    assert ("status",) in groupings
    used = set().union(*(promql_metric_names(expr) for expr in expressions))
    for metric in (
        "db_pool_checked_out",
        "recordings_uploads_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ):
        assert metric in used, metric


def test_declared_metric_names_match_the_exposition(exported_metric_names):
    # EXPORTED_METRICS documents the contract; histograms and counters expose suffixed samples.
    for name in exposition.EXPORTED_METRICS:
        assert {name, f"{name}_bucket", f"{name}_total"} & exported_metric_names, f"{name} is not exported"


def test_panels_use_the_provisioned_datasource_and_unique_ids():
    dashboard = _dashboard()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {ds["uid"] for ds in datasource["datasources"]}
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] in uids
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "recordings.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
