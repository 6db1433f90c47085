"""bot.safety stays a plain library: no discord, no test doubles, and no model or ONNX Runtime on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_discord_and_no_standins_in_bot_safety() -> None:
    files = sorted((ROOT / "bot" / "safety").glob("*.py"))
    assert files
    for path in files:
        assert not {"discord", "standins", "tests"} & imported_modules(path), path.name


def test_importing_bot_safety_loads_no_model() -> None:
    code = (
        "import sys, bot.safety\n"
        "heavy = sorted(m for m in ('onnxruntime', 'cv2', 'nudenet', 'discord') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""
