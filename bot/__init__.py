"""comfy-animate-bot: a Discord bot that animates images on self-hosted ComfyUI servers.

Nothing happens on import: settings, logging and the Discord client are built by
``bot.cli`` when the program starts.
"""

__version__ = "0.1.0"
