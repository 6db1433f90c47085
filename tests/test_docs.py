"""The README and .env.example tell the truth about the settings."""

from __future__ import annotations

import re
from pathlib import Path

from bot.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def env_example_defaults() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def readme_variables() -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.MULTILINE))


def test_every_setting_is_documented_in_both_places() -> None:
    assert set(env_example_defaults()) == readme_variables()


def test_env_example_values_are_the_defaults() -> None:
    assert load_settings(env_example_defaults()) == load_settings({})


def test_every_documented_variable_is_read() -> None:
    source = (ROOT / "bot" / "settings.py").read_text(encoding="utf-8")
    for name in env_example_defaults():
        assert f'"{name}"' in source, f"{name} is documented but never read"
