"""The two halves stand on one base and never import each other; the product never imports the devkit."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORWARDER_HALF = ("worker", "ledger", "wiring", "processing", "ingest", "commands", "summary")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_cohort_half_imports_nothing_of_the_forwarder_half() -> None:
    crossing = {
        (str(path.relative_to(ROOT)), name)
        for path in modules("forwarder/cohorts")
        for name in imports(path)
        if name.split(".")[:2] in (["forwarder", part] for part in FORWARDER_HALF)
    }
    assert not crossing


def test_nothing_outside_the_cohort_half_and_the_registry_imports_it() -> None:
    crossing = {
        (str(path.relative_to(ROOT)), name)
        for path in modules("forwarder")
        if "cohorts" not in path.parts and path.name != "cli.py"
        for name in imports(path)
        if name.startswith("forwarder.cohorts")
    }
    assert not crossing


def test_only_the_command_line_registry_reaches_the_devkit() -> None:
    reaching = {
        str(path.relative_to(ROOT))
        for path in modules("forwarder") + modules("schemas")
        if any(name == "devkit" or name.startswith("devkit.") for name in imports(path))
    }
    assert not reaching
    # The registry names the devkit's commands by module; only the chosen one is imported, when it is run.
    registry = (ROOT / "forwarder" / "cli.py").read_text()
    assert "devkit.commands:DEMO" in registry


def test_no_function_in_shipped_code_is_over_80_lines() -> None:
    long = {
        f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for folder in ("forwarder", "devkit", "schemas")
        for path in modules(folder)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > 80
    }
    assert not long
