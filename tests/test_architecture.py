"""The import graph: discord is imported only by the bot's Discord entry modules and cogs.

Services (ComfyUI client, workflows, media, jobs, storage) must stay usable without Discord,
so this test parses every module and fails when one of them imports ``discord``.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Where ``import discord`` is allowed (paths relative to the repository root).
ALLOWED = ("bot/app.py", "bot/discord/*", "cogs/*")
# Packages that must never import discord, even if the allow-list above were widened by mistake.
FORBIDDEN = ("bot/comfy/*", "bot/workflows/*", "bot/media/*", "bot/jobs/*", "bot/moderation/*", "bot/safety/*", "bot/storage/*")


def discord_imports(source: str) -> list[int]:
    """Line numbers where ``source`` imports discord (``import discord...`` or ``from discord... import``)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name == "discord" or a.name.startswith("discord.") for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
            node.module == "discord" or node.module.startswith("discord.")
        ):
            lines.append(node.lineno)
    return lines


def is_allowed(relative: str) -> bool:
    if any(fnmatch(relative, pattern) for pattern in FORBIDDEN):
        return False
    return any(fnmatch(relative, pattern) for pattern in ALLOWED)


def violations(root: Path) -> list[str]:
    found = []
    for package in ("bot", "cogs"):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            lines = discord_imports(path.read_text(encoding="utf-8"))
            if lines and not is_allowed(relative):
                found.append(f"{relative}:{lines[0]} imports discord")
    return found


def test_discord_is_imported_only_where_allowed() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    "relative",
    ["bot/comfy/client.py", "bot/workflows/inject.py", "bot/media/video.py", "bot/jobs/service.py", "bot/storage/jobs.py",
     "bot/settings.py"],
)
@pytest.mark.parametrize("statement", ["import discord", "from discord.ext import commands", "import discord.utils as u"])
def test_a_service_importing_discord_is_caught(tmp_path: Path, relative: str, statement: str) -> None:
    for package in ("bot", "cogs"):
        (tmp_path / package).mkdir()
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f'"""x"""\n\ndef f() -> None:\n    {statement}\n')
    assert violations(tmp_path) == [f"{relative}:4 imports discord"]


def test_entry_modules_and_cogs_may_import_discord(tmp_path: Path) -> None:
    for relative in ("bot/app.py", "bot/discord/tree.py", "bot/discord/views.py", "cogs/animate.py"):
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("import discord\n")
    assert violations(tmp_path) == []
