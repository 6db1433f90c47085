"""The architecture, checked by parsing every module.

- discord is imported only by the bot's Discord modules and cogs: services (ComfyUI client,
  workflows, media, jobs, storage) must stay usable without Discord;
- ``bot/comfy`` is a library: it imports only itself and third-party packages;
- nothing under ``bot/`` imports the cogs or the test doubles (``standins``); benchmarks do not
  import the tests;
- services are passed, typed, by the wiring: no ``services[...]`` lookup and no ``get_cog(``;
  cogs use the job service's own methods, not its store, pool, hubs, queue or support;
- every module starts with a docstring saying what it owns, and stays small enough to read in
  one go (:data:`MAX_LINES`): a module that grows past it has more than one job.
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
# Lines a module of bot/ or cogs/ may have.
MAX_LINES = 450


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


# ---------------------------------------------------------------------------- who imports whom

def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source``, the code of ``module``
    (dotted, e.g. ``bot.comfy.hub``); relative imports are resolved against it."""
    package = module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def _modules(root: Path, package: str) -> list[tuple[str, str, str]]:
    """(relative path, dotted module name, source) of every module under ``root/package``."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        relative = path.relative_to(root)
        dotted = ".".join(relative.with_suffix("").parts)
        out.append((relative.as_posix(), dotted, path.read_text(encoding="utf-8")))
    return out


def _under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def comfy_violations(root: Path) -> list[str]:
    """Imports under ``bot/comfy`` of anything of ours but ``bot.comfy`` (it is a library)."""
    return [f"{relative}:{line} imports {name}"
            for relative, dotted, source in _modules(root, "bot/comfy")
            for line, name in imported_modules(source, dotted)
            if _under(name, "bot", "cogs", "standins", "tests", "bench") and not _under(name, "bot.comfy")]


def forbidden_imports(root: Path, package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{relative}:{line} imports {name}"
            for relative, dotted, source in _modules(root, package)
            for line, name in imported_modules(source, dotted)
            if _under(name, *forbidden)]


def test_comfy_imports_only_itself_and_third_party_packages() -> None:
    assert comfy_violations(ROOT) == []


def test_the_bot_imports_neither_cogs_nor_test_doubles() -> None:
    assert forbidden_imports(ROOT, "bot", ("cogs", "standins", "tests", "bench")) == []


def test_benchmarks_do_not_import_the_tests() -> None:
    assert forbidden_imports(ROOT, "bench", ("tests",)) == []


@pytest.mark.parametrize("statement", ["from bot.settings import ServerConfig", "import bot.logs",
                                       "from bot import tasks", "from ..jobs import models", "import cogs.animate"])
def test_a_comfy_module_importing_the_bot_is_caught(tmp_path: Path, statement: str) -> None:
    target = tmp_path / "bot" / "comfy" / "client.py"
    target.parent.mkdir(parents=True)
    target.write_text(f'"""x"""\n\nfrom bot.comfy.errors import ComfyError\nfrom . import models\nimport aiohttp\n{statement}\n')
    assert [v.split(" imports ")[0] for v in comfy_violations(tmp_path)] == ["bot/comfy/client.py:6"]


# ---------------------------------------------------------------------------- how services are found

def lookups(root: Path) -> list[str]:
    """Name-keyed service lookups (``services[...]``) and cog lookups (``get_cog(``) in bot/ and cogs/."""
    return [f"{relative}:{number} {text.strip()}"
            for package in ("bot", "cogs")
            for relative, _dotted, source in _modules(root, package)
            for number, text in enumerate(source.splitlines(), 1)
            if "services[" in text or "get_cog(" in text]


def test_services_are_passed_not_looked_up_by_name() -> None:
    assert lookups(ROOT) == []


NARROW = ("store", "pool", "hubs", "queue", "support")


def reaches_into_jobs(source: str) -> list[int]:
    """Lines where ``<...>jobs.<store|pool|hubs|queue|support>`` is used."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in NARROW:
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else owner.id if isinstance(owner, ast.Name) else ""
            if name == "jobs":
                lines.append(node.lineno)
    return sorted(lines)


def test_cogs_use_the_job_services_narrow_surface() -> None:
    found = [f"{relative}:{line}" for relative, _dotted, source in _modules(ROOT, "cogs")
             for line in reaches_into_jobs(source)]
    assert found == []
    assert reaches_into_jobs("x = self.jobs.store.get_job\ny = bot.jobs.queue\nz = jobs.support\nw = self.jobs.get") == [1, 2, 3]


def test_every_module_starts_with_a_docstring() -> None:
    missing = [relative for package in ("bot", "cogs") for relative, _dotted, source in _modules(ROOT, package)
               if not (ast.get_docstring(ast.parse(source)) or "").strip()]
    assert missing == []


def test_no_module_is_over_the_line_limit() -> None:
    too_long = [f"{relative}: {len(source.splitlines())} lines" for package in ("bot", "cogs")
                for relative, _dotted, source in _modules(ROOT, package) if len(source.splitlines()) > MAX_LINES]
    assert too_long == []
