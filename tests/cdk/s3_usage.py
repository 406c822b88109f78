"""What the code does to S3, found by reading it, not restated by hand.

Every call of an S3 client method in ``service/`` and ``handlers/`` (direct, through
``Storage._call("operation", ...)``, or presigned with ``generate_presigned_url("operation")`` and
``generate_presigned_post``), with the IAM actions it needs (``service.core.storage.S3_ACTIONS``, in
their ``*Version`` form when the call names a ``VersionId``), and which of them an entry point
reaches: a Lambda handler, the HTTP API, a command of ``python -m service``.

Reachability follows a call graph over the two packages: names and module attributes resolved
through each module's imports, ``self.method`` inside a class, ``storage.method`` (every
``Storage`` in the code is called ``storage`` or reached as ``.storage``) to ``Storage``'s methods,
routers to the routes they decorate, functions passed by reference (``set_defaults(func=...)``,
``CHECKS = {...}``) and ``"module:function"`` strings (uvicorn's factory). It over-approximates
(a function referenced is a function called), which for a permission check errs on the side of
asking for a grant; the IAM-enforced lifecycle run (tests/iam) catches what it could miss.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from service.core.storage import iam_actions

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "handlers")
STORAGE_CLASS = "service.core.storage:Storage"
PRESIGN_POST = "generate_presigned_post"
PRESIGN_URL = "generate_presigned_url"
DISPATCH = "_call"  # Storage._call("operation", **params)
_FACTORY = re.compile(r"^[a-z_][\w.]*:[A-Za-z_]\w*$")


@functools.cache
def s3_operations() -> frozenset[str]:
    """botocore's method name of every S3 API operation (``delete_object``, ``list_parts``, ...)."""
    import botocore.session
    from botocore import xform_name

    model = botocore.session.get_session().get_service_model("s3")
    return frozenset(xform_name(name) for name in model.operation_names)


@dataclass(frozen=True)
class S3Call:
    operation: str
    versioned: bool | None  # True: names a VersionId; False: never; None: only sometimes
    where: str  # "service/core/storage.py:123 Storage.purge"

    @property
    def actions(self) -> frozenset[str]:
        from service.core.storage import S3_ACTIONS

        if self.operation not in S3_ACTIONS:
            raise AssertionError(
                f"{self.where} calls S3 {self.operation}, which service.core.storage.S3_ACTIONS does not map "
                "to its IAM action(s): add it there, then grant it in cdk/constructs/storage.py"
            )
        if self.versioned is None:
            return frozenset(iam_actions(self.operation)) | frozenset(iam_actions(self.operation, versioned=True))
        return frozenset(iam_actions(self.operation, versioned=self.versioned))


@dataclass
class Node:
    """A function, method, class or module-level variable: ``module:qualname``."""

    name: str
    refs: set[str] = field(default_factory=set)
    calls: list[S3Call] = field(default_factory=list)


@dataclass
class _Module:
    name: str
    path: Path
    tree: ast.Module
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # local -> (module, symbol)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _skip_annotations(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` without type annotations (a ``storage: Storage`` parameter calls nothing)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        for name, value in ast.iter_fields(current):
            if name in ("annotation", "returns"):
                continue
            if isinstance(value, ast.AST):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST))


def _versioned(call: ast.Call, scope: ast.AST) -> bool | None:
    for keyword in call.keywords:
        if keyword.arg == "VersionId":
            return True
        if keyword.arg == "Params" and isinstance(keyword.value, ast.Dict):
            keys = {k.value for k in keyword.value.keys if isinstance(k, ast.Constant)}
            return "VersionId" in keys
    dynamic = any(k.arg is None or (k.arg == "Params" and not isinstance(k.value, ast.Dict)) for k in call.keywords)
    if dynamic and any(isinstance(n, ast.Constant) and n.value == "VersionId" for n in ast.walk(scope)):
        return None  # the parameters are built in the function, with a VersionId only sometimes
    return False


def _is_storage(expr: ast.AST) -> bool:
    return (isinstance(expr, ast.Name) and expr.id == "storage") or (
        isinstance(expr, ast.Attribute) and expr.attr == "storage"
    )


