"""Map a day count from the config onto CloudWatch Logs' fixed retention values."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_logs as logs

from cdk.config import LOG_RETENTION_DAYS

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}
ALLOWED_DAYS = tuple(sorted(_RETENTION))
assert ALLOWED_DAYS == LOG_RETENTION_DAYS  # noqa: S101 - one list, two spellings


def log_retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"log retention {days} days is not one of {ALLOWED_DAYS}") from None


def removal_policy(name: str) -> RemovalPolicy:
    """``retain`` (prod: data outlives the stack) or ``destroy`` (the profile can be re-created)."""
    return {"retain": RemovalPolicy.RETAIN, "destroy": RemovalPolicy.DESTROY}[name]
