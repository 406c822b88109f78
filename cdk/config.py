"""Typed deployment configuration, read from the ``recordings`` block of cdk.json context.

One profile per environment (``dev``, ``prod``...) is selected with ``cdk synth -c env=prod``.
Everything a stack needs to vary between environments lives here, so stacks never read context
themselves and tests can reason about the numbers (the connection budget) without synthesizing.

The profile is parsed by pydantic models (one per section): unknown keys, missing keys and
wrong types are refused with the key's path; :func:`invariant_errors` then checks what spans
sections (the connection budget, HTTPS, alarm recipients) and would otherwise only show up as a
failed or unsafe deployment.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

CONTEXT_KEY = "recordings"
RemovalPolicyName = Literal["retain", "destroy"]
PROFILE_CONTEXT_KEY = "env"

# RAM of the RDS instance classes this project sizes for (GiB). RDS PostgreSQL derives its default
# max_connections from memory; the freeable-memory alarm needs the total. Add a class here to use it.
RDS_INSTANCE_MEMORY_GIB: dict[str, float] = {
    "t4g.micro": 1,
    "t4g.small": 2,
    "t4g.medium": 4,
    "t4g.large": 8,
    "t3.micro": 1,
    "t3.small": 2,
    "t3.medium": 4,
    "t3.large": 8,
    "m6g.large": 8,
    "m6g.xlarge": 16,
    "m7g.large": 8,
    "m7g.xlarge": 16,
    "m7g.2xlarge": 32,
    "r7g.large": 16,
    "r7g.xlarge": 32,
}

# RDS PostgreSQL default: LEAST({DBInstanceClassMemory/9531392}, 5000).
_BYTES_PER_DEFAULT_CONNECTION = 9_531_392


# Lambda refuses reservations that leave less than this much of the account quota unreserved.
LAMBDA_MIN_UNRESERVED = 100
FLOW_LOG_TRAFFIC = ("REJECT", "ALL")
# Reserved for documentation and testing (RFC 2606, RFC 6761): mail there never arrives.
PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net", "localhost")
PLACEHOLDER_TLDS = ("example", "test", "invalid", "localhost")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# Deployment-specific values a deployer may pass on the command line instead of editing cdk.json
# (``-c alarm_emails=a@x.org,b@x.org -c certificate_arn=arn:...``); they override the profile.
DEPLOY_TIME_KEYS = ("alarm_emails", "domain_name", "certificate_arn", "hosted_zone_id", "hosted_zone_name")

# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
# The retention periods Performance Insights accepts: 7 days (free tier), whole months of 31
# days up to 23, or 731 days (two years).
PERFORMANCE_INSIGHTS_RETENTION_DAYS = (7, *(31 * months for months in range(1, 24)), 731)

# Keys that only constrain other keys: read by :func:`invariant_errors`, by no stack (attribute
# paths; tests/cdk/test_config_usage.py checks that every other key is read by some stack).
VALIDATION_ONLY_KEYS = frozenset(
    {
        "allow_plain_http",  # permits a profile without HTTPS
        "existing_trail_arn",  # forbids features.cloudtrail (the account already has a trail)
        "database.reserved_admin_connections",  # part of the connection budget
    }
)


class ConfigError(ValueError):
    """The cdk.json profile is missing, malformed or violates an invariant."""


# ---- field types ---------------------------------------------------------------------------------


def _one_of(allowed: tuple[Any, ...], what: str, spelled: str | None = None) -> AfterValidator:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{value!r} is not {what} {spelled or allowed}")
        return value

    return AfterValidator(check)


def _split_commas(value: Any) -> Any:
    """``-c alarm_emails=a@x.org,b@x.org`` arrives as one string."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


NonEmptyStr = Annotated[str, Field(min_length=1)]
# JSON has lists only; the models keep immutable tuples.
StrTuple = Annotated[tuple[NonEmptyStr, ...], Field(strict=False)]
LogRetentionDays = Annotated[int, _one_of(LOG_RETENTION_DAYS, "a CloudWatch Logs retention")]
PerformanceInsightsDays = Annotated[
    int,
    _one_of(
        PERFORMANCE_INSIGHTS_RETENTION_DAYS,
        "a Performance Insights retention",
        "(7, 31 * months for 1 to 23 months, or 731)",
    ),
]


