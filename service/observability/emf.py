"""CloudWatch metrics for the Lambda path: the signal bus's EMF listener.

Powertools' ``Metrics`` buffers the values of one invocation and prints them as one EMF log line
when the invocation ends (handlers/runtime.py wraps every handler). Values are only recorded
while an invocation runs, so code sharing the process (tests, a local server) never fills a
buffer that nothing flushes.
"""

from __future__ import annotations

import contextvars
import os
import warnings

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from service.core import signals
from service.core.signals import Signal

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "recordings")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Recordings"), service=SERVICE_NAME)
# Most API calls change nothing worth counting; an empty flush is normal, not a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

COUNTED = {
    "upload.created": "RecordingsCreated",
    "upload.completed": "UploadsCompleted",
    "upload.failed": "UploadsFailed",
    "upload.expired": "UploadsExpired",
    "upload.deleted": "RecordingsDeleted",
    "upload.restored": "RecordingsRestored",
    # S3 refused a call (permissions or configuration): the StorageRejected alarm watches it.
    "storage.rejected": "StorageRejected",
}

invoking: contextvars.ContextVar[bool] = contextvars.ContextVar("lambda_invocation", default=False)


def count(name: str) -> None:
    """Count one event of ``name`` in this invocation's EMF line."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def record_signal(signal: Signal) -> None:
    if not invoking.get():
        return
    if signal.name == "verification.seconds" and signal.value is not None:
        metrics.add_metric(name="VerificationLatency", unit=MetricUnit.Milliseconds, value=signal.value * 1000)
    elif signal.name in COUNTED:
        count(COUNTED[signal.name])


signals.subscribe(record_signal)
