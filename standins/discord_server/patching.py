"""Point discord.py at the stand-in for the duration of a test, then restore the originals.

discord.py builds REST URLs (interaction webhooks included) from ``discord.http.Route.BASE``.
The bot, an ``AutoShardedClient``, asks ``GET /gateway/bot`` for its shard count and gateway URL,
which the stand-in answers with its own; a plain ``Client`` connects to
``DiscordWebSocket.DEFAULT_GATEWAY`` without asking, and a sharded one falls back to it after a
session that cannot be resumed, so it is pointed at the stand-in too. Attachment URLs come from
the payloads (the stand-in's CDN route), so no CDN base needs changing. Reconnect back-off is made
short so tests stay fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import discord.backoff
import discord.gateway
import discord.http
import yarl


@contextlib.contextmanager
def point_discord_at(api_base: str, gateway_url: str) -> Iterator[None]:
    """Redirect discord.py's REST base and default gateway; restore them on exit."""
    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    old_backoff_init = discord.backoff.ExponentialBackoff.__init__

    def fast_backoff(self: discord.backoff.ExponentialBackoff, base: int = 1, *, integral: bool = False) -> None:
        old_backoff_init(self, base, integral=integral)
        if not integral:
            self._base = 0.05  # type: ignore[attr-defined]  # reconnect within ~0.1 s instead of seconds

    discord.http.Route.BASE = api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    discord.backoff.ExponentialBackoff.__init__ = fast_backoff  # type: ignore[method-assign]
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway
        discord.backoff.ExponentialBackoff.__init__ = old_backoff_init  # type: ignore[method-assign]
