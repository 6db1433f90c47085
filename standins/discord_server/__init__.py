"""A loopback Discord API stand-in that the unmodified discord.py client logs into (tests only).

Import from here: :class:`DiscordStandIn`, the record types, and :func:`point_discord_at`.
Nothing is patched on import; the pytest fixtures in ``standins.discord_server.fixtures`` do it.
"""

from standins.discord_server.patching import point_discord_at
from standins.discord_server.records import (
    DEFAULT_APP_PERMISSIONS,
    PERM_ATTACH_FILES,
    PERM_EMBED_LINKS,
    PERM_SEND_MESSAGES,
    Channel,
    Fault,
    Guild,
    Hold,
    InteractionRecord,
    Member,
    RateLimitHit,
    RecordedRequest,
    Violation,
    message_text,
)
from standins.discord_server.server import DiscordStandIn

__all__ = [
    "DEFAULT_APP_PERMISSIONS",
    "PERM_ATTACH_FILES",
    "PERM_EMBED_LINKS",
    "PERM_SEND_MESSAGES",
    "Channel",
    "DiscordStandIn",
    "Fault",
    "Guild",
    "Hold",
    "InteractionRecord",
    "Member",
    "RateLimitHit",
    "RecordedRequest",
    "Violation",
    "message_text",
    "point_discord_at",
]
