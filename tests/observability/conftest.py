"""Fixtures for the observability tests that run a whole bot: the animate tests' bot factory."""

from tests.animate.conftest import animate_bot, discord_stand_in

__all__ = ["animate_bot", "discord_stand_in"]
