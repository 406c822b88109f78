"""Changing a feature flag later must never deadlock on a cross-stack export.

CloudFormation refuses to remove an export another stack imports. Every combination of the
flags that add or remove resources other stacks use is synthesized; an export that exists in
some combinations and not in others (for the same stack) must not be imported anywhere.
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest

from cdk.application import build_app, cdk_json_context

FLAGS = ("ec2_service", "lambda_api", "rds_proxy", "https")
HTTPS = {
    "domain_name": "recordings.corp.internal",
    "certificate_arn": "arn:aws:acm:eu-west-1:111122223333:certificate/00000000-0000-0000-0000-000000000000",
}


def _imports(node, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        if "Fn::ImportValue" in node:
            found.add(json.dumps(node["Fn::ImportValue"], sort_keys=True))
        for value in node.values():
            _imports(value, found)
    elif isinstance(node, list):
        for value in node:
            _imports(value, found)
    return found


def _synth(combination: dict[str, bool], outdir) -> dict[str, dict]:
    context = copy.deepcopy(cdk_json_context())
    features = context["recordings"]["profiles"]["dev"]["features"]
    for flag, on in combination.items():
        if flag != "https":
            features[flag] = on
    context.update(env="dev", **({"aws:cdk:disable-asset-staging": True}))
    if combination["https"]:
        context.update(HTTPS)
    assembly = build_app(context=context, outdir=str(outdir)).app.synth()
    return {stack.stack_name: stack.template for stack in assembly.stacks}


@pytest.fixture(scope="module")
def combinations(tmp_path_factory) -> list[dict[str, dict]]:
    out = []
    for i, values in enumerate(itertools.product((False, True), repeat=len(FLAGS))):
        out.append(_synth(dict(zip(FLAGS, values, strict=True)), tmp_path_factory.mktemp(f"flags-{i}")))
    return out


def test_no_stack_imports_an_export_whose_existence_depends_on_a_flag(combinations) -> None:
    exports: dict[str, list[set[str]]] = {}
    for templates in combinations:
        for stack, template in templates.items():
            names = {
                json.dumps(o["Export"]["Name"], sort_keys=True)
                for o in template.get("Outputs", {}).values()
                if "Export" in o
            }
            exports.setdefault(stack, []).append(names)
    always = {stack: set.intersection(*sets) for stack, sets in exports.items()}
    sometimes = {stack: set.union(*sets) - always[stack] for stack, sets in exports.items()}
    imported_somewhere = set()
    for templates in combinations:
        for stack, template in templates.items():
            for name in _imports(template, set()):
                imported_somewhere.add(name)
                conditional = [s for s, names in sometimes.items() if name in names]
                assert not conditional, f"{stack} imports {name}, which only some flag settings export"
    assert imported_somewhere, "the check must see the stacks' ordinary imports"
    assert len(combinations) == 2 ** len(FLAGS)


def test_flag_dependent_values_travel_through_ssm(combinations) -> None:
    everything_on = combinations[-1]
    monitoring = everything_on["Recordings-dev-monitoring"]
    ssm_params = {
        p["Default"] for p in monitoring.get("Parameters", {}).values() if "AWS::SSM::Parameter::Value" in p["Type"]
    }
    assert {
        "/recordings/dev/ec2/alb-full-name",
        "/recordings/dev/ec2/target-group-full-name",
        "/recordings/dev/ec2/asg-name",
        "/recordings/dev/backend/http-api-id",
        "/recordings/dev/backend/api-function-name",
    } <= ssm_params
    written = {
        r["Properties"]["Name"]
        for template in everything_on.values()
        for r in template["Resources"].values()
        if r["Type"] == "AWS::SSM::Parameter"
    }
    assert ssm_params <= written | {p for p in ssm_params if not p.startswith("/recordings/")}
