"""The ECR repository CI pushes the service image to (the EC2 service and, by digest, Lambda)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct


def image_repository(
    scope: Construct, construct_id: str, *, keep_images: int, removal: RemovalPolicy
) -> ecr.Repository:
    """Scanned on push, AES-256, the last ``keep_images`` images kept; emptied before removal
    when ``removal`` destroys it. Lambda may pull: the functions run the image CI pushed here
    (-c lambda_image_digest).

    Built in ``scope`` itself (no construct of its own), so its logical id stays ``Repository``.
    """
    repository = ecr.Repository(
        scope,
        construct_id,
        image_scan_on_push=True,
        encryption=ecr.RepositoryEncryption.AES_256,
        lifecycle_rules=[
            ecr.LifecycleRule(description=f"keep the last {keep_images} images", max_image_count=keep_images)
        ],
        removal_policy=removal,
        empty_on_delete=removal == RemovalPolicy.DESTROY,
    )
    repository.grant_pull(iam.ServicePrincipal("lambda.amazonaws.com"))
    return repository
