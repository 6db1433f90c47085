"""Tests of the bot through the Discord stand-in."""
