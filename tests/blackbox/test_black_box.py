"""The suite stays black-box: neither it nor the stand-ins it drives import the bot (``bot``,
``cogs``), so it keeps working unchanged whatever the bot looks like inside."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("bot", "cogs")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_neither_the_suite_nor_its_stand_ins_import_the_bot() -> None:
    files = [*(ROOT / "tests" / "blackbox").glob("*.py"), ROOT / "standins" / "bot_process.py", ROOT / "standins" / "wait.py",
             *(ROOT / "standins" / "comfy_server").glob("*.py"), *(ROOT / "standins" / "discord_server").glob("*.py")]
    offending = {
        str(path.relative_to(ROOT)): sorted(name for name in _imports(path) if name.split(".")[0] in PRODUCT)
        for path in files
    }
    assert {path: names for path, names in offending.items() if names} == {}