class CodeGraph:
    def __init__(self, packages: Iterable[str] = PACKAGES) -> None:
        self.modules: dict[str, _Module] = {}
        for package in packages:
            for path in sorted((REPO / package).rglob("*.py")):
                name = _module_name(path)
                self.modules[name] = _Module(name, path, ast.parse(path.read_text(), str(path)))
        self.nodes: dict[str, Node] = {}
        for module in self.modules.values():
            self._collect_imports(module)
            self._declare(module)
        for module in self.modules.values():
            self._link(module)

    # ---- building ----------------------------------------------------------------------------

    def _collect_imports(self, module: _Module) -> None:
        for node in ast.walk(module.tree):  # function-level imports too (the code imports lazily)
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        module.imports[alias.asname] = (alias.name, None)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    local = alias.asname or alias.name
                    submodule = f"{node.module}.{alias.name}"
                    if submodule in self.modules:
                        module.imports[local] = (submodule, None)
                    else:
                        module.imports[local] = (node.module, alias.name)

    def _declare(self, module: _Module) -> None:
        for stmt in module.tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.nodes[f"{module.name}:{stmt.name}"] = Node(f"{module.name}:{stmt.name}")
                if isinstance(stmt, ast.ClassDef):
                    for item in stmt.body:
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                            qualified = f"{module.name}:{stmt.name}.{item.name}"
                            self.nodes[qualified] = Node(qualified)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.nodes[f"{module.name}:{target.id}"] = Node(f"{module.name}:{target.id}")

    def _resolve(self, module: _Module, name: str) -> str | None:
        """A local name of ``module``: a node name, ``module <dotted>`` for a module, or None."""
        if f"{module.name}:{name}" in self.nodes:
            return f"{module.name}:{name}"
        target = module.imports.get(name)
        if target is None:
            return None
        imported, symbol = target
        if symbol is None:
            return f"module {imported}" if imported in self.modules else None
        return f"{imported}:{symbol}" if f"{imported}:{symbol}" in self.nodes else None

    def _attribute(self, module: _Module, expr: ast.Attribute, cls: str | None) -> str | None:
        base = expr.value
        if _is_storage(base):
            candidate = f"{STORAGE_CLASS}.{expr.attr}"
        elif isinstance(base, ast.Name) and base.id in ("self", "cls") and cls:
            candidate = f"{module.name}:{cls}.{expr.attr}"
        elif isinstance(base, ast.Name):
            resolved = self._resolve(module, base.id)
            if resolved is None:
                return None
            if resolved.startswith("module "):
                candidate = f"{resolved.removeprefix('module ')}:{expr.attr}"
            else:
                candidate = f"{resolved}.{expr.attr}"  # a class: Class.method
        else:
            return None
        return candidate if candidate in self.nodes else None

    def _s3_call(self, module: _Module, call: ast.Call, scope: ast.AST, where: str) -> S3Call | None:
        func = call.func
        if not isinstance(func, ast.Attribute) or _is_storage(func.value):
            return None
        first = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else None
        if func.attr == DISPATCH:
            if not isinstance(first, str):
                raise AssertionError(f"{where}: {DISPATCH}() needs the S3 operation as a literal")
            return S3Call(first, _versioned(call, scope), where)
        if func.attr == PRESIGN_URL:
            if not isinstance(first, str):
                raise AssertionError(f"{where}: {PRESIGN_URL}() needs the S3 operation as a literal")
            return S3Call(first, _versioned(call, scope), where)
        if func.attr == PRESIGN_POST:
            return S3Call("put_object", False, where)  # the browser's POST is a PutObject
        if func.attr in s3_operations():
            if isinstance(func.value, ast.Name) and self._resolve(module, func.value.id):
                return None  # a function of one of our modules that shares an S3 name
            return S3Call(func.attr, _versioned(call, scope), where)
        return None

    def _scan(self, module: _Module, node: Node, body: ast.AST, cls: str | None) -> None:
        label = node.name.split(":", 1)[1]
        for item in _skip_annotations(body):
            if isinstance(item, ast.Name) and isinstance(item.ctx, ast.Load):
                resolved = self._resolve(module, item.id)
                if resolved and not resolved.startswith("module "):
                    node.refs.add(resolved)
            elif isinstance(item, ast.Attribute):
                resolved = self._attribute(module, item, cls)
                if resolved:
                    node.refs.add(resolved)
            elif isinstance(item, ast.Constant) and isinstance(item.value, str) and _FACTORY.match(item.value):
                target = item.value
                if target in self.nodes:
                    node.refs.add(target)
            if isinstance(item, ast.Call):
                where = f"{module.path.relative_to(REPO)}:{item.lineno} {label}"
                found = self._s3_call(module, item, body, where)
                if found:
                    node.calls.append(found)

    def _link(self, module: _Module) -> None:
        for stmt in module.tree.body:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                node = self.nodes[f"{module.name}:{stmt.name}"]
                self._scan(module, node, stmt, None)
                self._decorated_by(module, stmt, node.name)
            elif isinstance(stmt, ast.ClassDef):
                for item in stmt.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        node = self.nodes[f"{module.name}:{stmt.name}.{item.name}"]
                        self._scan(module, node, item, stmt.name)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        self._scan(module, self.nodes[f"{module.name}:{target.id}"], stmt.value, None)

    def _decorated_by(self, module: _Module, function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> None:
        """``@router.get(...)``: reaching ``router`` reaches the route."""
        for decorator in function.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
                owner = self._resolve(module, target.value.id)
                if owner and owner in self.nodes:
                    self.nodes[owner].refs.add(name)

    # ---- queries -----------------------------------------------------------------------------

    def all_calls(self) -> list[S3Call]:
        return [call for node in self.nodes.values() for call in node.calls]

    def reachable(self, entries: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        todo = list(entries)
        for entry in todo:
            if entry not in self.nodes:
                raise KeyError(f"no function or variable {entry} in {', '.join(PACKAGES)}")
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(self.nodes[current].refs - seen)
        return seen

    def calls_from(self, entries: Iterable[str]) -> list[S3Call]:
        return [call for name in sorted(self.reachable(entries)) for call in self.nodes[name].calls]


def needed_actions(calls: Iterable[S3Call]) -> dict[str, list[str]]:
    """IAM action -> the call sites that need it."""
    needed: dict[str, list[str]] = {}
    for call in calls:
        for action in call.actions:
            needed.setdefault(action, []).append(f"{call.where} ({call.operation})")
    return needed


def handler_node(handler: str) -> str:
    """``handlers.jobs.reap_handler`` (a Lambda image command) -> ``handlers.jobs:reap_handler``."""
    module, _, attribute = handler.rpartition(".")
    return f"{module}:{attribute}"


def cli_node(argv: list[str]) -> str:
    """The function ``python -m service <argv>`` runs."""
    from service.cli import build_parser

    func = build_parser().parse_args(argv).func
    return f"{func.__module__}:{func.__qualname__}"
