"""The content-safety tests through the Discord stand-in use the /animate tests' whole-bot factory."""

from tests.animate.conftest import animate_bot, discord_stand_in

__all__ = ["animate_bot", "discord_stand_in"]
