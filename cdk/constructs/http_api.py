"""API Gateway HTTP API in front of the API function."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.config import AlarmConfig
from cdk.constructs.monitoring import GT, ONE_MINUTE, AlarmSpec, error_rate_alarm, metric
from cdk.nag import acknowledge

LAMBDA_SECTION = "Lambda path (HTTP API + functions)"

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTime",
        "method": "$context.httpMethod",
        "routeKey": "$context.routeKey",
        "path": "$context.path",
        "status": "$context.status",
        "protocol": "$context.protocol",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationLatencyMs": "$context.integrationLatency",
        "integrationError": "$context.integrationErrorMessage",
        "userAgent": "$context.identity.userAgent",
    }
)


class HttpApi(Construct):
    """HTTP API (payload v2) proxying every route to ``function``: stage-wide throttling, JSON
    access logs in CloudWatch Logs, and CORS for the configured origins only. Authentication is
    the application's (API keys / JWT), so routes carry no API Gateway authorizer."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        cors_origins: list[str],
        throttle_rate_limit: int,
        throttle_burst_limit: int,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            description="Recordings API (Lambda path)",
            default_integration=integrations.HttpLambdaIntegration(
                "Lambda", function, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
            ),
            create_default_stage=False,
            cors_preflight=apigwv2.CorsPreflightOptions(
                allow_origins=list(cors_origins),
                allow_methods=[
                    apigwv2.CorsHttpMethod.GET,
                    apigwv2.CorsHttpMethod.HEAD,
                    apigwv2.CorsHttpMethod.POST,
                    apigwv2.CorsHttpMethod.PUT,
                    apigwv2.CorsHttpMethod.PATCH,
                    apigwv2.CorsHttpMethod.DELETE,
                    apigwv2.CorsHttpMethod.OPTIONS,
                ],
                allow_headers=["authorization", "content-type", "x-api-key", "idempotency-key"],
                expose_headers=["etag", "location"],
                max_age=Duration.hours(1),
            ),
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=throttle_rate_limit, burst_limit=throttle_burst_limit),
        )
        # Set on the L1 stage so cdk-nag and the template show exactly what is logged.
        cfn_stage: apigwv2.CfnStage = self.stage.node.default_child  # type: ignore[assignment]
        cfn_stage.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT
        )

        acknowledge(
            self.api,
            "AwsSolutions-APIG4",
            "Authentication is the application's own (API keys and JWT verified in FastAPI, "
            "tenant-scoped); the same checks serve the EC2 path, so no API Gateway authorizer.",
        )

    @property
    def url(self) -> str:
        return self.stage.url

    @property
    def base_url(self) -> str:
        """The ``$default`` stage's URL without the trailing slash (an origin)."""
        stack = Stack.of(self)
        return f"https://{self.api.api_id}.execute-api.{stack.region}.{stack.url_suffix}"

    def alarms(self, thresholds: AlarmConfig, *, api_id: str | None = None) -> list[AlarmSpec]:
        """5xx rate and p99 latency. ``api_id`` defaults to this API's; another stack passes the
        value it read through SSM."""
        t, dimensions = thresholds, {"ApiId": api_id or self.api.api_id}

        def api_metric(name: str, statistic: str) -> cloudwatch.Metric:
            return metric("AWS/ApiGateway", name, dimensions, statistic, ONE_MINUTE)

        return [
            error_rate_alarm(
                name="Api5xxRate",
                section=LAMBDA_SECTION,
                errors=api_metric("5xx", "Sum"),
                requests=api_metric("Count", "Sum"),
                what="API Gateway",
                thresholds=t,
            ),
            AlarmSpec(
                name="ApiP99Latency",
                section=LAMBDA_SECTION,
                description=f"API Gateway p99 latency > {t.p99_latency_ms} ms for 5 minutes",
                metric=api_metric("Latency", "p99"),
                threshold=t.p99_latency_ms,  # API Gateway reports milliseconds
                comparison=GT,
                evaluation_periods=5,
            ),
        ]
