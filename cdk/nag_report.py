"""Summary of cdk.out/validation-report.json (no CDK import: runs without node)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


def read_report(outdir: str | Path) -> dict:
    path = Path(outdir) / "validation-report.json"
    return json.loads(path.read_text()) if path.exists() else {"pluginReports": []}


def summarize(report: dict) -> str:
    """Human summary: open violations (which fail synth) and acknowledged ones with reasons."""
    lines: list[str] = []
    for plugin in report.get("pluginReports", []):
        open_ = plugin.get("violations", [])
        acked = plugin.get("suppressedViolations", [])
        lines.append(
            f"cdk-nag {plugin.get('pluginName')}: {plugin.get('conclusion')}, "
            f"{sum(len(v['violatingConstructs']) for v in open_)} open finding(s), "
            f"{sum(len(v['violatingConstructs']) for v in acked)} acknowledged"
        )
        for v in open_:
            for c in v["violatingConstructs"]:
                lines.append(f"  OPEN {v['severity']:7} {v['ruleName']}  {c['constructPath']}")
        counts = Counter((v.get("acknowledgedId", v["ruleName"]), v.get("reason", "")) for v in acked)
        for (rule, reason), n in sorted(counts.items()):
            lines.append(f"  ack x{n:<3} {rule}: {reason}")
    return "\n".join(lines) or "cdk-nag: no report found (was the app synthesized?)"


def list_stacks(outdir: str | Path) -> str:
    """Stacks in the cloud assembly, in deployment order, with region and dependencies."""
    manifest = json.loads((Path(outdir) / "manifest.json").read_text())
    lines = ["Stacks:"]
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        region = artifact.get("environment", "").rsplit("/", 1)[-1]
        deps = [d for d in artifact.get("dependencies", []) if not d.endswith(".assets")]
        after = f"  (after {', '.join(deps)})" if deps else ""
        lines.append(f"  {name:32} {region}{after}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m cdk.nag_report cdk.out
    out = sys.argv[1] if len(sys.argv) > 1 else "cdk.out"
    print(list_stacks(out))
    print(summarize(read_report(out)))
