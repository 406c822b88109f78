"""A stand-in for the `aws` CLI as ops/deploy/rollout.sh uses it, as strict as the services are:
SSM refuses comments over 100 characters and out-of-range timeouts and only knows the command ids
it issued (and not even those for a moment after send-command); target health moves through
draining -> unused and initial -> healthy|unhealthy like an ALB target group's.

Run as ``python fake_aws.py <aws arguments>`` from a wrapper named `aws`. State lives in the JSON
file $FAKE_AWS_STATE; every call is appended to $FAKE_LOG and significant events to the state's
``events`` list, so a test can check what happened in which order.
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path

STATE = Path(os.environ["FAKE_AWS_STATE"])
ASG = "recordings-asg"
TARGET_GROUP = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/recordings-app/0123456789abcdef"
SERVICE_URL = "https://api.example.com"
REPOSITORY_URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recordings-prod-repository"


def fail(operation: str, code: str, message: str) -> None:
    print(f"\nAn error occurred ({code}) when calling the {operation} operation: {message}", file=sys.stderr)
    sys.exit(254)


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def target_id(args: list[str]) -> str:
    targets = option(args, "--targets") or ""
    match = re.fullmatch(r"Id=(i-[0-9a-z]+),Port=(\d+)", targets)
    if not match:
        fail("DescribeTargetHealth", "ValidationError", f"malformed --targets {targets!r}")
    if option(args, "--target-group-arn") != TARGET_GROUP:
        fail("DescribeTargetHealth", "TargetGroupNotFound", "One or more target groups not found")
    return match[1]


def main(args: list[str], state: dict) -> str:
    service, operation = args[0], args[1]
    events = state["events"]
    if (service, operation) == ("cloudformation", "describe-stacks") and "--stack-name" not in args:
        prefix = os.environ["STACK_PREFIX"] + "-"
        return "\t".join(s for s in state.get("stacks", []) if s.startswith(prefix)) or "None"
    if (service, operation) == ("cloudformation", "detect-stack-drift"):
        stack = option(args, "--stack-name")
        if stack not in state.get("stacks", []):
            fail("DetectStackDrift", "ValidationError", f"Stack with id {stack} does not exist")
        detection = str(uuid.uuid4())
        state.setdefault("detections", {})[detection] = {"stack": stack, "polls": state.get("detection_polls", 1)}
        return detection
    if (service, operation) == ("cloudformation", "describe-stack-drift-detection-status"):
        detection = state.get("detections", {}).get(option(args, "--stack-drift-detection-id") or "")
        if detection is None:
            fail("DescribeStackDriftDetectionStatus", "ValidationError", "detection not found")
        if detection["polls"] > 0:
            detection["polls"] -= 1
            return "DETECTION_IN_PROGRESS\tNone"
        if detection["stack"] in state.get("undetectable", []):
            return "DETECTION_FAILED\tNone"
        drift = "DRIFTED" if detection["stack"] in state.get("drifted", []) else "IN_SYNC"
        return f"DETECTION_COMPLETE\t{drift}"
    if (service, operation) == ("cloudformation", "describe-stack-resource-drifts"):
        return "| DatabaseInstance | AWS::RDS::DBInstance | MODIFIED |"
    if (service, operation) == ("cloudformation", "describe-stacks"):
        name = option(args, "--stack-name")
        query = option(args, "--query") or ""
        if name not in state.get("stacks", [f"{os.environ['STACK_PREFIX']}-ec2"]):
            fail("DescribeStacks", "ValidationError", f"Stack with id {name} does not exist")
        if name.endswith("-data"):
            return REPOSITORY_URI if "RepositoryUri" in query else "None"
        return ASG if "AutoScalingGroupName" in query else SERVICE_URL
    if service == "fake-docker":  # `docker tag` and `docker push`, as they change the registry
        images = state.setdefault("local_images", {})
        if operation == "tag":
            images[args[3]] = images[args[2]]
        elif operation == "push":
            reference = args[-1]
            if not reference.startswith(REPOSITORY_URI + ":"):
                fail("push", "denied", f"no repository for {reference}")
            state["registry"][reference.rsplit(":", 1)[1]] = images[reference]
            events.append(f"push {reference}")
        return ""
    if (service, operation) == ("ssm", "get-parameter"):
        name = option(args, "--name")
        if name not in state.get("parameters", {}):
            fail("GetParameter", "ParameterNotFound", "")
        return state["parameters"][name]
    if (service, operation) == ("ssm", "put-parameter"):
        name, value = option(args, "--name"), option(args, "--value") or ""
        if name in state.setdefault("parameters", {}) and "--overwrite" not in args:
            fail("PutParameter", "ParameterAlreadyExists", "The parameter already exists.")
        if option(args, "--type") not in {"String", "StringList", "SecureString"}:
            fail("PutParameter", "ValidationException", "invalid --type")
        state["parameters"][name] = value
        events.append(f"parameter {name}={value}")
        return ""
    if service == "ecr":
        if option(args, "--repository-name") != REPOSITORY_URI.split("/", 1)[1]:
            fail(operation, "RepositoryNotFoundException", "The repository does not exist")
        registry = state.setdefault("registry", {})
        image_id = option(args, "--image-ids") or ""
        if operation == "describe-images":
            tag = image_id.removeprefix("imageTag=")
            if tag not in registry:
                fail(
                    "DescribeImages",
                    "ImageNotFoundException",
                    f"The image with imageId {{imageTag:'{tag}'}} does not exist",
                )
            return registry[tag]
        if operation == "batch-get-image":
            digest = image_id.removeprefix("imageDigest=")
            return f"manifest-of-{digest}" if digest in registry.values() else "None"
        if operation == "put-image":
            tag, manifest = option(args, "--image-tag"), option(args, "--image-manifest") or ""
            if not manifest.startswith("manifest-of-sha256:"):
                fail("PutImage", "InvalidParameterException", "Invalid parameter at 'imageManifest'")
            digest = manifest.removeprefix("manifest-of-")
            if registry.get(tag) == digest:
                fail(
                    "PutImage",
                    "ImageAlreadyExistsException",
                    f"Image with digest '{digest}' and tag '{tag}' already exists",
                )
            registry[tag] = digest
            events.append(f"tag {tag}={digest}")
            return ""
    if (service, operation) == ("autoscaling", "describe-auto-scaling-groups"):
        if option(args, "--auto-scaling-group-names") != ASG:
            return "None"
        if "TargetGroupARNs" in (option(args, "--query") or ""):
            return TARGET_GROUP
        return "\t".join(state["instances"])
    if service == "elbv2":
        instance = target_id(args)
        target = state["targets"].setdefault(instance, {"state": "unused", "polls": 0})
        if operation == "deregister-targets":
            if target["state"] != "unused":
                target.update(state="draining", polls=state["drain_polls"])
            events.append(f"deregister {instance}")
            return ""
        if operation == "register-targets":
            if target["state"] in {"unused", "draining"}:
                target.update(state="initial", polls=state["initial_polls"])
            events.append(f"register {instance}")
            return ""
        if operation == "describe-target-health":
            if target["polls"] > 0:
                target["polls"] -= 1
            elif target["state"] == "draining":
                target["state"] = "unused"
                events.append(f"drained {instance}")
            elif target["state"] == "initial":
                unhealthy = instance in state["lb_unhealthy"]
                target["state"] = "unhealthy" if unhealthy else "healthy"
                events.append(f"{target['state']} {instance}")
            return target["state"]
    if (service, operation) == ("ssm", "send-command"):
        comment = option(args, "--comment") or ""
        if len(comment) > 100:
            fail(
                "SendCommand",
                "ValidationException",
                "1 validation error detected: Value at 'comment' failed to satisfy constraint: "
                "Member must have length less than or equal to 100",
            )
        timeout = int(option(args, "--timeout-seconds") or "3600")
        if not 30 <= timeout <= 2_592_000:
            fail("SendCommand", "ValidationException", "timeoutSeconds must be between 30 and 2592000")
        parameters = json.loads(option(args, "--parameters") or "{}")
        execution = parameters.get("executionTimeout", ["3600"])
        if not (len(execution) == 1 and execution[0].isdigit() and 1 <= int(execution[0]) <= 172_800):
            fail("SendCommand", "InvalidParameters", f"executionTimeout {execution!r}")
        if state.get("send_fails"):
            fail("SendCommand", "ThrottlingException", "Rate exceeded")
        instance = option(args, "--instance-ids")
        command_id = str(uuid.uuid4())
        lb_state = state["targets"].get(instance, {}).get("state", "unused")
        state["commands"][command_id] = {
            "instance": instance,
            "lookups": 0,
            "result": "Failed" if instance in state["failing_hosts"] else "Success",
            "execution_timeout": int(execution[0]),
            "commands": parameters["commands"],
        }
        events.append(f"send {instance} (load balancer: {lb_state})")
        return command_id
    if (service, operation) == ("ssm", "get-command-invocation"):
        command = state["commands"].get(option(args, "--command-id") or "")
        if command is None or command["instance"] != option(args, "--instance-id"):
            fail("GetCommandInvocation", "InvocationDoesNotExist", "")
        command["lookups"] += 1
        if command["lookups"] == 1:  # eventual consistency right after send-command
            fail("GetCommandInvocation", "InvocationDoesNotExist", "")
        if option(args, "--query") == "Status":
            return "InProgress" if command["lookups"] == 2 else command["result"]
        return "deploy output\t"
    fail(f"{service} {operation}", "FakeNotImplemented", "the stand-in does not know this call")
    return ""


if __name__ == "__main__":
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write("aws " + " ".join(sys.argv[1:]) + "\n")
    current = json.loads(STATE.read_text())
    try:
        out = main(sys.argv[1:], current)
    finally:
        STATE.write_text(json.dumps(current))
    print(out)
