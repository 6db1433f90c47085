"""What the Discord stand-in records: requests, rule violations, interactions and the world it serves.

These are plain dataclasses so tests can assert on them directly. Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000

# Interaction callback types (https://discord.com/developers/docs/interactions/receiving-and-responding)
PONG = 1
CHANNEL_MESSAGE = 4
DEFERRED_CHANNEL_MESSAGE = 5
DEFERRED_UPDATE_MESSAGE = 6
UPDATE_MESSAGE = 7
AUTOCOMPLETE_RESULT = 8
MODAL = 9

EPHEMERAL_FLAG = 64

# Bits of the permissions the interaction payloads grant by default.
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_EMBED_LINKS = 1 << 14
PERM_ATTACH_FILES = 1 << 15
PERM_READ_MESSAGE_HISTORY = 1 << 16
PERM_USE_EXTERNAL_EMOJIS = 1 << 18
PERM_USE_APPLICATION_COMMANDS = 1 << 31
PERM_SEND_MESSAGES_IN_THREADS = 1 << 38
DEFAULT_APP_PERMISSIONS = (
    PERM_VIEW_CHANNEL
    | PERM_SEND_MESSAGES
    | PERM_EMBED_LINKS
    | PERM_ATTACH_FILES
    | PERM_READ_MESSAGE_HISTORY
    | PERM_USE_EXTERNAL_EMOJIS
    | PERM_USE_APPLICATION_COMMANDS
    | PERM_SEND_MESSAGES_IN_THREADS
)


class SnowflakeFactory:
    """Makes increasing, realistic snowflakes; ``clock`` gives the current Unix time in seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._counter = 0

    def __call__(self) -> int:
        self._counter += 1
        ms = int(self._clock() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (self._counter & 0x3FFFFF)

    def for_shard(self, shard: int, shard_count: int) -> int:
        """A snowflake whose guild would be on ``shard`` of ``shard_count`` (``(id >> 22) % count``):
        its timestamp is moved at most ``shard_count - 1`` ms ahead."""
        self._counter += 1
        ms = int(self._clock() * 1000) - DISCORD_EPOCH_MS
        ms += (shard - ms) % shard_count
        return (ms << 22) | (self._counter & 0x3FFFFF)


@dataclass
class RecordedRequest:
    """One HTTP request the stand-in received (``path`` is relative to the API base for REST)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    files: list[tuple[str, str, bytes]]  # (field name, filename, bytes)
    status: int = 0
    route: str | None = None  # the matched route template, None when unhandled ("rate_limited": a 429 of the limits)
    received_at: float = 0.0  # time.monotonic() when the request arrived (before its body was read)
    answered_at: float = 0.0  # time.monotonic() when it was handled (a message stored), just before the answer


@dataclass
class Violation:
    """Something real Discord would reject (or a rule the bot must not break)."""

    kind: str  # e.g. "late_ack", "second_ack", "followup_before_ack", "empty_message", "content_too_long",
    # "embed_limit", "component_limit", "upload_too_large", "token_expired", "unknown_interaction"
    detail: str
    method: str = ""
    path: str = ""


@dataclass
class RateLimitHit:
    """A 429 the stand-in answered because a rate limit was exceeded (not an injected :class:`Fault`)."""

    method: str
    path: str
    bucket: str  # the rule's name (``interaction_webhook``, ``channel_message_create``...) or ``global``
    major: str  # the top-level resource it counts for (an interaction token, a channel id, a route)
    retry_after: float
    at: float  # time.monotonic()


@dataclass
class Fault:
    """An injected failure: answer ``status`` to requests matching ``method`` + ``pattern``."""

    method: str  # "*" for any
    pattern: str  # fnmatch pattern on the REST path, e.g. "/channels/*/messages"
    status: int
    times: int | None  # None: forever
    retry_after: float = 0.05
    body: dict[str, Any] | None = None
    with_files: bool = False  # only requests that upload files (a result, not a status edit)
    hits: int = 0


@dataclass
class Hold:
    """A held-back response: the first ``times`` REST requests matching ``method`` + ``pattern``
    wait at ``stage`` until :meth:`release`.

    ``stage="before"``: the request is held before the stand-in handles it; released with
    ``drop=True`` it is never handled and its connection is closed (it never reached Discord).
    ``stage="after"``: it is handled (the message exists) but the answer is held back;
    ``drop=True`` closes the connection instead of answering. ``held`` lists the requests held.
    """

    method: str  # "*" for any
    pattern: str  # fnmatch pattern on the REST path
    stage: str = "before"
    with_files: bool = False  # only requests that upload files
    times: int = 1
    held: list[RecordedRequest] = field(default_factory=list)
    drop: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def matches(self, method: str, path: str, has_files: bool, stage: str) -> bool:
        return (stage == self.stage and len(self.held) < self.times and not self._released.is_set()
                and (has_files or not self.with_files) and self.method in ("*", method)
                and fnmatch.fnmatchcase(path, self.pattern))

    async def pass_through(self, request: RecordedRequest) -> bool:
        """Hold ``request`` until released; False when it is to be dropped."""
        self.held.append(request)
        self._arrived.set()
        await self._released.wait()
        return not self.drop

    async def wait_held(self, timeout: float = 10.0) -> RecordedRequest:
        """Wait until a request is held; AssertionError when none comes within ``timeout``."""
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"no {self.method} {self.pattern} request reached the hold within {timeout:g} s") from None
        return self.held[0]

    def release(self, *, drop: bool = False) -> None:
        self.drop = drop
        self._released.set()


@dataclass
class Member:
    """A guild member the stand-in knows (used both in GUILD_CREATE and interaction payloads)."""

    id: int
    username: str
    roles: list[int] = field(default_factory=list)
    permissions: int = DEFAULT_APP_PERMISSIONS
    bot: bool = False

    def user_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.username.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }

    def member_payload(self, *, with_permissions: bool = False) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "user": self.user_payload(),
            "nick": None,
            "avatar": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_permissions:
            payload["permissions"] = str(self.permissions)
        return payload


@dataclass
class Channel:
    id: int
    guild_id: int | None
    name: str
    type: int = 0  # GUILD_TEXT
    nsfw: bool = False  # Discord's "age-restricted" flag

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": 0,
            "permission_overwrites": [],
            "nsfw": self.nsfw,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        return data


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0

    def payload(self, position: int) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    channels: list[Channel] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload(i) for i, r in enumerate(self.roles)],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
            "joined_at": "2024-01-01T00:00:00.000000+00:00",
            "large": False,
            "unavailable": False,
            "member_count": len(self.members),
            "voice_states": [],
            "members": [m.member_payload() for m in self.members],
            "channels": [c.payload() for c in self.channels],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "lazy": True,
        }


@dataclass
class InteractionRecord:
    """One interaction the stand-in dispatched, and everything the bot did with it.

    ``ack`` is the first callback body (``{"type": ..., "data": ...}``), ``acks`` every callback
    posted (a second one is a violation), ``followups`` the messages created through the webhook,
    ``edits`` the PATCH bodies on @original or followups, ``deleted`` the message ids deleted.
    Wait for any change with :meth:`wait_for`.
    """

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    created_at: float  # stand-in clock (seconds)
    acks: list[dict[str, Any]] = field(default_factory=list)
    ack_delay: float | None = None
    original: dict[str, Any] | None = None  # the original response message, once there is one
    followups: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    shard: int | None = None  # the gateway shard the interaction was dispatched on
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def ack(self) -> dict[str, Any] | None:
        return self.acks[0] if self.acks else None

    @property
    def ack_type(self) -> int | None:
        return self.acks[0]["type"] if self.acks else None

    @property
    def ephemeral(self) -> bool:
        """Whether the original response is ephemeral."""
        if not self.acks:
            return False
        data = self.acks[0].get("data") or {}
        return bool(int(data.get("flags") or 0) & EPHEMERAL_FLAG)

    def messages(self) -> list[dict[str, Any]]:
        """The messages a member sees for this interaction: the original response then followups."""
        out = [self.original] if self.original is not None else []
        return out + [m for m in self.followups if self.original is None or m["id"] != self.original["id"]]

    def _touch(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[[InteractionRecord], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds; AssertionError on timeout (the test failed)."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"interaction {self.id}: condition not met within {timeout} s: {self!r}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def wait_ack(self, timeout: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda r: bool(r.acks), timeout)
        assert self.ack is not None
        return self.ack

    async def wait_message(self, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the first visible answer (an immediate reply, or the message after a defer)."""

        def visible(r: InteractionRecord) -> bool:
            return r.original is not None and not _is_loading(r.original)

        await self.wait_for(visible, timeout)
        assert self.original is not None
        return self.original

    async def wait_followups(self, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_for(lambda r: len(r.followups) >= count, timeout)
        return self.followups


def _is_loading(message: dict[str, Any]) -> bool:
    return bool(int(message.get("flags") or 0) & 128)  # LOADING


def message_text(message: dict[str, Any]) -> str:
    """All the text of a message (content, embed titles, descriptions, fields, footers) for assertions."""
    parts = [message.get("content") or ""]
    for embed in message.get("embeds") or []:
        parts += [embed.get("title") or "", embed.get("description") or ""]
        for f in embed.get("fields") or []:
            parts += [f.get("name") or "", f.get("value") or ""]
        parts.append((embed.get("footer") or {}).get("text") or "")
        parts.append((embed.get("author") or {}).get("name") or "")
    return "\n".join(p for p in parts if p)