class Section(BaseModel):
    """A profile section: known keys only, exact JSON types (no "5" for 5), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NetworkConfig(Section):
    cidr: NonEmptyStr
    availability_zones: StrTuple
    nat_gateways: int
    flow_log_retention_days: LogRetentionDays
    # REJECT (default) records only refused connections, the part worth keeping for security.
    flow_log_traffic: Annotated[str, _one_of(FLOW_LOG_TRAFFIC, "one of")] = "REJECT"
    # Interface endpoints (Secrets Manager, SSM, ECR, CloudWatch Logs/metrics, STS): about
    # $7.30 per endpoint and AZ each month; worth it once NAT data for AWS APIs costs more.
    interface_endpoints: bool = False


class DatabaseConfig(Section):
    instance_type: NonEmptyStr
    allocated_storage_gib: int
    max_allocated_storage_gib: int
    backup_retention_days: int
    multi_az: bool
    deletion_protection: bool
    port: int
    database_name: NonEmptyStr
    master_username: NonEmptyStr
    max_connections: int
    # Connections kept free for rdsadmin, superuser_reserved_connections and a human with psql.
    reserved_admin_connections: int
    # How long Performance Insights keeps its data (primary and replicas).
    performance_insights_retention_days: PerformanceInsightsDays
    # Read replicas (same class and parameter group) serving the list and download routes; the
    # app reaches them by their own endpoints (RDS Proxy has no read-only endpoint for RDS
    # instances). Reads may lag the primary by at most read_max_lag_seconds of replay.
    read_replicas: int = 0
    read_max_lag_seconds: float = 1.0

    @property
    def memory_bytes(self) -> int:
        return int(RDS_INSTANCE_MEMORY_GIB[self.instance_type] * 1024**3)

    @property
    def default_max_connections(self) -> int:
        """What RDS would allow for this instance class if max_connections were not set."""
        return min(self.memory_bytes // _BYTES_PER_DEFAULT_CONNECTION, 5000)


class StorageConfig(Section):
    abort_incomplete_multipart_days: int
    noncurrent_transition_days: int
    noncurrent_expiration_days: int
    replication_region: NonEmptyStr | None = None


class Ec2Config(Section):
    instance_type: NonEmptyStr
    min_capacity: int
    max_capacity: int
    uvicorn_workers: int
    db_pool_size: int
    db_max_overflow: int
    root_volume_gib: int
    ecr_keep_images: int
    health_check_grace_seconds: int
    # Pins the AMI: changes only when someone edits it. null: the newest Amazon Linux 2023 AMI
    # at each deploy (new instances only; running ones keep theirs until a rollout).
    ami_id: NonEmptyStr | None = None


class LambdaConfig(Section):
    memory_mb: int
    api_timeout_seconds: int
    # The account's concurrent-executions quota this profile is deployed into (a new account
    # starts at 10). Lambda keeps 100 of it unreserved, so reservations need a raised quota.
    concurrency_quota: int
    # Opt-in: reserve api/s3_events concurrency (and 1 each for the reaper and migrations).
    reserve_concurrency: bool
    api_reserved_concurrency: int
    s3_events_reserved_concurrency: int
    throttle_rate_limit: int
    throttle_burst_limit: int
    reaper_interval_minutes: int


class AppConfig(Section):
    log_level: NonEmptyStr
    presign_expires_seconds: int
    upload_ttl_seconds: int
    metrics_enabled: bool
    # /docs and /redoc (the interactive documentation); /openapi.json is always served.
    docs_enabled: bool = True
    jwt_issuer: NonEmptyStr | None = None
    jwt_audience: NonEmptyStr | None = None
    jwt_jwks_url: NonEmptyStr | None = None
    jwt_tenant_claim: NonEmptyStr | None = None


class AlarmConfig(Section):
    http_5xx_rate_percent: float
    p99_latency_ms: int
    cpu_percent: float
    free_memory_percent: float
    free_disk_percent: float
    db_connections_percent: float
    db_disk_queue_depth: float
    s3_5xx_errors_per_5_minutes: int
    # A replica this far behind for 5 minutes serves no reads (the app's lag limit is far lower).
    db_replica_lag_seconds: float = 30


class MonitoringHostConfig(Section):
    """The Prometheus + Alertmanager + Grafana host (features.monitoring_host). Images are pinned
    by version; node_exporter_image also runs on every app instance."""

    instance_type: NonEmptyStr
    root_volume_gib: int
    retention_days: int
    prometheus_image: NonEmptyStr
    alertmanager_image: NonEmptyStr
    grafana_image: NonEmptyStr
    node_exporter_image: NonEmptyStr


class FeatureFlags(Section):
    ec2_service: bool
    lambda_api: bool
    rds_proxy: bool
    replication: bool
    cloudtrail: bool
    # The Prometheus/Grafana host (-observability); it scrapes the EC2 service, so it exists only
    # together with ec2_service.
    monitoring_host: bool = False


class DeploymentConfig(Section):
    """One environment profile, validated. Build it with :func:`config_from_dict`."""

    # The profile's name (its key under ``profiles``), not a key inside it.
    env_name: NonEmptyStr
    project: NonEmptyStr
    region: NonEmptyStr
    account: NonEmptyStr | None = None
    cors_origins: StrTuple
    # Who gets paged: each address receives an SNS subscription confirmation on first deploy.
    alarm_emails: Annotated[StrTuple, BeforeValidator(_split_commas)]
    # HTTPS on the ALB: domain_name plus either certificate_arn (an ACM certificate in the
    # region) or hosted_zone_id + hosted_zone_name (CDK requests a DNS-validated certificate
    # and points the domain at the ALB). Only a profile with allow_plain_http may go without.
    domain_name: NonEmptyStr | None = None
    certificate_arn: NonEmptyStr | None = None
    hosted_zone_id: NonEmptyStr | None = None
    hosted_zone_name: NonEmptyStr | None = None
    allow_plain_http: bool
    # An existing trail (e.g. the organisation's) covering this account: no new trail is created.
    existing_trail_arn: NonEmptyStr | None = None
    log_retention_days: LogRetentionDays
    network: NetworkConfig
    database: DatabaseConfig
    storage: StorageConfig
    ec2: Ec2Config
    lambda_: LambdaConfig = Field(alias="lambda")
    app: AppConfig
    alarms: AlarmConfig
    features: FeatureFlags
    monitoring_host: MonitoringHostConfig

    @model_validator(mode="after")
    def _invariants(self) -> DeploymentConfig:
        errors = invariant_errors(self)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    @property
    def prefix(self) -> str:
        """Stack-name prefix, e.g. ``Recordings-dev``."""
        return f"{self.project.capitalize()}-{self.env_name}"

    @property
    def is_production(self) -> bool:
        return self.env_name == "prod"

    @property
    def removal_policy(self) -> RemovalPolicyName:
        """What ``cdk destroy`` does to buckets and repositories: prod keeps them, other
        profiles remove them (emptied first) so the profile can be re-created."""
        return "retain" if self.is_production else "destroy"

    @property
    def https(self) -> bool:
        return bool(self.domain_name and (self.certificate_arn or self.hosted_zone_id))

    @property
    def public_base_url(self) -> str | None:
        """The ALB's public URL when it has a domain; otherwise only the stack knows it."""
        return f"https://{self.domain_name}" if self.https else None

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """Browser origins that may call the API and upload to the bucket: the configured ones
        plus the ALB's own domain (its upload page posts straight to S3)."""
        url = self.public_base_url
        return self.cors_origins if url is None or url in self.cors_origins else (*self.cors_origins, url)

    @property
    def reserved_concurrency(self) -> dict[str, int]:
        """Per function, what it reserves; empty when the profile does not opt in."""
        if not self.lambda_.reserve_concurrency:
            return {}
        reserved = {"S3Events": self.lambda_.s3_events_reserved_concurrency, "Reaper": 1, "Migrate": 1}
        if self.features.lambda_api:
            reserved["Api"] = self.lambda_.api_reserved_concurrency
        return reserved

    @property
    def database_memory_bytes(self) -> int:
        return self.database.memory_bytes

    # ---- connection budget -------------------------------------------------------------------

    @property
    def lambda_db_connections(self) -> int:
        """Worst case of Lambda connections: each concurrent execution holds one (pool of 1).

        With reservations every function is capped by its own; without, the account's quota
        caps all of them together.
        """
        reserved = self.reserved_concurrency
        return sum(reserved.values()) if reserved else self.lambda_.concurrency_quota

    @property
    def ec2_db_connections(self) -> int:
        if not self.features.ec2_service:
            return 0
        per_worker = self.ec2.db_pool_size + self.ec2.db_max_overflow
        return self.ec2.max_capacity * self.ec2.uvicorn_workers * per_worker

    @property
    def peak_db_connections(self) -> int:
        return self.lambda_db_connections + self.ec2_db_connections + self.database.reserved_admin_connections

    @property
    def proxy_max_connections_percent(self) -> int:
        """Share of max_connections RDS Proxy may open: exactly the Lambda part of the budget."""
        share = math.ceil(100 * self.lambda_db_connections / self.database.max_connections)
        return max(1, min(100, share))

    @property
    def default_max_connections(self) -> int:
        """What RDS would allow for this instance class if max_connections were not set."""
        return self.database.default_max_connections


