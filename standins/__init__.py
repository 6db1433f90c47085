"""Test doubles for the bot: a ComfyUI test server, a Discord API stand-in and a fake clock.

``tests/`` and ``bench/`` import this package; ``bot/`` and ``cogs/`` never do (a test checks it),
and it is not shipped in the wheel (``pyproject.toml`` packages only ``bot`` and ``cogs``).
Everything here listens on 127.0.0.1 only.
"""
