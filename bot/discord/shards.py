"""The health of the bot's gateway shards, for ``/status``, the logs and ``/readyz``.

The bot is an ``AutoShardedBot``: discord.py asks Discord (``GET /gateway/bot``) how many shards
it needs and opens one gateway connection per shard; one shard is the common case. Each guild's
events arrive on the shard ``(guild_id >> 22) % shard_count``; interactions are answered over
REST whichever shard brought them, so nothing else in the bot depends on the shard.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import discord

__all__ = ["ShardHealth", "shard_health", "shard_summary", "shards_down"]

#: Above this many shards ``/status`` summarises instead of listing each.
LISTED_SHARDS = 8


@dataclass(frozen=True)
class ShardHealth:
    """One gateway shard: connected or not, and its heartbeat latency (None when unknown)."""

    id: int
    connected: bool
    latency_ms: float | None


def shard_health(client: discord.AutoShardedClient) -> list[ShardHealth]:
    """Every shard the client has launched, by id (empty before the first connects)."""
    found = []
    for shard_id, info in sorted(client.shards.items()):
        latency = info.latency
        known = latency is not None and math.isfinite(latency)
        found.append(ShardHealth(shard_id, connected=not info.is_closed(), latency_ms=latency * 1000 if known else None))
    return found


def shards_down(shards: Sequence[ShardHealth]) -> list[int]:
    return [s.id for s in shards if not s.connected]


def shard_summary(shards: Sequence[ShardHealth]) -> str:
    """One line: ``Discord: shard 0 connected (42 ms)``, or a count with the ones down."""
    if not shards:
        return "Discord: not connected yet"
    down = shards_down(shards)
    if len(shards) > LISTED_SHARDS:
        line = f"Discord: {len(shards) - len(down)} of {len(shards)} shards connected"
        return line + (f"; down: {', '.join(map(str, down))}" if down else "")
    parts = []
    for shard in shards:
        if not shard.connected:
            parts.append(f"shard {shard.id} disconnected")
        elif shard.latency_ms is None:
            parts.append(f"shard {shard.id} connected")
        else:
            parts.append(f"shard {shard.id} connected ({shard.latency_ms:.0f} ms)")
    return "Discord: " + ", ".join(parts)
