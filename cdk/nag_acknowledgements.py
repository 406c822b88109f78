"""Acknowledgements for helper functions that aws-cdk-lib itself adds to a stack."""

from __future__ import annotations

from aws_cdk import Stack

from cdk.nag import acknowledge

_BASIC_EXECUTION = "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"

# Singleton functions aws-cdk-lib creates (id prefix -> what it does).
_FRAMEWORK_FUNCTIONS = {
    "BucketNotificationsHandler": "configures the bucket's ObjectCreated notification at deploy time",
    "LogRetention": "sets the retention of the RDS log groups at deploy time",
}


def acknowledge_framework_resources(stack: Stack) -> None:
    for child in stack.node.children:
        for prefix, purpose in _FRAMEWORK_FUNCTIONS.items():
            if child.node.id.startswith(prefix):
                acknowledge(
                    child,
                    "AwsSolutions-IAM4",
                    f"aws-cdk-lib's deploy-time helper ({purpose}) writes only its own logs via the "
                    "AWS-maintained basic execution policy.",
                    _BASIC_EXECUTION,
                )
                if prefix == "LogRetention":
                    acknowledge(
                        child,
                        "AwsSolutions-IAM5",
                        "aws-cdk-lib's log-retention helper must manage log groups created later by "
                        "RDS, whose ARNs are unknown at synth time.",
                        "Resource::*",
                    )
