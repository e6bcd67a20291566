"""Import contracts and CLI hygiene (no server)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from planguard.cli import main

PKG = Path(__file__).parent.parent / "planguard"
PURE = ["plan.py", "diff.py", "verdict.py", "params.py", "workload.py", "config.py", "checks/__init__.py",
        "report/json.py", "report/html.py"]
IO_LIBS = {"psycopg", "click", "subprocess"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
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
