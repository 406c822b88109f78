"""A small Dockerfile reader: stages, their ENV, CMD and HEALTHCHECK (enough for this project's
Dockerfile; no Docker engine exists on the test machines)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    @property
    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                if not sep:
                    raise ValueError(f"legacy `ENV key value` form is not supported: {args}")
                values[key] = re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), value)
        return values

    def commands(self) -> list[list[str]]:
        """Each command of the stage's RUN instructions (shell form, split at ``&&``), as words."""
        return [shlex.split(part) for args in self.all("RUN") for part in args.split("&&") if part.strip()]

    def compileall(self) -> list[list[str]]:
        """The stage's ``python -m compileall`` commands."""
        return [words for words in self.commands() if words[:3] == ["python", "-m", "compileall"]]

    @property
    def cmd(self) -> list[str]:
        raw = self.last("CMD")
        if raw is None:
            raise ValueError(f"stage {self.name} has no CMD")
        return json.loads(raw)  # exec form only: a shell form CMD would not receive SIGTERM

    @property
    def healthcheck(self) -> list[str]:
        raw = self.last("HEALTHCHECK") or ""
        _, _, command = raw.partition("CMD ")
        return json.loads(command)


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines inside a continued instruction are skipped too
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stage = stages[name] = Stage(name=name, base=parts[0])
        elif stage is not None:
            stage.instructions.append((keyword, args.strip()))
    return stages