# ---- invariants across keys -------------------------------------------------------------------


def invariant_errors(cfg: DeploymentConfig) -> list[str]:
    """What the types cannot say; each message starts with the key(s) it is about."""
    return [
        *_network_errors(cfg),
        *_database_errors(cfg),
        *_compute_errors(cfg),
        *_https_errors(cfg),
        *_alarm_recipient_errors(cfg),
        *_storage_errors(cfg),
        *_budget_errors(cfg),
    ]


def _network_errors(cfg: DeploymentConfig) -> list[str]:
    net, errors = cfg.network, []
    if len(net.availability_zones) < 2:
        errors.append("network.availability_zones: at least 2 (RDS subnet groups need 2 AZs)")
    if not all(az.startswith(cfg.region) for az in net.availability_zones):
        errors.append(f"network.availability_zones: must be in region {cfg.region}")
    if not 1 <= net.nat_gateways <= len(net.availability_zones):
        errors.append("network.nat_gateways: between 1 and the number of AZs")
    if not cfg.cors_origins or any(o == "*" or not o.startswith("http") for o in cfg.cors_origins):
        errors.append("cors_origins: explicit http(s) origins only, no '*'")
    if cfg.features.cloudtrail and cfg.existing_trail_arn:
        errors.append("features.cloudtrail: off when existing_trail_arn reuses a trail")
    return errors


