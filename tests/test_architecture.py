"""Import contracts and CLI hygiene (no server)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from planguard.cli import main

PKG = Path(__file__).parent.parent / "planguard"
CHECKS = sorted(str(p.relative_to(PKG)) for p in (PKG / "checks").glob("*.py"))
PURE = ["plan.py", "diff.py", "timing.py", "verdict.py", "params.py", "workload.py", "config.py",
        "report/json.py", "report/html.py", *CHECKS]
IO_LIBS = {"psycopg", "click", "subprocess"}
# The check families' evaluation is pure; their catalog reads live in planguard/catalog/.
IO_MODULES = ("psycopg", "planguard.db", "planguard.catalog")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by its full dotted name (``from a import b``: ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_do_no_io(module: str) -> None:
    assert not (_imports(PKG / module) & IO_LIBS), f"{module} must stay pure (no database, no CLI)"


def test_only_cli_imports_click() -> None:
    users = [p.relative_to(PKG) for p in PKG.rglob("*.py") if "click" in _imports(p)]
    assert [str(u) for u in users] == ["cli.py"]


def _commands(group: click.Group) -> list[click.Command]:
    return [group.commands[name] for name in sorted(group.commands)]


def test_every_command_and_option_has_help() -> None:
    assert main.help
    for cmd in _commands(main):
        assert cmd.help, f"command {cmd.name} has no help"
        for param in cmd.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"option {param.opts} of {cmd.name} has no help"


@pytest.mark.parametrize("module", CHECKS)
def test_checks_import_no_database_module(module: str) -> None:
    bad = {m for m in _modules(PKG / module) if any(m == io or m.startswith(io + ".") for io in IO_MODULES)}
    assert not bad, f"{module} imports {sorted(bad)}: catalog reads belong in planguard/catalog/"


def test_the_docs_list_every_finding_and_cause_kind_as_the_registry_declares_them() -> None:
    """docs/json-contract.md's tables are the registry's (python -m planguard.findings prints them)."""
    from planguard.findings import causes_table, markdown_table

    doc = (PKG.parent / "docs" / "json-contract.md").read_text()
    assert markdown_table() in doc
    assert causes_table() in doc
