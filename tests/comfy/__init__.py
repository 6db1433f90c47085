"""Tests of the ComfyUI client library (bot.comfy)."""
