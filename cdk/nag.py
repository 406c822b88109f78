"""cdk-nag v3 helpers: one way to acknowledge a finding, and a summary of the validation report.

Every acknowledgement names the exact rule (and, for rules that report several findings per
resource such as IAM4/IAM5, the exact finding) and says why it is acceptable here.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, rule: str, reason: str, *findings: str) -> None:
    """Acknowledge ``rule`` on ``scope`` (and its children), once per named finding if given."""
    if len(reason) < 20:
        raise ValueError(f"{rule}: give a specific reason, not {reason!r}")
    # "<Plugin>::<rule>" is the id the validation report asks for; CDK core then records the
    # finding as suppressed (with this reason) in cdk.out/validation-report.json.
    qualified = f"{rule.split('-')[0]}::{rule}"
    ids = [f"{qualified}[{finding}]" for finding in findings] or [qualified]
    Validations.of(scope).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))
