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
        "report/json.py", "report/html.py", "fixes.py", "plantree.py", "trials.py", "statdelta.py", "watch.py",
        "report/watch.py", "rehearsal.py", "report/rehearsal.py", "report/templating.py", "shard.py",
        "progress.py", "heap.py", *CHECKS]
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


# What decides and what renders must reach neither a database, nor the command line, nor
# pandas (measurements are tabulated elsewhere), through any chain of imports.
TRANSITIVELY_PURE = ["model", "judge", "safety", "budget", "causes", "calls", "measure", "timing", "recording", "plan", "diff",
                     "findings", "verdict", "config", "workload", "params", "qualify", "sqlfile", "logparse",
                     *(f"checks.{p.stem}" for p in (PKG / "checks").glob("*.py") if p.stem != "__init__"),
                     "report", "report.json", "report.html", "fixes", "plantree", "trials", "statdelta", "watch",
                     "report.watch", "rehearsal", "report.rehearsal", "report.templating", "shard", "progress",
                     "heap"]
FORBIDDEN = ("psycopg", "click", "pandas", "subprocess")


def _module_file(name: str) -> Path | None:
    """The file of a planguard module (``planguard.a.b``), or None for anything else."""
    if not name.startswith("planguard"):
        return None
    parts = name.split(".")[1:]
    base = PKG.joinpath(*parts) if parts else PKG
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _chain_to_forbidden(start: str) -> list[str] | None:
    """An import chain from ``start`` to a forbidden library, or None (depth first)."""
    seen: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name.split(".")[0] in FORBIDDEN:
            return [*path, name]
        file = _module_file(name)
        if file is None or name in seen:
            return None
        seen.add(name)
        for imported in sorted(_modules(file)):
            found = visit(imported, [*path, name])
            if found:
                return found
        return None

    return visit(f"planguard.{start}", [])


@pytest.mark.parametrize("module", TRANSITIVELY_PURE)
def test_decisions_and_reports_reach_no_io_through_any_import(module: str) -> None:
    chain = _chain_to_forbidden(module)
    assert chain is None, " -> ".join(chain or [])


def test_the_transitive_check_finds_a_chain() -> None:
    """The check itself: the runner does reach psycopg."""
    assert _chain_to_forbidden("runner") is not None


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


def _graph() -> dict[str, set[str]]:
    """planguard's modules and the planguard modules each imports (lazily or not)."""
    names = {".".join(("planguard", *p.relative_to(PKG).with_suffix("").parts)).removesuffix(".__init__")
             for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name in names:
        file = _module_file(name)
        assert file is not None
        graph[name] = {m for m in _modules(file) if m in names and m != name}
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name)
            assert cycle is None, " -> ".join(cycle)


def test_the_readme_states_the_thresholds_defaults_as_the_code_has_them() -> None:
    """Defaults live in planguard.config alone; where the README names one, it says the same."""
    import re
    from dataclasses import fields

    from planguard.config import Thresholds

    readme = (PKG.parent / "README.md").read_text()
    defaults = {f.name: f.default for f in fields(Thresholds)}
    stated = re.findall(r"`([a-z_]+)` \(([0-9.]+)", readme)
    named = [(name, float(value)) for name, value in stated if name in defaults]
    assert len(named) >= 8, named
    for name, value in named:
        assert value == float(defaults[name]), f"README says {name} = {value}, the code {defaults[name]}"
    pyproject = (PKG.parent / "pyproject.toml").read_text()
    assert "[tool.planguard]" not in pyproject, "the repo's own settings would override the defaults"
