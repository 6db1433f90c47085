"""Fixtures for the Discord tests: the stand-in (from tests.discord_server.fixtures)."""

from tests.discord_server.fixtures import discord_stand_in

__all__ = ["discord_stand_in"]
