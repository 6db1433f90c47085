"""Fixtures for the Discord tests: the stand-in (from standins.discord_server.fixtures)."""

from standins.discord_server.fixtures import discord_stand_in

__all__ = ["discord_stand_in"]
