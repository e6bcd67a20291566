"""Import contracts and CLI hygiene (no server)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

from planguard.cli import main

PKG = Path(__file__).parent.parent / "planguard"
PURE = ["plan.py", "diff.py", "timing.py", "verdict.py", "params.py", "workload.py", "config.py", "checks/__init__.py",
        "checks/snapshot.py", "report/json.py", "report/html.py"]
# Check families keep gather (I/O) and evaluate (pure) in one module: everything
# reachable from their pure entry points, and every method of their snapshot
# dataclasses, must not touch a connection.
FAMILIES = ["checks/freshness.py", "checks/statistics.py", "checks/indexes.py", "checks/sequences.py",
            "checks/settings.py", "checks/environment.py", "checks/readiness.py"]
PURE_ENTRIES = {"evaluate", "evaluate_all", "harmful_indexes", "merge_findings", "is_never_analyzed"}
IO_NAMES = {"psycopg", "sql", "conn", "connect", "execute", "fetchone", "fetchall", "cursor", "MARK",
            "subprocess", "ThreadPoolExecutor"}
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


def _pure_part(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    methods = {f"{c.name}.{m.name}": m for c in tree.body if isinstance(c, ast.ClassDef)
               for m in c.body if isinstance(m, ast.FunctionDef)}
    todo = [n for n in PURE_ENTRIES if n in funcs]
    seen: dict[str, ast.FunctionDef] = dict(methods)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = funcs[name]
        todo += [n.id for n in ast.walk(funcs[name]) if isinstance(n, ast.Name) and n.id in funcs]
    return seen


@pytest.mark.parametrize("module", FAMILIES)
def test_check_evaluate_does_no_io(module: str) -> None:
    part = _pure_part(PKG / module)
    assert "evaluate" in part or "evaluate_all" in part
    for name, fn in part.items():
        used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        used |= {n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute)}
        bad = (used & IO_NAMES) | {u for u in used if u.startswith("gather")}
        assert not bad, f"{module}: {name} is reachable from evaluate but uses {sorted(bad)}"
