"""The moderation tests use the /animate tests' whole-bot factory (re-exported here)."""

from tests.animate.conftest import animate_bot, discord_stand_in

__all__ = ["animate_bot", "discord_stand_in"]
