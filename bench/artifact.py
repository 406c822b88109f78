"""A copy of what the Lambda image holds in ``${LAMBDA_TASK_ROOT}``, built on this machine.

The libraries of requirements.txt installed as the Dockerfile installs them (``pip install
--no-compile --target``, once, into a cache directory under /tmp), the app's files as the lambda
stage COPYs them (without the context's __pycache__, which .dockerignore drops), and, for the
compiled variant, the stage's own ``python -m compileall`` commands run as written. The
baseline's module is added next to them, so both sides import their libraries from one tree.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.harness import ROOT, lambda_stage

TASK_ROOT = "${LAMBDA_TASK_ROOT}"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def packages_dir() -> Path:
    """requirements.txt installed with ``--target`` for this interpreter, cached by content."""
    requirements = (ROOT / "requirements.txt").read_bytes()
    digest = hashlib.sha256(requirements + sys.version.encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"recordings-bench-packages-{digest}"
    if not (cache / ".complete").exists():
        shutil.rmtree(cache, ignore_errors=True)
        print(f"  installing requirements.txt into {cache} (once)", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-cache-dir"]
        target = ["--no-compile", "--target", str(cache), "-r", str(ROOT / "requirements.txt")]
        done = subprocess.run([*pip, *target], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pip install --target failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        (cache / ".complete").touch()
    return cache


def _copy_app(stage, task: Path) -> None:
    """The stage's COPY instructions from the build context into ``task``."""
    for args in stage.all("COPY"):
        words = args.split()
        if any(w.startswith("--from") for w in words):
            continue
        source, dest = words[-2], words[-1]
        if not dest.startswith(TASK_ROOT):
            continue
        target = task / dest.removeprefix(TASK_ROOT).strip("/")
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=IGNORED)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / source, target / Path(source).name)


def _compile(stage, task: Path) -> None:
    commands = stage.compileall()
    if not commands:
        raise RuntimeError("the Dockerfile's lambda stage has no compileall step")
    for command in commands:
        words = [sys.executable, *(w.replace(TASK_ROOT, str(task)) for w in command[1:])]
        subprocess.run(words, check=True)


def _read_only(path: Path) -> None:
    subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)


@contextmanager
def lambda_trees() -> Iterator[dict[str, Path]]:
    """Two read-only copies of the image's task root: ``as_built`` without bytecode and
    ``compiled`` as the Dockerfile compiles it."""
    stage = lambda_stage()
    packages = packages_dir()
    with tempfile.TemporaryDirectory(prefix="recordings-bench-image-") as directory:
        trees = {"as_built": Path(directory) / "as-built", "compiled": Path(directory) / "compiled"}
        try:
            for name, task in trees.items():
                shutil.copytree(packages, task, ignore=IGNORED, symlinks=True)
                _copy_app(stage, task)
                (task / "bench").mkdir()
                for module in ("__init__.py", "baseline_app.py"):
                    shutil.copy2(ROOT / "bench" / module, task / "bench" / module)
                if name == "compiled":
                    _compile(stage, task)
                _read_only(task)
            yield trees
        finally:
            subprocess.run(["chmod", "-R", "u+w", directory], check=False)
