#!/usr/bin/env python3
"""CDK entry point: ``npx cdk synth -c env=dev|prod`` (cdk.json runs this file).

cdk-nag's AwsSolutions pack runs as a CDK policy-validation plugin on every synthesis: an
unacknowledged finding fails synth, and cdk.out/validation-report.json lists what was
acknowledged and why (``python -m cdk.nag_report cdk.out`` prints it).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks

from cdk.application import Deployment, build_app


def create_app(**kwargs: Any) -> Deployment:
    deployment = build_app(**kwargs)
    Validations.of(deployment.app).add_plugins(AwsSolutionsChecks(deployment.app))
    return deployment


if __name__ == "__main__":
    create_app().app.synth()