def _database_errors(cfg: DeploymentConfig) -> list[str]:
    db, errors = cfg.database, []
    if db.instance_type not in RDS_INSTANCE_MEMORY_GIB:
        errors.append(f"database.instance_type: {db.instance_type} not in RDS_INSTANCE_MEMORY_GIB")
    elif db.max_connections > db.default_max_connections:
        errors.append(
            f"database.max_connections: {db.max_connections} exceeds what "
            f"{db.instance_type} supports ({db.default_max_connections})"
        )
    if not 1 <= db.backup_retention_days <= 35:
        errors.append("database.backup_retention_days: 1..35 (0 would disable backups and PITR)")
    if db.port == 5432:
        errors.append("database.port: use a non-default port")
    if db.max_allocated_storage_gib <= db.allocated_storage_gib:
        errors.append("database.max_allocated_storage_gib: must exceed allocated (autoscaling)")
    if not 0 <= db.read_replicas <= 5:
        errors.append("database.read_replicas: 0 to 5 (RDS allows 15 per instance; 5 keeps the budget sane)")
    if cfg.is_production and db.read_replicas < 1:
        errors.append("prod: database.read_replicas must be at least 1 (read routing, runbook scaling)")
    if cfg.is_production and not (db.multi_az and db.deletion_protection):
        errors.append("prod: database.multi_az and database.deletion_protection are required")
    return errors


