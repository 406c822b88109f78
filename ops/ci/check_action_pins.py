"""Every GitHub action the workflows use is pinned to a full commit SHA that exists.

    python ops/ci/check_action_pins.py            # workflows agree with .github/actions-lock.yml
    python ops/ci/check_action_pins.py --remote   # ...and each locked commit is its tag's commit
                                                  # on GitHub (git ls-remote; needs the network)

A `uses:` line must read ``owner/repo[/path]@<40 hex> # <version>``; the pair must be the one in
the lock file. ``--remote`` asks the action's repository which commit the tag names (the peeled
commit for annotated tags): a withdrawn or moved tag fails here before it fails a deploy.
Exit 0 when everything agrees, 1 otherwise (each problem on its own line).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
LOCK_FILE = REPO / ".github" / "actions-lock.yml"
FULL_SHA = re.compile(r"[0-9a-f]{40}")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*['\"]?(?P<target>[^\s'\"#]+)['\"]?\s*(?:#\s*(?P<comment>\S+))?")


@dataclass(frozen=True)
class Use:
    file: str
    line: int
    action: str  # owner/repo (a sub-path of the repository is dropped)
    ref: str
    comment: str | None


def workflow_uses(directory: Path = WORKFLOWS) -> list[Use]:
    uses = []
    for path in sorted([*directory.glob("*.yml"), *directory.glob("*.yaml")]):
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            match = USES.match(text)
            if not match:
                continue
            target = match["target"]
            if target.startswith(("./", "docker://")):
                continue  # local actions live in this repository; no container actions are used
            name, _, ref = target.partition("@")
            action = "/".join(name.split("/")[:2])
            uses.append(Use(path.name, number, action, ref, match["comment"]))
    return uses


def load_lock(path: Path = LOCK_FILE) -> dict[str, dict[str, str]]:
    return yaml.safe_load(path.read_text())["actions"]


def offline_problems(uses: list[Use], lock: dict[str, dict[str, str]]) -> list[str]:
    problems = []
    for use in uses:
        where = f"{use.file}:{use.line} {use.action}"
        if not FULL_SHA.fullmatch(use.ref):
            problems.append(f"{where}: pinned to {use.ref!r}, not a full commit SHA")
            continue
        entry = lock.get(use.action)
        if entry is None:
            problems.append(f"{where}: not in {LOCK_FILE.name}")
            continue
        if use.ref != entry["commit"]:
            problems.append(f"{where}: commit {use.ref} but {LOCK_FILE.name} has {entry['commit']}")
        if use.comment != entry["version"]:
            problems.append(f"{where}: version comment {use.comment!r} but {LOCK_FILE.name} has {entry['version']}")
    unused = set(lock) - {use.action for use in uses}
    problems += [f"{LOCK_FILE.name}: {action} is used by no workflow" for action in sorted(unused)]
    return problems


def remote_commit(action: str, version: str, *, git_base: str) -> str | None:
    """The commit tag ``version`` of ``action`` names, or None when the tag does not exist."""
    tag = f"refs/tags/{version}"
    # git from PATH on purpose (CI runner or developer machine); the arguments come from the lock file.
    result = subprocess.run(  # noqa: S603
        ["git", "ls-remote", f"{git_base}/{action}", tag, f"{tag}^{{}}"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    refs = dict(reversed(line.split("\t", 1)) for line in result.stdout.splitlines() if "\t" in line)
    return refs.get(f"{tag}^{{}}") or refs.get(tag)


def remote_problems(lock: dict[str, dict[str, str]], *, git_base: str) -> list[str]:
    problems = []
    for action, entry in sorted(lock.items()):
        try:
            commit = remote_commit(action, entry["version"], git_base=git_base)
        except subprocess.CalledProcessError as exc:
            problems.append(f"{action}: git ls-remote failed: {exc.stderr.strip()}")
            continue
        if commit is None:
            problems.append(f"{action}: tag {entry['version']} does not exist")
        elif commit != entry["commit"]:
            problems.append(f"{action}: tag {entry['version']} is commit {commit}, not {entry['commit']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", action="store_true", help="also resolve each tag with git ls-remote")
    parser.add_argument("--workflows", type=Path, default=WORKFLOWS)
    parser.add_argument("--lock-file", type=Path, default=LOCK_FILE)
    args = parser.parse_args(argv)
    lock = load_lock(args.lock_file)
    problems = offline_problems(workflow_uses(args.workflows), lock)
    if args.remote:
        git_base = os.environ.get("ACTION_PINS_GIT_BASE", "https://github.com")
        problems += remote_problems(lock, git_base=git_base)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
