"""Values one stack hands another when their existence depends on a feature flag.

A CloudFormation export cannot be removed while another stack imports it, so a flag that
removes the producer's resource (turning off the Lambda API, the proxy or the EC2 service, or
turning on HTTPS) would deadlock the update. Such values travel as SSM parameters instead: the
consumer reads them at deploy time (an ``AWS::SSM::Parameter::Value<String>`` parameter), which
locks nothing. Values every combination of flags produces stay ordinary references.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from cdk.config import DeploymentConfig


def parameter_name(config: DeploymentConfig, part: str, key: str) -> str:
    return f"/{config.project}/{config.env_name}/{part}/{key}"


def publish(stack: Stack, config: DeploymentConfig, part: str, key: str, value: str) -> ssm.StringParameter:
    """Write ``value`` where :func:`read` finds it (the parameter belongs to ``stack``)."""
    construct_id = "Shared" + "".join(word.capitalize() for word in key.split("-"))
    return ssm.StringParameter(
        stack,
        construct_id,
        parameter_name=parameter_name(config, part, key),
        string_value=value,
        description=f"{part} {key}, read by other stacks of {config.prefix}",
    )


def read(scope: Construct, config: DeploymentConfig, part: str, key: str) -> str:
    return ssm.StringParameter.value_for_string_parameter(scope, parameter_name(config, part, key))