def _compute_errors(cfg: DeploymentConfig) -> list[str]:
    lam, ec2, errors = cfg.lambda_, cfg.ec2, []
    if not 1 <= ec2.min_capacity < ec2.max_capacity:
        errors.append(
            "ec2: 1 <= min_capacity < max_capacity (a rolling update keeps min_capacity in service "
            "and needs room for one more instance)"
        )
    if lam.api_reserved_concurrency < 1 or lam.s3_events_reserved_concurrency < 1:
        errors.append("lambda: reserved concurrency must be >= 1")
    unreserved = lam.concurrency_quota - sum(cfg.reserved_concurrency.values())
    if cfg.reserved_concurrency and unreserved < LAMBDA_MIN_UNRESERVED:
        errors.append(
            f"lambda: reservations {cfg.reserved_concurrency} leave {unreserved} of the concurrency quota "
            f"{lam.concurrency_quota} unreserved; Lambda refuses fewer than {LAMBDA_MIN_UNRESERVED} "
            "(raise the quota through Service Quotas or set reserve_concurrency to false)"
        )
    if lam.api_timeout_seconds > 29:
        errors.append("lambda.api_timeout_seconds: API Gateway cuts requests at 29 s")
    for name in ("prometheus_image", "alertmanager_image", "grafana_image", "node_exporter_image"):
        image = getattr(cfg.monitoring_host, name)
        if ":" not in image or image.endswith((":latest", ":")):
            errors.append(f"monitoring_host.{name}: pin a version tag, not {image!r}")
    return errors


def _storage_errors(cfg: DeploymentConfig) -> list[str]:
    storage, errors = cfg.storage, []
    if storage.noncurrent_expiration_days <= storage.noncurrent_transition_days:
        errors.append("storage: noncurrent versions must expire after they transition")
    if cfg.features.replication and not storage.replication_region:
        errors.append("storage.replication_region: required when features.replication is on")
    if storage.replication_region == cfg.region:
        errors.append("storage.replication_region: must differ from region")
    return errors


def _budget_errors(cfg: DeploymentConfig) -> list[str]:
    db = cfg.database
    if cfg.peak_db_connections < db.max_connections:
        return []
    return [
        f"connection budget: {cfg.peak_db_connections} peak connections "
        f"(lambda {cfg.lambda_db_connections} + ec2 {cfg.ec2_db_connections} + admin "
        f"{db.reserved_admin_connections}) must stay under max_connections {db.max_connections}"
    ]


def _https_errors(cfg: DeploymentConfig) -> list[str]:
    errors = []
    if (cfg.hosted_zone_id is None) != (cfg.hosted_zone_name is None):
        errors.append("hosted_zone_id and hosted_zone_name go together")
    if (cfg.certificate_arn or cfg.hosted_zone_id) and not cfg.domain_name:
        errors.append("domain_name: required with certificate_arn or a hosted zone")
    if cfg.domain_name and not (cfg.certificate_arn or cfg.hosted_zone_id):
        errors.append("domain_name: needs certificate_arn or hosted_zone_id + hosted_zone_name")
    zone = cfg.hosted_zone_name
    if zone and cfg.domain_name and not (cfg.domain_name == zone or cfg.domain_name.endswith(f".{zone}")):
        errors.append(f"domain_name: {cfg.domain_name} is not in hosted zone {zone}")
    if cfg.is_production and cfg.allow_plain_http:
        errors.append("prod: allow_plain_http is not allowed")
    if not cfg.https and not cfg.allow_plain_http:
        errors.append(
            "HTTPS: set domain_name and certificate_arn, or domain_name with hosted_zone_id and "
            "hosted_zone_name (e.g. -c domain_name=api.example.org -c certificate_arn=arn:aws:acm:...)"
        )
    return errors


