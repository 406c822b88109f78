"""The alert topic every alarm notifies."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from constructs import Construct

CLOUDWATCH = "cloudwatch.amazonaws.com"


class AlertTopic(Construct):
    """SNS topic for alarms: TLS-only, encrypted with a customer-managed key (CloudWatch cannot
    publish to a topic encrypted with the AWS-managed SNS key), one e-mail subscription per
    recipient.

    A topic policy replaces SNS's default policy, so the CloudWatch service principal must be
    allowed explicitly, both on the topic and on its key; both grants are limited to alarms of
    this account and region (``aws:SourceAccount`` / ``aws:SourceArn``), so no other account's
    alarm can publish here through the service principal.
    """

    def __init__(self, scope: Construct, construct_id: str, *, emails: tuple[str, ...]) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        alarms_of_this_account = {
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnLike": {"aws:SourceArn": f"arn:{stack.partition}:cloudwatch:{stack.region}:{stack.account}:alarm:*"},
        }
        self.key = kms.Key(self, "Key", enable_key_rotation=True, description="Encrypts the alarm SNS topic")
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsUseTheKey",
                principals=[iam.ServicePrincipal(CLOUDWATCH)],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" is this key
                conditions=alarms_of_this_account,
            )
        )
        self.topic = sns.Topic(self, "Topic", master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal(CLOUDWATCH)],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions=alarms_of_this_account,
            )
        )
        for email in emails:
            self.topic.add_subscription(subs.EmailSubscription(email))
