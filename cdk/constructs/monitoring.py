"""CloudWatch alarms with the runbook's thresholds, and a dashboard of the same signals.

Constructs describe the alarms they own as :class:`AlarmSpec` data (their ``alarms`` methods);
:class:`ServiceMonitoring` turns each spec into an alarm that notifies the topic, with a widget
on the dashboard. "For N minutes" is expressed as N one-minute periods (or N/5 five-minute
periods for metrics AWS publishes every five minutes), all of which must breach.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import AlarmConfig

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)

GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


@dataclass(frozen=True, kw_only=True)
class AlarmSpec:
    """One alarm definition: what to watch and when it is bad. ``name`` is the alarm's construct
    id (and so part of its logical id); ``section`` groups its dashboard widget."""

    name: str
    description: str
    metric: cloudwatch.IMetric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    evaluation_periods: int
    section: str


class AlarmSource(Protocol):
    """Something that owns alarms. ``scope`` is where the alarms will live: values that travel
    between stacks through SSM (cdk/cross_stack.py) are read there."""

    def alarms(self, scope: Construct, thresholds: AlarmConfig) -> Sequence[AlarmSpec]: ...


def metric(
    namespace: str, name: str, dimensions: Mapping[str, str], statistic: str, period: Duration
) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=namespace, metric_name=name, dimensions_map=dict(dimensions), statistic=statistic, period=period
    )


def error_rate_alarm(
    *,
    name: str,
    section: str,
    errors: cloudwatch.IMetric,
    requests: cloudwatch.IMetric,
    what: str,
    thresholds: AlarmConfig,
) -> AlarmSpec:
    """5xx responses as a share of requests, above the runbook's rate for 5 minutes."""
    rate = thresholds.http_5xx_rate_percent
    return AlarmSpec(
        name=name,
        section=section,
        description=f"{what} 5xx rate > {rate:g}% for 5 minutes",
        metric=cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={"errors": errors, "requests": requests},
            period=ONE_MINUTE,
            label="5xx %",
        ),
        threshold=rate,
        comparison=GT,
        evaluation_periods=5,
    )


class ServiceMonitoring(Construct):
    """Alarms notifying ``topic`` (alarm and recovery), plus one dashboard on which every alarm
    gets a widget, grouped by section in the order the sections first appear."""

    def __init__(self, scope: Construct, construct_id: str, *, topic: sns.ITopic, dashboard_name: str) -> None:
        super().__init__(scope, construct_id)
        self.topic = topic
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self._sections: dict[str, list[cloudwatch.IWidget]] = {}

    def add(self, spec: AlarmSpec) -> cloudwatch.Alarm:
        """The one place an alarm is built from a spec."""
        if spec.name in self.alarms:
            raise ValueError(f"two alarms named {spec.name}")
        alarm = cloudwatch.Alarm(
            self,
            spec.name,
            alarm_description=spec.description,
            metric=spec.metric,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[spec.name] = alarm
        self._sections.setdefault(spec.section, []).append(
            cloudwatch.AlarmWidget(title=spec.description, alarm=alarm, width=8, height=6)
        )
        return alarm

    def finish(self) -> None:
        """Lay out the dashboard; call once after all alarms were added."""
        for section, widgets in self._sections.items():
            self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"## {section}", width=24, height=1))
            for i in range(0, len(widgets), 3):
                self.dashboard.add_widgets(*widgets[i : i + 3])