def is_placeholder_address(address: str) -> bool:
    """RFC 2606/6761 names that can never receive mail (example.com, *.test, *.invalid...)."""
    domain = address.rpartition("@")[2].lower().rstrip(".")
    return (
        domain in PLACEHOLDER_DOMAINS
        or any(domain.endswith(f".{d}") for d in PLACEHOLDER_DOMAINS)
        or domain.rsplit(".", 1)[-1] in PLACEHOLDER_TLDS
    )


def _alarm_recipient_errors(cfg: DeploymentConfig) -> list[str]:
    errors = []
    for address in cfg.alarm_emails:
        if not EMAIL_PATTERN.fullmatch(address):
            errors.append(f"alarm_emails: {address!r} is not an e-mail address")
        elif is_placeholder_address(address):
            errors.append(f"alarm_emails: {address} is a placeholder that can never receive an alarm")
    if cfg.is_production and not cfg.alarm_emails:
        errors.append("prod: alarm_emails needs at least one real recipient (-c alarm_emails=oncall@yourcompany.com)")
    return errors


# ---- loading ----------------------------------------------------------------------------------


def _describe(errors: list[Any]) -> list[str]:
    """pydantic's errors as ``key.path: what is wrong`` lines; unknown keys grouped per section."""
    lines: list[str] = []
    unknown: dict[str, list[str]] = {}
    for error in errors:
        path = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            section, _, key = path.rpartition(".")
            unknown.setdefault(section or "profile", []).append(key)
        elif error["type"] == "missing":
            lines.append(f"{path}: missing")
        elif error["type"] == "value_error" and not path:
            lines += str(error["ctx"]["error"]).splitlines()  # the invariants, one per line
        elif error["type"] == "value_error":
            lines.append(f"{path}: {error['ctx']['error']}")
        else:
            lines.append(f"{path}: {error['msg'].lower()}, got {error['input']!r}")
    lines += [f"{section}: unknown keys {sorted(keys)}" for section, keys in unknown.items()]
    return lines


def config_from_dict(
    block: Mapping[str, Any], env_name: str, overrides: Mapping[str, Any] | None = None
) -> DeploymentConfig:
    """Build and validate profile ``env_name`` from the ``recordings`` context block.

    ``overrides`` holds the :data:`DEPLOY_TIME_KEYS` given on the command line (strings as the
    CLI passes them: ``alarm_emails`` comma-separated).
    """
    profiles = block.get("profiles", {})
    if env_name not in profiles:
        raise ConfigError(f"unknown profile {env_name!r}; known: {sorted(profiles)}")
    data = dict(profiles[env_name])
    if "env_name" in data:
        raise ConfigError(f"profile {env_name!r}: env_name is the profile's name, not a key inside it")
    for key, value in (overrides or {}).items():
        if key not in DEPLOY_TIME_KEYS:
            raise ConfigError(f"profile {env_name!r}: -c {key}: not a deploy-time key {DEPLOY_TIME_KEYS}")
        data[key] = value
    data["env_name"] = env_name
    data.setdefault("project", block.get("project", "recordings"))
    if data.get("account") is None and os.environ.get("CDK_DEFAULT_ACCOUNT"):
        # The CLI sets this from the caller's credentials; without credentials stacks stay
        # account-agnostic (region-specific), which is all synth needs.
        data["account"] = os.environ["CDK_DEFAULT_ACCOUNT"]
    try:
        return DeploymentConfig.model_validate(data)
    except ValidationError as invalid:
        raise ConfigError(f"profile {env_name!r}:\n  " + "\n  ".join(_describe(invalid.errors()))) from None


def load_config(node: Any) -> DeploymentConfig:
    """Read the selected profile from a construct node's context (``-c env=NAME``)."""
    block = node.try_get_context(CONTEXT_KEY)
    if not block:
        raise ConfigError(f"cdk.json context has no {CONTEXT_KEY!r} block")
    env_name = node.try_get_context(PROFILE_CONTEXT_KEY) or block.get("default_profile", "dev")
    overrides = {k: v for k in DEPLOY_TIME_KEYS if (v := node.try_get_context(k)) not in (None, "")}
    return config_from_dict(block, str(env_name), overrides)
