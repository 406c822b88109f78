"""The alert topic every alarm notifies."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct


class AlertTopic(Construct):
    """SNS topic for alarms: TLS-only, encrypted with a customer-managed key (CloudWatch cannot
    publish to a topic encrypted with the AWS-managed SNS key), optional e-mail subscription."""

    def __init__(self, scope: Construct, construct_id: str, *, email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the alarm SNS topic")
        # Alarms publish through the CloudWatch service principal, which must use the key.
        self.key.grant(iam.ServicePrincipal("cloudwatch.amazonaws.com"), "kms:Decrypt", "kms:GenerateDataKey*")
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        if email:
            self.topic.add_subscription(subs.EmailSubscription(email))
