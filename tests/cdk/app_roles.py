"""The roles that run the service's code, read from the synthesized templates, with their S3
statements and what runs under each.

- a Lambda function built from the app's image: its image command names the handler;
- the EC2 instance role: the container's command (the Dockerfile's server ``CMD``) and the
  ``python -m service`` commands RUNBOOK.md runs in that container (``docker exec recordings``).

Intrinsics in the statements (``Fn::Join`` of the partition, account and region) are resolved to
plain ARNs with a stand-in account, so a test can read them or swap in its own bucket.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any

from tests.cdk.s3_usage import REPO, cli_node, handler_node

ACCOUNT = "123456789012"
# AWS-managed policies the app roles carry; none of them grants any S3 action.
MANAGED_WITHOUT_S3 = frozenset(
    {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    }
)


class Unresolvable(ValueError):
    pass


def resolve(value: Any, *, region: str, account: str = ACCOUNT, partition: str = "aws") -> Any:
    """CloudFormation intrinsics of partition, account and region -> plain values."""
    pseudo = {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::URLSuffix": "amazonaws.com",
    }
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list):
        return [resolve(v, region=region, account=account, partition=partition) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and arg in pseudo:
            return pseudo[arg]
        if key == "Fn::Join":
            separator, parts = arg
            return separator.join(str(resolve(p, region=region, account=account, partition=partition)) for p in parts)
        if key == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{(AWS::\w+)\}", lambda m: pseudo[m.group(1)], arg)
        if key.startswith(("Fn::", "Ref")):
            raise Unresolvable(value)
    if isinstance(value, dict):
        return {k: resolve(v, region=region, account=account, partition=partition) for k, v in value.items()}
    raise Unresolvable(value)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


@dataclass
class AppRole:
    stack: str
    logical_id: str
    kind: str  # "lambda" or "ec2"
    runs: list[str]  # what runs under the role: a handler, or commands
    entries: list[str]  # call-graph nodes (tests/cdk/s3_usage.py) of what runs
    statements: list[dict]  # every policy statement attached to the role (resolved)
    managed_policies: list[str]

    @property
    def name(self) -> str:
        return self.logical_id

    def s3_statements(self) -> list[dict]:
        found = []
        for statement in self.statements:
            actions = _as_list(statement.get("Action", []))
            if any(a.startswith("s3:") for a in actions):
                assert all(a.startswith("s3:") for a in actions), f"{self.name}: S3 mixed with others {statement}"
                found.append(statement)
        return found

    def s3_actions(self) -> set[str]:
        return {a for st in self.s3_statements() for a in _as_list(st["Action"])}


def host_commands() -> list[list[str]]:
    """What runs in the app container on an EC2 host: the image's command and the runbook's
    ``docker exec recordings python -m service ...`` commands."""
    dockerfile = (REPO / "Dockerfile").read_text()
    server_stage = dockerfile.split(" AS server", 1)[1].split("\nFROM ", 1)[0]
    cmd = re.findall(r"^CMD (\[.*\])$", server_stage, flags=re.M)[-1]
    argv = json.loads(cmd)
    assert argv[:3] == ["python", "-m", "service"], argv
    commands = [argv[3:]]
    runbook = (REPO / "RUNBOOK.md").read_text()
    for line in re.findall(r"docker exec recordings python -m service ([^`\n]+)", runbook):
        # Placeholders such as "<db instance id>" stand for one argument.
        commands.append(shlex.split(re.sub(r"<[^>]*>", "PLACEHOLDER", line.strip())))
    return commands


def app_roles(synthesized) -> list[AppRole]:
    region = synthesized.config.region
    roles: list[AppRole] = []
    for stack, template in synthesized.all_templates().items():
        resources = template["Resources"]
        runs_under: dict[str, tuple[str, list[str]]] = {}
        for resource in resources.values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Lambda::Function" and "ImageConfig" in props:
                (handler,) = props["ImageConfig"]["Command"]
                role_id = props["Role"]["Fn::GetAtt"][0]
                runs_under[role_id] = ("lambda", [handler])
        for logical_id, resource in resources.items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            principals = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            services = {s for st in principals for s in _as_list(st.get("Principal", {}).get("Service", []))}
            # The app hosts' role; the monitoring host's role (-observability stack) runs no app
            # code (tests/cdk/test_monitoring_host.py checks its S3 reads).
            if "ec2.amazonaws.com" in services and not stack.endswith("-observability.template.json"):
                runs_under[logical_id] = ("ec2", [shlex.join(c) for c in host_commands()])
        for role_id, (kind, runs) in runs_under.items():
            statements = []
            for resource in resources.values():
                if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in resource["Properties"]["Roles"]:
                    for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                        try:
                            statements.append(resolve(statement, region=region))
                        except Unresolvable:
                            statements.append(statement)  # not S3 (secrets, log groups): kept as is
            managed = resolve(resources[role_id]["Properties"].get("ManagedPolicyArns", []), region=region)
            if kind == "lambda":
                entries = [handler_node(runs[0])]
            else:
                entries = [cli_node(shlex.split(command)) for command in runs]
            roles.append(AppRole(stack, role_id, kind, runs, entries, statements, managed))
    return roles


def recordings_bucket_name(synthesized) -> str:
    """The recordings bucket's name as the templates spell it (resolved with ``ACCOUNT``)."""
    from aws_cdk import Stack

    storage = synthesized.deployment.stacks["data"].storage
    token = Stack.of(storage).resolve(storage.bucket_name)
    return resolve(token, region=synthesized.config.region)
