"""Who may deploy and operate an environment: GitHub's OIDC provider and the roles it may assume,
plus the role that verifies backups (docs/deploy.md "CI/CD access").

- deploy role: assumed only by the workflow's deploy job, whose token subject is
  ``repo:<owner>/<repo>:environment:<environment>`` (the environment admits only ``main``). It may
  assume the CDK bootstrap roles (``cdk deploy`` works through them), push to the image
  repository, record the deployed digest, and roll the app hosts through SSM and the target group.
- read-only role: assumed from ``main`` (``ref:refs/heads/main``) and pull requests: drift
  detection and ``cdk diff``. AWS's ReadOnlyAccess (drift detection reads every resource) with
  recording bytes, secrets, logs and decryption explicitly denied.
- backup-verification role: for operators (principals of this account whose own policy lets them
  assume it); restores snapshots into ``*-verify-*`` instances and deletes only those, and checks
  object recovery under the canary prefix. The app hosts' role never gets ``rds:*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, Duration, Stack, Token
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from constructs import Construct

from cdk.config import DeploymentConfig
from cdk.constructs.database import Database
from cdk.constructs.ec2_service import server_image_parameter_name
from cdk.constructs.storage import RecordingsStorage
from cdk.nag import acknowledge

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
# `cdk bootstrap`'s default qualifier; the roles it creates are named after it.
CDK_QUALIFIER = "hnb659fds"
CANARY_PREFIX = "ops/restore-canary/"


def image_digest_parameter_name(config: DeploymentConfig) -> str:
    """SSM parameter holding the digest (``sha256:...``) CI last rolled out; new hosts boot it."""
    return server_image_parameter_name(config.project, config.env_name)


@dataclass(frozen=True, kw_only=True)
class GithubSettings:
    """The ``github`` block of cdk.json context."""

    repository: str  # owner/name
    environment: str = "production"
    branch: str = "main"
    # An account has one provider per URL: set this in every stack but one that shares the account.
    oidc_provider_arn: str | None = None

    @classmethod
    def from_context(cls, block: dict[str, Any] | None) -> GithubSettings:
        if not block or "/" not in str(block.get("repository", "")):
            raise ValueError("cdk.json context github.repository must be 'owner/name'")
        known = {"repository", "environment", "branch", "oidc_provider_arn"}
        unknown = set(block) - known
        if unknown:
            raise ValueError(f"cdk.json context github: unknown keys {sorted(unknown)}")
        return cls(**block)


class GithubOidcStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        github: GithubSettings,
        repository: ecr.IRepository,
        storage: RecordingsStorage,
        database: Database,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        if github.oidc_provider_arn:
            provider_arn = github.oidc_provider_arn
        else:
            provider = iam.OidcProviderNative(
                self, "GithubOidcProvider", url=f"https://{GITHUB_OIDC_HOST}", client_ids=[STS_AUDIENCE]
            )
            provider_arn = provider.oidc_provider_arn
        repo = github.repository

        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            assumed_by=self._github_principal(provider_arn, [f"repo:{repo}:environment:{github.environment}"]),
            description=f"GitHub Actions deploy job of {repo} (environment {github.environment})",
            # The deploy job's worst case (a rollout and its rollback over every host) takes hours.
            max_session_duration=Duration.hours(6),
        )
        self.readonly_role = iam.Role(
            self,
            "ReadOnlyRole",
            assumed_by=self._github_principal(
                provider_arn, [f"repo:{repo}:ref:refs/heads/{github.branch}", f"repo:{repo}:pull_request"]
            ),
            description=f"GitHub Actions drift detection and cdk diff of {repo}",
            managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("ReadOnlyAccess")],
        )
        self.backup_role = iam.Role(
            self,
            "BackupVerificationRole",
            assumed_by=iam.AccountPrincipal(self.account),
            description="Operators: restore-and-check of RDS snapshots and S3 object versions",
            max_session_duration=Duration.hours(2),
        )
        self._grant_deploy(config, repository)
        self._grant_readonly(config)
        self._grant_backup_verification(storage, database)

        CfnOutput(self, "DeployRoleArn", value=self.deploy_role.role_arn, description="vars.AWS_DEPLOY_ROLE_ARN")
        CfnOutput(self, "ReadOnlyRoleArn", value=self.readonly_role.role_arn, description="vars.AWS_READONLY_ROLE_ARN")
        CfnOutput(self, "BackupVerificationRoleArn", value=self.backup_role.role_arn)
        CfnOutput(self, "ImageDigestParameter", value=image_digest_parameter_name(config))

    def _arn(self, template: str, findings: list[str] | None = None, **values: str) -> str:
        """``template`` with {partition}, {region} and {account} filled in; when ``findings`` is
        given, the ARN as cdk-nag names it (pseudo parameters in angle brackets) is added there."""
        region = values.pop("region", self.region)
        arn = template.format(partition=self.partition, region=region, account=self.account, **values)
        if findings is not None:
            rendered = template.format(
                partition="<AWS::Partition>" if Token.is_unresolved(self.partition) else self.partition,
                region=region,
                account="<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account,
                **values,
            )
            findings.append(f"Resource::{rendered}")
        return arn

    @staticmethod
    def _github_principal(provider_arn: str, subjects: list[str]) -> iam.IPrincipal:
        return iam.WebIdentityPrincipal(
            provider_arn,
            conditions={
                "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": subjects},
            },
        )

    def _stack_arns(self, config: DeploymentConfig, findings: list[str]) -> list[str]:
        return [
            self._arn(
                "arn:{partition}:cloudformation:{region}:{account}:stack/{prefix}-*/*",
                findings,
                region=r,
                prefix=config.prefix,
            )
            for r in _regions(self, config)
        ]

    def _bootstrap_roles(self, config: DeploymentConfig, kinds: list[str]) -> list[str]:
        return [
            f"arn:{self.partition}:iam::{self.account}:role/cdk-{CDK_QUALIFIER}-{kind}-role-{self.account}-{region}"
            for kind in kinds
            for region in _regions(self, config)
        ]

    def _grant_deploy(self, config: DeploymentConfig, repository: ecr.IRepository) -> None:
        role = self.deploy_role
        findings = ["Resource::*"]
        # cdk deploy acts through the bootstrap roles; CloudFormation's execution role does the rest.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=self._bootstrap_roles(config, ["deploy", "file-publishing", "image-publishing", "lookup"]),
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=self._stack_arns(config, findings))
        )
        repository.grant_pull_push(role)
        repository.grant(role, "ecr:DescribeImages")
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:GetParameter", "ssm:PutParameter"],
                resources=[
                    f"arn:{self.partition}:ssm:{self.region}:{self.account}:parameter"
                    f"{image_digest_parameter_name(config)}"
                ],
            )
        )
        if not config.features.ec2_service:
            self._acknowledge_deploy(findings)
            return
        # By the tags CloudFormation puts on the EC2 stack's resources (the Auto Scaling group
        # propagates them to its instances), not by exports: the EC2 stack may replace its target
        # group or group at any time.
        ec2_stack_name = f"{config.prefix}-ec2"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                resources=[
                    self._arn("arn:{partition}:elasticloadbalancing:{region}:{account}:targetgroup/*", findings)
                ],
                conditions={
                    "StringEquals": {"elasticloadbalancing:ResourceTag/aws:cloudformation:stack-name": ec2_stack_name}
                },
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:SendCommand"],
                resources=[f"arn:{self.partition}:ssm:{self.region}::document/AWS-RunShellScript"],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ssm:SendCommand"],
                resources=[self._arn("arn:{partition}:ec2:{region}:{account}:instance/*", findings)],
                conditions={"StringEquals": {"ssm:resourceTag/aws:cloudformation:stack-name": ec2_stack_name}},
            )
        )
        # These three support no resource-level permissions.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "autoscaling:DescribeAutoScalingGroups",
                    "elasticloadbalancing:DescribeTargetHealth",
                    "ssm:GetCommandInvocation",
                ],
                resources=["*"],
            )
        )
        self._acknowledge_deploy(findings)

    def _acknowledge_deploy(self, findings: list[str]) -> None:
        acknowledge(
            self.deploy_role,
            "AwsSolutions-IAM5",
            "Wildcards are limited to what IAM cannot scope further: the CDK bootstrap roles of this "
            "account by name pattern, this environment's stacks by prefix, ecr:GetAuthorizationToken, "
            "Describe/GetCommandInvocation calls without resource-level permissions, and target "
            "groups and instances only when they carry the EC2 stack's aws:cloudformation:stack-name tag.",
            *findings,
        )

    def _grant_readonly(self, config: DeploymentConfig) -> None:
        role = self.readonly_role
        findings: list[str] = []
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"], resources=self._bootstrap_roles(config, ["lookup", "deploy"])
            )
        )
        # Drift detection starts a detection (not a read in IAM's sense): this environment's stacks only.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudformation:DetectStackDrift", "cloudformation:DetectStackResourceDrift"],
                resources=self._stack_arns(config, findings),
            )
        )
        # Configuration, not content: no recording bytes, secrets, log lines or decryption.
        role.add_to_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=[
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "secretsmanager:GetSecretValue",
                    "kms:Decrypt",
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:GetParametersByPath",
                    "logs:GetLogEvents",
                    "logs:FilterLogEvents",
                    "logs:StartQuery",
                    "rds-db:connect",
                ],
                resources=["*"],
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM4",
            "Drift detection reads every resource of every stack with the caller's permissions; "
            "ReadOnlyAccess is AWS's maintained set for that, with data reads explicitly denied.",
            "Policy::arn:<AWS::Partition>:iam::aws:policy/ReadOnlyAccess",
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Drift detection may start only on this environment's stacks, named by their common prefix.",
            *findings,
        )

    def _grant_backup_verification(self, storage: RecordingsStorage, database: Database) -> None:
        role = self.backup_role
        findings: list[str] = []
        rds = "arn:{partition}:rds:{region}:{account}:"
        any_db = self._arn(rds + "db:*", findings)
        snapshots = self._arn(rds + "snapshot:*", findings)
        temporary = self._arn(rds + "db:*-verify-*", findings)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"], resources=[any_db, snapshots]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["rds:RestoreDBInstanceFromDBSnapshot", "rds:AddTagsToResource"],
                resources=[
                    temporary,
                    snapshots,
                    self._arn(rds + "subgrp:*", findings),
                    self._arn(rds + "og:*", findings),
                    self._arn(rds + "pg:*", findings),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["rds:ModifyDBInstance", "rds:DeleteDBInstance"],
                resources=[temporary],
                conditions={"StringEquals": {"aws:ResourceTag/purpose": "backup-verification"}},
            )
        )
        database.grant_secret_read(role)
        bucket_arn = f"arn:{self.partition}:s3:::{storage.bucket_name}"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucketVersions"],
                resources=[bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{CANARY_PREFIX}*"]}},
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketVersioning"], resources=[bucket_arn]))
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:PutObject",
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:DeleteObject",
                    "s3:DeleteObjectVersion",
                ],
                resources=[f"{bucket_arn}/{CANARY_PREFIX}*"],
            )
        )
        rendered_bucket = storage._rendered_name  # how cdk-nag prints the bucket name
        findings.append(f"Resource::arn:{self.partition}:s3:::{rendered_bucket}/{CANARY_PREFIX}*")
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "RDS: describe any instance/snapshot of the account, restore only into '*-verify-*' "
            "instances, modify and delete only those tagged purpose=backup-verification; S3: only "
            "the restore-canary prefix of the recordings bucket.",
            *findings,
        )


def _regions(stack: Stack, config: DeploymentConfig) -> list[str]:
    """The regions the environment deploys to (the replica bucket lives in a second one)."""
    regions = [stack.region]
    if config.features.replication and config.storage.replication_region:
        regions.append(config.storage.replication_region)
    return regions
