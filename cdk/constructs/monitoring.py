"""CloudWatch alarms with the runbook's thresholds, and a dashboard of the same signals."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from cdk.config import AlarmConfig

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)


@dataclass(frozen=True, kw_only=True)
class Watch:
    """One alarm definition: what to watch and when it is bad."""

    name: str
    description: str
    metric: cloudwatch.IMetric
    threshold: float
    comparison: cloudwatch.ComparisonOperator
    evaluation_periods: int
    section: str


GT = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
GTE = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
LT = cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD


class ServiceMonitoring(Construct):
    """Alarms notifying ``topic`` (alarm and recovery), plus one dashboard.

    Stacks add signals with the ``watch_*`` methods; every alarm gets a widget on the dashboard.
    "For N minutes" is expressed as N one-minute periods (or N/5 five-minute periods for metrics
    AWS publishes every five minutes), all of which must breach.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic: sns.ITopic,
        thresholds: AlarmConfig,
        dashboard_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = topic
        self.thresholds = thresholds
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self._sections: dict[str, list[cloudwatch.IWidget]] = {}

    # ---- generic -----------------------------------------------------------------------------

    def add(self, watch: Watch) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            watch.name,
            alarm_description=watch.description,
            metric=watch.metric,
            threshold=watch.threshold,
            comparison_operator=watch.comparison,
            evaluation_periods=watch.evaluation_periods,
            datapoints_to_alarm=watch.evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms[watch.name] = alarm
        self._sections.setdefault(watch.section, []).append(
            cloudwatch.AlarmWidget(title=watch.description, alarm=alarm, width=8, height=6)
        )
        return alarm

    def finish(self) -> None:
        """Lay out the dashboard; call once after all signals were added."""
        for section, widgets in self._sections.items():
            self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"## {section}", width=24, height=1))
            for i in range(0, len(widgets), 3):
                self.dashboard.add_widgets(*widgets[i : i + 3])

    def error_rate(
        self, *, name: str, section: str, errors: cloudwatch.IMetric, requests: cloudwatch.IMetric, what: str
    ) -> cloudwatch.Alarm:
        t = self.thresholds
        return self.add(
            Watch(
                name=name,
                section=section,
                description=f"{what} 5xx rate > {t.http_5xx_rate_percent:g}% for 5 minutes",
                metric=cloudwatch.MathExpression(
                    expression="IF(requests > 0, 100 * errors / requests, 0)",
                    using_metrics={"errors": errors, "requests": requests},
                    period=ONE_MINUTE,
                    label="5xx %",
                ),
                threshold=t.http_5xx_rate_percent,
                comparison=GT,
                evaluation_periods=5,
            )
        )
