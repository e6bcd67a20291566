"""The README's Commands table lists every command the CLI has (no server)."""

from __future__ import annotations

import re
from pathlib import Path

from planguard.cli import main

README = Path(__file__).parent.parent / "README.md"


def test_every_command_is_in_the_readme_commands_table() -> None:
    text = README.read_text()
    section = text.split("## Commands\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `planguard ([a-z-]+)", section, flags=re.M))
    assert listed == set(main.commands), f"README lists {sorted(listed)}, the CLI has {sorted(main.commands)}"
