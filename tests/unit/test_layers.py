"""The import contracts in pyproject.toml ([tool.importlinter]) hold for the code, and they do
catch an import against the layers. ``make lint`` runs the same contracts (lint-imports)."""

from __future__ import annotations

import copy
from pathlib import Path

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CONFIGURATION = read_configuration(str(PYPROJECT))
SESSION = CONFIGURATION["session_options"]
CONTRACTS = {options["id"]: options for options in CONFIGURATION["contracts_options"]}
TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        *SESSION["root_packages"],
        include_external_packages=SESSION.get("include_external_packages") == "True",
        cache_dir=None,
    )


def check(graph: grimp.ImportGraph, options: dict):
    """Check one contract, given as in the configuration, against ``graph``."""
    contract_options = {key: value for key, value in options.items() if key not in ("id", "name", "type")}
    contract = TYPES[options["type"]](options.get("name", options["type"]), SESSION, contract_options)
    return contract.check(graph, verbose=False)


def broken_imports(result) -> list[tuple[str, str]]:
    """(importer, imported) of the first import of every chain that breaks the contract."""
    if "invalid_dependencies" in result.metadata:  # layers
        return sorted(
            (route["chain"][0]["importer"], route["chain"][-1]["imported"])
            for dependency in result.metadata["invalid_dependencies"]
            for route in dependency["routes"]
        )
    return sorted(  # forbidden
        (chain[0]["importer"], chain[-1]["imported"])
        for dependency in result.metadata["invalid_chains"]
        for chain in dependency["chains"]
    )


def test_the_configuration_names_every_service_package():
    """A new package under service/ must be given its place in the layers."""
    layers = CONTRACTS["service-layers"]["layers"]
    named = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    service = PYPROJECT.parent / "service"
    packages = {f"service.{path.parent.name}" for path in service.glob("*/__init__.py")}
    modules = {f"service.{path.stem}" for path in service.glob("*.py") if path.stem != "__init__"}
    assert packages | modules == named


@pytest.mark.parametrize("contract_id", sorted(CONTRACTS))
def test_the_contract_is_kept(graph, contract_id):
    result = check(graph, CONTRACTS[contract_id])
    assert result.kept, f"{CONTRACTS[contract_id]['name']}: broken by {broken_imports(result)}"


@pytest.mark.parametrize(
    ("contract_id", "importer", "imported"),
    [
        ("service-layers", "service.core.settings", "service.api.app"),
        ("service-layers", "service.web.errors", "service.recordings.service"),
        ("service-layers", "service.auth.caller", "service.browser.routes"),
        ("service-layers", "service.observability.metrics", "service.web.middleware"),
        ("service-layers", "service.api.app", "service.cli"),
        ("entry-points", "service.core.db", "handlers.runtime"),
        ("entry-points", "service.api.app", "ops.backup.verify"),
        ("entry-points", "handlers.api", "ops.backup.verify"),
        ("core-without-frameworks", "service.core.storage", "prometheus_client"),
        ("core-without-frameworks", "service.core.problems", "fastapi"),
    ],
)
def test_an_import_against_the_layers_breaks_the_contract(graph, contract_id, importer, imported):
    changed = copy.deepcopy(graph)
    changed.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    result = check(changed, CONTRACTS[contract_id])
    assert not result.kept
    assert (importer, imported) in broken_imports(result)


def test_a_contract_that_reverses_the_layers_is_broken_by_the_code(graph):
    result = check(graph, {"type": "layers", "layers": ["service.core", "service.api"]})
    assert not result.kept
    assert ("service.api.app", "service.core.settings") in broken_imports(result)
