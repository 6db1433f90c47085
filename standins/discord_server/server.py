"""A loopback Discord API stand-in the unmodified discord.py client logs into.

It serves the gateway (``/gateway``: hello, identify, ready, guild create, heartbeats, resume,
forced reconnect, invalid session, ``zlib-stream`` / ``zstd-stream`` compression), the REST
routes the bot uses under ``/api/v10`` (login, application info, ``GET /gateway/bot``, command
sync, interaction callbacks and webhooks, channel messages with multipart files) and a CDN route
for attachments.

Sharding: ``DiscordStandIn(shards=N)`` announces ``N`` shards in ``GET /gateway/bot`` (with its
own gateway URL, so discord.py's ``AutoShardedClient`` connects here without any patching) and
expects one IDENTIFY per shard (``"shard": [id, N]``; a wrong count is closed with 4011
"Sharding required", a shard id out of range with 4010 "Invalid shard"). Each shard's READY lists
only its guilds, and every guild's events (its GUILD_CREATE, its interactions) go out on the
shard Discord would use, ``(guild_id >> 22) % N``; direct messages on shard 0. :meth:`add_guild`
makes a guild on a chosen shard; :attr:`InteractionRecord.shard` says where each interaction
went. :attr:`ready` is set once every shard has had its READY. Tests drive it with :meth:`DiscordStandIn.slash`, :meth:`context_menu_message`
and :meth:`click`, and assert on what it recorded: requests, violations of Discord's rules,
and per-interaction records. Faults (429, any status) can be injected per route, and a
chosen request can be held back until released (:meth:`DiscordStandIn.hold`), e.g. to stop
a bot process while it uploads a result.

Discord's rate limits are enforced by default (:mod:`standins.discord_server.ratelimits`; the
numbers are in ``standins/discord_server/README.md``): every REST answer carries the
``X-RateLimit-*`` headers of its bucket, and a request over a bucket or over the global limit is
answered 429 with ``retry_after``, as Discord does, and recorded in
:attr:`DiscordStandIn.rate_limit_hits`, so a test or benchmark can assert that none happened.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import secrets
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

from standins.discord_server.ratelimits import Decision, RateLimiter
from standins.discord_server.records import (
    CHANNEL_MESSAGE,
    DEFAULT_APP_PERMISSIONS,
    DEFERRED_CHANNEL_MESSAGE,
    DEFERRED_UPDATE_MESSAGE,
    EPHEMERAL_FLAG,
    MODAL,
    UPDATE_MESSAGE,
    Channel,
    Fault,
    Guild,
    Hold,
    InteractionRecord,
    Member,
    RateLimitHit,
    RecordedRequest,
    Role,
    SnowflakeFactory,
    Violation,
)

try:  # discord.py asks for zstd-stream when zstandard (or Python 3.14's compression.zstd) is importable
    import zstandard  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    zstandard = None
try:
    from compression import zstd as stdlib_zstd  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python < 3.14
    stdlib_zstd = None
ZSTD_AVAILABLE = zstandard is not None or stdlib_zstd is not None

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
ACK_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60.0
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
HEARTBEAT_INTERVAL_MS = 41250

# Gateway opcodes
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_RESUME, OP_RECONNECT = 0, 1, 2, 6, 7
OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 9, 10, 11

# Discord's limits (https://discord.com/developers/docs/resources/message#create-message)
MAX_CONTENT = 2000
MAX_EMBEDS = 10
EMBED_TOTAL = 6000
EMBED_LIMITS = {"title": 256, "description": 4096}
MAX_FIELDS = 25
FIELD_NAME, FIELD_VALUE, FOOTER_TEXT, AUTHOR_NAME = 256, 1024, 2048, 256
MAX_ACTION_ROWS, MAX_ROW_BUTTONS, MAX_CUSTOM_ID, MAX_LABEL, MAX_SELECT_OPTIONS = 5, 5, 100, 80, 25


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON response with Content-Type exactly ``application/json`` (discord.py needs that)."""
    response = web.Response(body=_dumps(data).encode(), status=status, headers=dict(headers or {}))
    response.headers["Content-Type"] = "application/json"
    return response


def error_response(status: int, code: int, message: str) -> web.Response:
    return json_response({"message": message, "code": code}, status=status)


def _now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


@dataclass
class _Session:
    """One gateway session (identify -> ready), kept for resume."""

    id: str
    token: str
    events: list[dict[str, Any]]  # every dispatch sent, for replay on resume
    seq: int = 0
    shard: int = 0


class _GatewayConnection:
    """One websocket, with its compressor."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.compress = compress
        self.session: _Session | None = None
        self._zlib = zlib.compressobj() if compress == "zlib-stream" else None
        self._zstd: Any = None
        self._stdlib_zstd: Any = None
        if compress == "zstd-stream" and zstandard is not None:
            self._zstd = zstandard.ZstdCompressor().compressobj()
        elif compress == "zstd-stream" and stdlib_zstd is not None:
            self._stdlib_zstd = stdlib_zstd.ZstdCompressor()

    async def send(self, payload: dict[str, Any]) -> None:
        text = _dumps(payload)
        if self._zlib is not None:
            data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
            await self.ws.send_bytes(data)
        elif self._zstd is not None:
            data = self._zstd.compress(text.encode()) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            await self.ws.send_bytes(data)
        elif self._stdlib_zstd is not None:
            data = self._stdlib_zstd.compress(text.encode(), mode=stdlib_zstd.ZstdCompressor.FLUSH_BLOCK)
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(text)


class DiscordStandIn:
    """The stand-in server. ``await start()``, then point discord.py at :attr:`api_base` / :attr:`gateway_url`.

    A default world exists from construction: :attr:`guild` (``Test Guild``) with :attr:`channel`
    (``#general``), a member :attr:`user` (``alice``), the bot user :attr:`bot_user` and the
    application id :attr:`application_id`. The bot's token is :attr:`token`.
    """

    def __init__(self, *, token: str | None = None, upload_limit: int = DEFAULT_UPLOAD_LIMIT,
                 keep_file_bytes: bool = True, shards: int = 1,
                 rate_limits: bool = True) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self.token = token or f"standin.{secrets.token_urlsafe(24)}"
        self.shard_count = shards  # what GET /gateway/bot announces
        self.upload_limit = upload_limit
        # Discord's rate limits (None: off, no X-RateLimit headers); every 429 they cause is recorded
        self.rate_limiter: RateLimiter | None = RateLimiter() if rate_limits else None
        self.rate_limit_hits: list[RateLimitHit] = []
        # False (long benchmark runs): files the bot uploads are checked, then kept by name and
        # size only (RecordedRequest.files holds b"", the CDN serves b"").
        self.keep_file_bytes = keep_file_bytes
        self.clock_offset = 0.0  # seconds added to the stand-in's clock (token expiry, ack deadline)
        self.cdn_delay = 0.0  # seconds the CDN waits before serving an attachment (a slow download)
        self.snowflake = SnowflakeFactory(self.now)
        self.requests: list[RecordedRequest] = []
        self.violations: list[Violation] = []
        self.allowed_violations: set[str] = set()
        self.faults: list[Fault] = []
        self.holds: list[Hold] = []
        self.interactions: dict[int, InteractionRecord] = {}
        self._by_token: dict[str, InteractionRecord] = {}
        self.messages: dict[int, dict[str, Any]] = {}  # every message created, by id (deleted ones removed)
        self.attachments: dict[str, tuple[bytes, str]] = {}  # CDN path -> (bytes, content type)
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.dm_channels: dict[int, Channel] = {}  # user id -> the bot's DM channel with them
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []  # (guild id or None, payload)
        self.identifies = 0
        self.identified_shards: list[tuple[int, int]] = []  # (shard id, shard count) of each IDENTIFY
        self.resumes = 0
        self.gateway_compressions: list[str | None] = []
        self.ready = asyncio.Event()  # set on each READY sent (clear it to wait for the next one)
        self._sessions: dict[str, _Session] = {}
        self._connections: list[_GatewayConnection] = []
        self._expired_tokens: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

        self.application_id = self.snowflake()
        self.bot_user = Member(id=self.application_id, username="animate-bot", bot=True)
        owner = Member(id=self.snowflake(), username="owner")
        guild_id = self.snowflake()
        self.guild = Guild(id=guild_id, name="Test Guild", owner_id=owner.id)
        self.guild.roles.append(Role(id=guild_id, name="@everyone", permissions=DEFAULT_APP_PERMISSIONS))
        self.channel = Channel(id=self.snowflake(), guild_id=guild_id, name="general")
        self.guild.channels.append(self.channel)
        self.user = Member(id=self.snowflake(), username="alice")
        self.guild.members += [owner, self.user, Member(id=self.bot_user.id, username="animate-bot", bot=True)]
        self.guilds: list[Guild] = [self.guild]

    # ------------------------------------------------------------------ lifecycle

    def now(self) -> float:
        """The stand-in's clock: Unix time plus :attr:`clock_offset`."""
        return time.time() + self.clock_offset

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` must be set to."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self, port: int = 0) -> None:
        app = web.Application(client_max_size=1024**3)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume-gateway", self._gateway)
        app.router.add_get("/cdn/{path:.*}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{path:.*}", self._rest)
        app.router.add_route("*", "/{path:.*}", self._unhandled_outside_api)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for hold in self.holds:
            hold.release(drop=True)  # nothing stays held past the test
        for conn in list(self._connections):
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ world set-up

    def shard_of(self, guild_id: int | None) -> int:
        """The shard a guild's events go out on (direct messages: shard 0)."""
        return 0 if guild_id is None else (guild_id >> 22) % self.shard_count

    def add_guild(self, name: str, *, shard: int | None = None) -> Guild:
        """Another guild, on ``shard`` (default: wherever its id falls), with ``#general``, the
        default member :attr:`user` and the bot in it. Add guilds before the bot connects."""
        if shard is not None and not 0 <= shard < self.shard_count:
            raise ValueError(f"shard {shard} is outside 0..{self.shard_count - 1}")
        guild_id = self.snowflake() if shard is None else self.snowflake.for_shard(shard, self.shard_count)
        guild = Guild(id=guild_id, name=name, owner_id=self.guild.owner_id)
        guild.roles.append(Role(id=guild_id, name="@everyone", permissions=DEFAULT_APP_PERMISSIONS))
        guild.channels.append(Channel(id=self.snowflake(), guild_id=guild_id, name="general"))
        owner = self.guild.members[0]
        guild.members += [owner, self.user, Member(id=self.bot_user.id, username="animate-bot", bot=True)]
        self.guilds.append(guild)
        return guild

    def add_member(self, username: str, *, permissions: int = DEFAULT_APP_PERMISSIONS, guild: Guild | None = None) -> Member:
        member = Member(id=self.snowflake(), username=username, permissions=permissions)
        (guild or self.guild).members.append(member)
        return member

    async def add_channel(self, name: str, *, nsfw: bool = False, guild: Guild | None = None) -> Channel:
        """A new text channel (``nsfw``: age-restricted); a connected bot is sent CHANNEL_CREATE."""
        guild = guild or self.guild
        channel = Channel(id=self.snowflake(), guild_id=guild.id, name=name, nsfw=nsfw)
        guild.channels.append(channel)
        await self._channel_event("CHANNEL_CREATE", channel)
        return channel

    async def set_nsfw(self, channel: Channel, nsfw: bool) -> None:
        """Mark a channel age-restricted or not; a connected bot is sent CHANNEL_UPDATE."""
        channel.nsfw = nsfw
        await self._channel_event("CHANNEL_UPDATE", channel)

    async def _channel_event(self, event: str, channel: Channel) -> None:
        if any(c.session is not None and not c.ws.closed for c in self._connections):
            await self.dispatch_event(event, channel.payload())

    def add_attachment(self, filename: str, data: bytes, content_type: str, *, channel: Channel | None = None,
                       width: int | None = None, height: int | None = None) -> dict[str, Any]:
        """Register bytes served by the CDN route; returns the attachment payload (url, size, content_type)."""
        attachment_id = self.snowflake()
        channel_id = (channel or self.channel).id
        path = f"attachments/{channel_id}/{attachment_id}/{filename}"
        self.attachments[path] = (data, content_type)
        url = f"{self.base_url}/cdn/{path}"
        payload: dict[str, Any] = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if width is not None and height is not None:
            payload |= {"width": width, "height": height}
        return payload

    def add_fault(self, method: str, pattern: str, status: int, *, times: int | None = 1,
                  retry_after: float = 0.05, body: dict[str, Any] | None = None, with_files: bool = False) -> Fault:
        """Answer ``status`` to REST requests matching ``method`` ("*" = any) and the fnmatch ``pattern``.

        ``pattern`` is matched against the path under ``/api/v10``, e.g. ``/channels/*/messages``
        or ``/interactions/*/callback``. A 429 carries ``Via`` and ``retry_after`` (global false)
        so discord.py retries it. ``times=None`` keeps the fault forever. ``with_files``: only
        requests that upload files (e.g. a 413 for the result, not for status edits).
        """
        fault = Fault(method=method.upper(), pattern=pattern, status=status, times=times,
                      retry_after=retry_after, body=body, with_files=with_files)
        self.faults.append(fault)
        return fault

    def hold(self, method: str, pattern: str, *, stage: str = "before", with_files: bool = False,
             times: int = 1) -> Hold:
        """Hold back the next ``times`` REST requests matching ``method`` ("*" = any) and the fnmatch
        ``pattern`` (path under ``/api/v10``) until ``release()``: before they are handled, or
        (``stage="after"``) handled but not answered. See :class:`Hold`. Attachment downloads from
        the CDN can be held too (``"GET", "/cdn/*"``, stage ``before``)."""
        if stage not in ("before", "after"):
            raise ValueError("stage must be 'before' or 'after'")
        hold = Hold(method=method.upper(), pattern=pattern, stage=stage, with_files=with_files, times=times)
        self.holds.append(hold)
        return hold

    def expire_tokens(self) -> None:
        """Every interaction token issued so far stops working (as 15 minutes later)."""
        self._expired_tokens.update(r.token for r in self.interactions.values())

    def allow_violation(self, *kinds: str) -> None:
        """Mark violation kinds as expected by the test (the fixture then ignores them)."""
        self.allowed_violations.update(kinds)

    def unexpected_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.kind not in self.allowed_violations]

    def unhandled_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route is None]

    def requests_to(self, method: str, pattern: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and fnmatch.fnmatchcase(r.path, pattern)]

    def channel_messages(self, channel: Channel | None = None) -> list[dict[str, Any]]:
        """Non-ephemeral messages currently in a channel, oldest first."""
        cid = str((channel or self.channel).id)
        return [m for m in self.messages.values() if m["channel_id"] == cid and not (m.get("flags", 0) & EPHEMERAL_FLAG)]

    def _violate(self, kind: str, detail: str, request: web.Request | None = None) -> None:
        v = Violation(kind=kind, detail=detail, method=request.method if request else "",
                      path=request.path if request else "")
        log.warning("Discord stand-in: violation %s: %s", kind, detail)
        self.violations.append(v)

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        if compress == "zstd-stream" and not ZSTD_AVAILABLE:
            await ws.close(code=4000, message=b"zstd-stream not supported")
            return ws
        self.gateway_compressions.append(compress)
        conn = _GatewayConnection(ws, compress)
        self._connections.append(conn)
        try:
            await conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._gateway_message(conn, json.loads(msg.data))
        finally:
            self._connections.remove(conn)
        return ws

    async def _gateway_message(self, conn: _GatewayConnection, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == OP_HEARTBEAT:
            await conn.send({"op": OP_HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == OP_IDENTIFY:
            if data.get("token") != self.token:
                await conn.ws.close(code=4004, message=b"Authentication failed.")
                return
            shard_id, shard_count = (data.get("shard") or [0, 1])[:2]
            if shard_count != self.shard_count:
                await conn.ws.close(code=4011, message=b"Sharding required.")
                return
            if not 0 <= shard_id < shard_count:
                await conn.ws.close(code=4010, message=b"Invalid shard.")
                return
            self.identifies += 1
            self.identified_shards.append((shard_id, shard_count))
            session = _Session(id=secrets.token_hex(16), token=data["token"], events=[], shard=shard_id)
            self._sessions[session.id] = session
            conn.session = session
            guilds = [g for g in self.guilds if self.shard_of(g.id) == shard_id]
            await self._dispatch(conn, "READY", {
                "v": 10,
                "user": self.bot_user.user_payload() | {"verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "shard": [shard_id, shard_count],
                "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume-gateway",
                "session_type": "normal",
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "geo_ordered_rtc_regions": [],
                "guild_join_requests": [],
                "user_settings": {},
                "_trace": ["stand-in"],
            })
            for guild in guilds:
                await self._dispatch(conn, "GUILD_CREATE", guild.payload())
            if all(self._shard_connection(shard) is not None for shard in range(self.shard_count)):
                self.ready.set()
        elif op == OP_RESUME:
            session = self._sessions.get(data.get("session_id", ""))
            if session is None or data.get("token") != session.token:
                await conn.send({"op": OP_INVALID_SESSION, "d": False, "s": None, "t": None})
                return
            self.resumes += 1
            conn.session = session
            missed = [e for e in session.events if e["s"] > int(data.get("seq") or 0)]
            for event in missed:
                await conn.send(event)
            await self._dispatch(conn, "RESUMED", {"_trace": ["stand-in"]})
        # presence updates, request guild members, voice: ignored like a quiet guild would

    async def _dispatch(self, conn: _GatewayConnection, event: str, data: dict[str, Any]) -> None:
        assert conn.session is not None
        conn.session.seq += 1
        payload = {"op": OP_DISPATCH, "t": event, "s": conn.session.seq, "d": data}
        conn.session.events.append(payload)
        await conn.send(payload)

    def _shard_connection(self, shard: int) -> _GatewayConnection | None:
        """The newest live, identified connection of ``shard``."""
        for conn in reversed(self._connections):
            if conn.session is not None and conn.session.shard == shard and not conn.ws.closed:
                return conn
        return None

    def _live_connection(self, shard: int | None = None) -> _GatewayConnection:
        """The connection of ``shard``, or (None) the newest live one of any shard."""
        if shard is not None:
            found = self._shard_connection(shard)
            if found is None:
                raise AssertionError(f"no bot is connected to the stand-in gateway on shard {shard}")
            return found
        for conn in reversed(self._connections):
            if conn.session is not None and not conn.ws.closed:
                return conn
        raise AssertionError("no bot is connected to the stand-in gateway")

    async def dispatch_event(self, event: str, data: dict[str, Any], *, shard: int | None = None) -> None:
        """Send any gateway event to the connected bot, on ``shard`` (default: the shard of the
        event's ``guild_id``, shard 0 without one)."""
        if shard is None:
            guild_id = data.get("guild_id")
            shard = self.shard_of(int(guild_id) if guild_id else None)
        await self._dispatch(self._live_connection(shard), event, data)

    async def force_reconnect(self, *, shard: int | None = None) -> None:
        """Send op 7 RECONNECT: discord.py reconnects to resume_gateway_url and RESUMEs."""
        await self._live_connection(shard).send({"op": OP_RECONNECT, "d": None, "s": None, "t": None})

    async def invalidate_session(self, *, resumable: bool = False, shard: int | None = None) -> None:
        """Send op 9 INVALID_SESSION: with ``resumable=False`` discord.py identifies again on DEFAULT_GATEWAY."""
        conn = self._live_connection(shard)
        if not resumable and conn.session is not None:
            self._sessions.pop(conn.session.id, None)
        await conn.send({"op": OP_INVALID_SESSION, "d": resumable, "s": None, "t": None})

    async def drop_connection(self, *, shard: int | None = None) -> None:
        """Close the gateway socket abnormally (as a network failure would)."""
        await self._live_connection(shard).ws.close(code=4000, message=b"stand-in dropped the connection")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.ready.wait(), timeout)

    # ------------------------------------------------------------------ driving the bot

    def dm_channel(self, user: Member | None = None) -> Channel:
        """The bot's direct-message channel with ``user`` (created on first use)."""
        user = user or self.user
        channel = self.dm_channels.get(user.id)
        if channel is None:
            channel = self.dm_channels[user.id] = Channel(id=self.snowflake(), guild_id=None, name="", type=1)
        return channel

    def known_channel(self, channel_id: str | int) -> Channel | None:
        """A guild channel or a DM channel the stand-in serves."""
        for channel in [*(c for g in self.guilds for c in g.channels), *self.dm_channels.values()]:
            if str(channel.id) == str(channel_id):
                return channel
        return None

    def _interaction_base(self, itype: int, guild: Guild | None, channel: Channel | None, user: Member | None,
                          app_permissions: int | None, *, dm: bool = False) -> dict[str, Any]:
        user = user or self.user
        if dm:  # in a direct message with the bot: no guild, no member, the user's DM channel
            guild = None
            channel = self.dm_channel(user)
        else:
            guild = guild if guild is not None else self.guild
            channel = channel or self.channel
        interaction_id = self.snowflake()
        token = f"aW50ZXJhY3Rpb24{secrets.token_urlsafe(48)}"
        data: dict[str, Any] = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": itype,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "attachment_size_limit": self.upload_limit,
            "app_permissions": str(DEFAULT_APP_PERMISSIONS if app_permissions is None else app_permissions),
            "channel_id": str(channel.id),
            "channel": channel.payload() if guild else {"id": str(channel.id), "type": 1, "flags": 0,
                                                          "last_message_id": None,
                                                          "recipients": [user.user_payload()]},
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)} if guild else {"1": str(user.id)},
            "context": 0 if guild else 1,
        }
        if guild is not None:
            data |= {"guild_id": str(guild.id), "guild_locale": "en-US",
                     "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                     "member": user.member_payload(with_permissions=True)}
        else:
            data["user"] = user.user_payload()
        return data

    def _record(self, payload: dict[str, Any]) -> InteractionRecord:
        record = InteractionRecord(id=int(payload["id"]), token=payload["token"], type=payload["type"],
                                   payload=payload, created_at=self.now())
        self.interactions[record.id] = record
        self._by_token[record.token] = record
        return record

    def find_command(self, name: str, guild: Guild | None = None, ctype: int = 1) -> dict[str, Any]:
        """The synced command called ``name`` (guild commands first, then global)."""
        candidates = (self.guild_commands.get(guild.id, []) if guild else []) + self.global_commands
        for cmd in candidates:
            if cmd["name"] == name and cmd.get("type", 1) == ctype:
                return cmd
        raise AssertionError(f"command {name!r} (type {ctype}) was never synced to the stand-in")

    async def slash(self, guild: Guild | None, channel: Channel | None, user: Member | None, name: str, *,
                    options: Mapping[str, Any] | None = None,
                    attachments: Mapping[str, tuple[str, bytes, str] | dict[str, Any]] | None = None,
                    app_permissions: int | None = None, focused: str | None = None,
                    dm: bool = False) -> InteractionRecord:
        """Dispatch a slash command as ``user``; ``name`` may be ``"group sub"``. ``dm``: in the
        user's direct messages with the bot (only global commands exist there).

        With ``focused`` (an option name) it is an autocomplete interaction instead (type 4)
        for that option, whose current text is its value in ``options``; the bot's answer is
        in ``record.acks[0]["data"]["choices"]``.

        Option types come from the synced command. ``attachments`` maps option name to
        ``(filename, bytes, content_type)`` (registered on the CDN) or an attachment payload
        from :meth:`add_attachment`. ``None`` for guild/channel/user means the defaults.
        """
        guild = None if dm else (self.guild if guild is None else guild)
        parts = name.split()
        command = self.find_command(parts[0], guild)
        target_options = command.get("options", [])
        resolved: dict[str, Any] = {}
        values: list[dict[str, Any]] = []
        for opt_name, value in (options or {}).items():
            spec = _option_spec(target_options, parts[1:], opt_name)
            values.append({"name": opt_name, "type": spec["type"], "value": value})
            if opt_name == focused:
                values[-1]["focused"] = True
        for opt_name, att in (attachments or {}).items():
            spec = _option_spec(target_options, parts[1:], opt_name)
            payload = self.add_attachment(*att, channel=channel) if isinstance(att, tuple) else att
            resolved.setdefault("attachments", {})[payload["id"]] = payload
            values.append({"name": opt_name, "type": spec["type"], "value": payload["id"]})
        for sub in reversed(parts[1:]):
            sub_type = 1 if sub == parts[-1] else 2
            values = [{"name": sub, "type": sub_type, "options": values}]
        data: dict[str, Any] = {"id": command["id"], "name": parts[0], "type": 1, "options": values}
        if resolved:
            data["resolved"] = resolved
        if command.get("guild_id"):
            data["guild_id"] = command["guild_id"]
        itype = 4 if focused is not None else 2
        payload = self._interaction_base(itype, guild, channel, user, app_permissions, dm=dm) | {"data": data}
        return await self._send_interaction(payload)

    async def context_menu_message(self, guild: Guild | None, channel: Channel | None, user: Member | None,
                                   name: str, message: dict[str, Any], *,
                                   app_permissions: int | None = None) -> InteractionRecord:
        """Dispatch a message context menu command on ``message`` (a message payload)."""
        guild = self.guild if guild is None else guild
        command = self.find_command(name, guild, ctype=3)
        data = {"id": command["id"], "name": name, "type": 3, "target_id": message["id"],
                "resolved": {"messages": {message["id"]: message}}}
        payload = self._interaction_base(2, guild, channel, user, app_permissions) | {"data": data}
        return await self._send_interaction(payload)

    async def click(self, message: dict[str, Any], custom_id: str, user: Member | None = None, *,
                    component_type: int = 2, values: list[str] | None = None,
                    app_permissions: int | None = None) -> InteractionRecord:
        """Click a button (or pick select ``values``) on a message the bot sent."""
        found = _find_component(message.get("components") or [], custom_id)
        if found is None:
            raise AssertionError(f"message {message['id']} has no component {custom_id!r}")
        channel = next((c for g in self.guilds for c in g.channels if str(c.id) == message["channel_id"]), self.channel)
        guild = next((g for g in self.guilds if channel in g.channels), None)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        payload = self._interaction_base(3, guild, channel, user, app_permissions) | {"data": data, "message": message}
        return await self._send_interaction(payload)

    async def _send_interaction(self, payload: dict[str, Any]) -> InteractionRecord:
        record = self._record(payload)
        guild_id = payload.get("guild_id")
        record.shard = self.shard_of(int(guild_id) if guild_id else None)
        await self.dispatch_event("INTERACTION_CREATE", payload, shard=record.shard)
        return record

    # ------------------------------------------------------------------ REST

    async def _unhandled_outside_api(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query), None, [], 404))
        return error_response(404, 0, "404: Not Found")

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        rec = RecordedRequest(request.method, "/cdn/" + path, dict(request.query), None, [], 200, route="cdn",
                              received_at=time.monotonic())
        self.requests.append(rec)
        if path not in self.attachments:
            rec.status = 404
            return web.Response(status=404, text="Not Found")
        if not await self._pass_holds(request, rec.path, False, "before", rec):
            return _dropped(request, rec)
        if self.cdn_delay:
            await asyncio.sleep(self.cdn_delay)
        body, content_type = self.attachments[path]
        response = web.Response(body=body, headers={"Content-Type": content_type})
        await response.prepare(request)
        await response.write_eof()  # answered_at: the last byte went to the socket
        rec.answered_at = time.monotonic()
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, list[tuple[str, str, bytes]]]:
        files: list[tuple[str, str, bytes]] = []
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":  # type: ignore[union-attr]
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                else:
                    files.append((part.name or "", part.filename or "", bytes(await part.read())))  # type: ignore[union-attr]
            return payload, files
        raw = await request.read()
        if not raw:
            return None, files
        return json.loads(raw), files

    def _fault_for(self, method: str, path: str, has_files: bool) -> Fault | None:
        for fault in self.faults:
            if fault.with_files and not has_files:
                continue
            if fault.method in ("*", method) and fnmatch.fnmatchcase(path, fault.pattern):
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                fault.hits += 1
                return fault
        return None

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        received = time.monotonic()
        path = "/" + request.match_info["path"]
        decision = self._rate_limit(request.method, path, received)  # as it arrives, before its body is read
        body, files = await self._read_body(request)
        kept = files if self.keep_file_bytes else [(name, filename, b"") for name, filename, _ in files]
        rec = RecordedRequest(request.method, path, dict(request.query), body, kept, received_at=received)
        self.requests.append(rec)
        if decision is not None and not decision.allowed:
            rec.route = "rate_limited"
            rec.status = 429
            rec.answered_at = time.monotonic()
            return json_response(decision.body(), 429, decision.headers())
        fault = self._fault_for(request.method, path, bool(files))
        if fault is not None:
            rec.route = "fault"
            rec.status = fault.status
            rec.answered_at = time.monotonic()
            if fault.status == 429:
                data = fault.body or {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                                      "global": False}
                headers = (decision.headers() if decision is not None else {}) | {
                    "Via": "1.1 google", "Retry-After": str(max(1, int(fault.retry_after))), "X-RateLimit-Scope": "user"}
                return json_response(data, 429, headers)
            response = json_response(fault.body or {"message": f"{fault.status}: injected", "code": 0}, fault.status)
            return _with_rate_limit_headers(response, decision)
        if not await self._pass_holds(request, path, bool(files), "before", rec):
            return _dropped(request, rec)
        response = await self._route(request, path, body, files, rec)
        rec.status = response.status
        rec.answered_at = time.monotonic()
        if not await self._pass_holds(request, path, bool(files), "after", rec):
            return _dropped(request, rec)
        return _with_rate_limit_headers(response, decision)

    def _rate_limit(self, method: str, path: str, now: float) -> Decision | None:
        """Take a token for the request from its bucket (and the global limit); a refusal is recorded."""
        if self.rate_limiter is None:
            return None
        decision = self.rate_limiter.take(method, path, str(self.application_id))
        if not decision.allowed:
            bucket = "global" if decision.is_global else decision.rule.name
            self.rate_limit_hits.append(RateLimitHit(method=method, path=path, bucket=bucket, major=decision.major,
                                                     retry_after=decision.retry_after, at=now))
            log.warning("Discord stand-in: 429 on %s %s (%s bucket, retry after %.3f s)", method, path, bucket,
                        decision.retry_after)
        return decision

    async def _pass_holds(self, request: web.Request, path: str, has_files: bool, stage: str,
                          rec: RecordedRequest) -> bool:
        hold = next((h for h in self.holds if h.matches(request.method, path, has_files, stage)), None)
        return True if hold is None else await hold.pass_through(rec)

    async def _route(self, request: web.Request, path: str, body: Any, files: list[tuple[str, str, bytes]],
                     rec: RecordedRequest) -> web.StreamResponse:
        parts = path.strip("/").split("/")
        method = request.method
        app = str(self.application_id)

        def route(name: str) -> None:
            rec.route = name

        if parts[:1] == ["interactions"] and len(parts) == 4 and parts[3] == "callback" and method == "POST":
            route("interaction_callback")
            return self._interaction_callback(request, int(parts[1]), parts[2], body, files)
        if parts[:1] == ["webhooks"] and len(parts) >= 3 and parts[1] == app:
            token = parts[2]
            if len(parts) == 3 and method == "POST":
                route("webhook_execute")
                return self._webhook_execute(request, token, body, files)
            if len(parts) == 5 and parts[3] == "messages" and method in ("GET", "PATCH", "DELETE"):
                route("webhook_message")
                return self._webhook_message(request, token, parts[4], body, files)
        if self._bot_auth(request) is not None:
            route("unauthorized")
            return self._bot_auth(request)  # type: ignore[return-value]
        if parts == ["gateway", "bot"] and method == "GET":
            route("gateway_bot")
            return json_response(self._gateway_bot_payload())
        if parts == ["users", "@me"] and method == "GET":
            route("users_me")
            return json_response(self.bot_user.user_payload() | {"verified": True, "mfa_enabled": False, "flags": 0})
        if parts == ["oauth2", "applications", "@me"] and method == "GET":
            route("application_info")
            return json_response(self._application_payload())
        if parts[:1] == ["applications"] and len(parts) >= 3 and parts[1] == app:
            if parts[2:] == ["commands"] and method in ("GET", "PUT"):
                route("global_commands")
                return self._commands(None, method, body)
            if len(parts) == 5 and parts[2] == "guilds" and parts[4] == "commands" and method in ("GET", "PUT"):
                route("guild_commands")
                return self._commands(int(parts[3]), method, body)
        if parts[:1] == ["channels"] and len(parts) >= 3 and parts[2] == "messages":
            channel_id = parts[1]
            if len(parts) == 3 and method == "POST":
                route("channel_message_create")
                return self._channel_message_create(request, channel_id, body, files)
            if len(parts) == 3 and method == "GET":
                route("channel_history")
                return self._channel_history(request, channel_id)
            if len(parts) == 4 and method in ("GET", "PATCH", "DELETE"):
                route("channel_message")
                return self._channel_message(request, channel_id, parts[3], body, files)
        return error_response(404, 0, "404: Not Found")  # rec.route stays None: an unhandled route

    def _bot_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bot {self.token}":
            return error_response(401, 0, "401: Unauthorized")
        return None

    def _gateway_bot_payload(self) -> dict[str, Any]:
        """``GET /gateway/bot``: this stand-in's gateway URL and how many shards to open."""
        return {
            "url": self.gateway_url,
            "shards": self.shard_count,
            "session_start_limit": {"total": 1000, "remaining": 1000 - self.identifies, "reset_after": 86_400_000,
                                    "max_concurrency": 1},
        }

    def _application_payload(self) -> dict[str, Any]:
        owner = self.guild.members[0]
        return {
            "id": str(self.application_id),
            "name": "Animate",
            "icon": None,
            "description": "Animates images",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": self.bot_user.user_payload(),
            "owner": owner.user_payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "interactions_endpoint_url": None,
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(self.guilds),
            "redirect_uris": [],
            "tags": [],
        }

    def _commands(self, guild_id: int | None, method: str, body: Any) -> web.Response:
        if method == "GET":
            return json_response(self.global_commands if guild_id is None else self.guild_commands.get(guild_id, []))
        stored = []
        existing = {(c["name"], c.get("type", 1)): c for c in
                    (self.global_commands if guild_id is None else self.guild_commands.get(guild_id, []))}
        for cmd in body or []:
            old = existing.get((cmd["name"], cmd.get("type", 1)))
            item = dict(cmd) | {
                "id": old["id"] if old else str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": cmd.get("type", 1),
                "default_member_permissions": cmd.get("default_member_permissions"),
                "dm_permission": cmd.get("dm_permission", True),
                "nsfw": cmd.get("nsfw", False),
                "description": cmd.get("description", ""),
            }
            if guild_id is not None:
                item["guild_id"] = str(guild_id)
            stored.append(item)
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        self.command_syncs.append((guild_id, body or []))
        return json_response(stored)

    # -- interactions

    def _interaction_for_token(self, token: str) -> InteractionRecord | None:
        return self._by_token.get(token)

    def _expired(self, record: InteractionRecord) -> bool:
        return record.token in self._expired_tokens or self.now() - record.created_at > TOKEN_LIFETIME

    def _interaction_callback(self, request: web.Request, interaction_id: int, token: str, body: Any,
                              files: list[tuple[str, str, bytes]]) -> web.Response:
        record = self.interactions.get(interaction_id)
        if record is None or record.token != token:
            self._violate("unknown_interaction", f"callback for unknown interaction {interaction_id}", request)
            return error_response(404, 10062, "Unknown interaction")
        elapsed = self.now() - record.created_at
        if self._expired(record) or elapsed > ACK_DEADLINE:
            self._violate("late_ack", f"interaction {interaction_id} acknowledged after {elapsed:.2f} s", request)
            return error_response(404, 10062, "Unknown interaction")
        if record.acks:
            self._violate("second_ack", f"interaction {interaction_id} acknowledged twice", request)
            return error_response(400, 40060, "Interaction has already been acknowledged.")
        ctype = int((body or {}).get("type", 0))
        data = (body or {}).get("data") or {}
        if ctype == CHANNEL_MESSAGE or ctype == UPDATE_MESSAGE:
            problem = self._check_message(request, data, files, creating=ctype == CHANNEL_MESSAGE)
            if problem is not None:
                return problem
        record.acks.append(body)
        record.ack_delay = elapsed
        channel_id = record.payload["channel_id"]
        interaction_meta = {"id": str(record.id), "type": record.type,
                            "response_message_loading": ctype == DEFERRED_CHANNEL_MESSAGE,
                            "response_message_ephemeral": bool(int(data.get("flags") or 0) & EPHEMERAL_FLAG)}
        resource: dict[str, Any] = {"type": ctype}
        if ctype == CHANNEL_MESSAGE:
            message = self._new_message(channel_id, data, files, interaction=record)
            record.original = message
            resource["message"] = message
            interaction_meta["response_message_id"] = message["id"]
        elif ctype == DEFERRED_CHANNEL_MESSAGE:
            flags = int(data.get("flags") or 0) | 128
            message = self._new_message(channel_id, {"content": "", "flags": flags}, [], interaction=record)
            record.original = message
            interaction_meta["response_message_id"] = message["id"]
            resource["message"] = message
        elif ctype in (UPDATE_MESSAGE, DEFERRED_UPDATE_MESSAGE):
            target = record.payload.get("message")
            if target is None:
                self._violate("bad_callback", f"callback type {ctype} on an interaction without a message", request)
                return error_response(400, 50035, "Invalid Form Body")
            stored = self.messages.get(int(target["id"]), dict(target))
            if ctype == UPDATE_MESSAGE:
                stored = self._apply_edit(stored, data, files)
                record.edits.append(data)
            record.original = stored
            interaction_meta["response_message_id"] = stored["id"]
            resource["message"] = stored
        elif ctype != MODAL and ctype not in (1, 8, 10, 12):
            self._violate("bad_callback", f"unknown callback type {ctype}", request)
            return error_response(400, 50035, "Invalid Form Body")
        record._touch()
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response({"interaction": interaction_meta, "resource": resource})
        return web.Response(status=204)

    def _webhook_record(self, request: web.Request, token: str) -> tuple[InteractionRecord | None, web.Response | None]:
        record = self._interaction_for_token(token)
        if record is None:
            return None, error_response(404, 10015, "Unknown Webhook")
        if self._expired(record):
            self._violate("token_expired", f"interaction token of {record.id} used after it expired", request)
            return None, error_response(401, 50027, "Invalid Webhook Token")
        return record, None

    def _webhook_execute(self, request: web.Request, token: str, body: Any,
                         files: list[tuple[str, str, bytes]]) -> web.Response:
        record, problem = self._webhook_record(request, token)
        if record is None:
            return problem  # type: ignore[return-value]
        if not record.acks:
            self._violate("followup_before_ack", f"followup on interaction {record.id} before its ack", request)
            return error_response(404, 10015, "Unknown Webhook")
        data = body or {}
        problem = self._check_message(request, data, files, creating=True)
        if problem is not None:
            return problem
        if record.original is not None and record.original.get("flags", 0) & 128:
            # The first followup after a deferred reply replaces the "thinking..." message.
            message = self._apply_edit(record.original, {k: v for k, v in data.items() if k != "flags"}, files)
            ack_flags = int((record.acks[0].get("data") or {}).get("flags") or 0)
            message["flags"] = ack_flags & EPHEMERAL_FLAG  # the ack decided whether it is ephemeral
            self.messages[int(message["id"])] = message
            record.original = message
        else:
            message = self._new_message(record.payload["channel_id"], data, files, interaction=record)
        record.followups.append(message)
        record._touch()
        return json_response(message)

    def _webhook_message(self, request: web.Request, token: str, message_ref: str, body: Any,
                         files: list[tuple[str, str, bytes]]) -> web.StreamResponse:
        record, problem = self._webhook_record(request, token)
        if record is None:
            return problem  # type: ignore[assignment]
        if message_ref == "@original":
            if record.original is None:
                kind = "followup_before_ack" if not record.acks else "unknown_message"
                self._violate(kind, f"@original of interaction {record.id} used before there is one", request)
                return error_response(404, 10008, "Unknown Message")
            message_id = int(record.original["id"])
        else:
            message_id = int(message_ref)
        message = self.messages.get(message_id)
        if message is None:
            return error_response(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(message)
        if request.method == "DELETE":
            self.messages.pop(message_id, None)
            record.deleted.append(str(message_id))
            record._touch()
            return web.Response(status=204)
        data = body or {}
        problem = self._check_message(request, data, files, creating=False, current=message)
        if problem is not None:
            return problem
        updated = self._apply_edit(message, data, files)
        if record.original is not None and record.original["id"] == updated["id"]:
            updated["flags"] = int(updated.get("flags", 0)) & ~128
            record.original = updated
        record.followups = [updated if m["id"] == updated["id"] else m for m in record.followups]
        record.edits.append(data)
        record._touch()
        return json_response(updated)

    # -- channel messages

    def _channel_message_create(self, request: web.Request, channel_id: str, body: Any,
                                files: list[tuple[str, str, bytes]]) -> web.Response:
        if self.known_channel(channel_id) is None:
            return error_response(404, 10003, "Unknown Channel")
        data = body or {}
        problem = self._check_message(request, data, files, creating=True)
        if problem is not None:
            return problem
        return json_response(self._new_message(channel_id, data, files))

    def _channel_history(self, request: web.Request, channel_id: str) -> web.StreamResponse:
        """``GET /channels/{id}/messages?limit=``: the newest messages first, as Discord answers."""
        try:
            limit = max(1, min(100, int(request.query.get("limit", "50"))))
        except ValueError:
            return error_response(400, 50035, "Invalid Form Body (limit)")
        found = [m for m in self.messages.values()
                 if m["channel_id"] == channel_id and not (m.get("flags", 0) & EPHEMERAL_FLAG)]
        found.sort(key=lambda m: int(m["id"]), reverse=True)
        return json_response(found[:limit])

    def _channel_message(self, request: web.Request, channel_id: str, message_id: str, body: Any,
                         files: list[tuple[str, str, bytes]]) -> web.StreamResponse:
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id:
            return error_response(404, 10008, "Unknown Message")
        if request.method == "GET":
            return json_response(message)
        if request.method == "DELETE":
            self.messages.pop(int(message_id))
            return web.Response(status=204)
        data = body or {}
        problem = self._check_message(request, data, files, creating=False, current=message)
        if problem is not None:
            return problem
        return json_response(self._apply_edit(message, data, files))

    # -- messages and rules

    def _check_message(self, request: web.Request, data: dict[str, Any], files: list[tuple[str, str, bytes]], *,
                       creating: bool, current: dict[str, Any] | None = None) -> web.Response | None:
        for _, filename, blob in files:
            if len(blob) > self.upload_limit:
                self._violate("upload_too_large", f"{filename}: {len(blob)} bytes > {self.upload_limit}", request)
                return error_response(413, 40005, "Request entity too large")
        content = data.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            self._violate("content_too_long", f"content has {len(str(content))} characters", request)
            return error_response(400, 50035, "Invalid Form Body (content: Must be 2000 or fewer in length.)")
        problem = _embed_problem(data.get("embeds"))
        if problem:
            self._violate("embed_limit", problem, request)
            return error_response(400, 50035, f"Invalid Form Body ({problem})")
        problem = _component_problem(data.get("components"))
        if problem:
            self._violate("component_limit", problem, request)
            return error_response(400, 50035, f"Invalid Form Body ({problem})")
        if creating:
            empty = not content and not data.get("embeds") and not files and not data.get("components") \
                and not data.get("sticker_ids") and not data.get("poll")
            if empty:
                self._violate("empty_message", "message with no content, embed, file or component", request)
                return error_response(400, 50006, "Cannot send an empty message")
        elif current is not None:
            merged = current | {k: v for k, v in data.items() if k in ("content", "embeds", "components")}
            kept = data.get("attachments", current.get("attachments"))
            if not merged.get("content") and not merged.get("embeds") and not kept and not files \
                    and not merged.get("components"):
                self._violate("empty_message", "edit leaves the message empty", request)
                return error_response(400, 50006, "Cannot send an empty message")
        return None

    def _attachments(self, channel_id: str, data: dict[str, Any], files: list[tuple[str, str, bytes]]) -> list[dict[str, Any]]:
        out = []
        content_types = {".png": "image/png", ".gif": "image/gif", ".mp4": "video/mp4", ".webp": "image/webp",
                         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".txt": "text/plain"}
        for field_name, filename, blob in files:
            suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
            ctype = content_types.get(suffix, "application/octet-stream")
            channel = self.known_channel(channel_id) or self.channel
            att = self.add_attachment(filename, blob if self.keep_file_bytes else b"", ctype, channel=channel)
            att["size"] = len(blob)
            att["field"] = field_name
            out.append(att)
        return out

    def _new_message(self, channel_id: str, data: dict[str, Any], files: list[tuple[str, str, bytes]], *,
                     interaction: InteractionRecord | None = None) -> dict[str, Any]:
        message_id = self.snowflake()
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "author": self.bot_user.user_payload(),
            "content": data.get("content") or "",
            "timestamp": _now_iso(self.now()),
            "edited_timestamp": None,
            "tts": bool(data.get("tts", False)),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachments(channel_id, data, files),
            "embeds": data.get("embeds") or [],
            "pinned": False,
            "type": 0 if interaction is None or interaction.type == 3 else 20,
            "flags": int(data.get("flags") or 0),
            "components": data.get("components") or [],
        }
        guild = next((g for g in self.guilds for c in g.channels if str(c.id) == str(channel_id)), None)
        if guild is not None:
            message["guild_id"] = str(guild.id)
        if interaction is not None:
            message["webhook_id"] = str(self.application_id)
            message["application_id"] = str(self.application_id)
            user = interaction.payload.get("member", {}).get("user") or interaction.payload.get("user")
            message["interaction_metadata"] = {"id": str(interaction.id), "type": interaction.type, "user": user,
                                               "authorizing_integration_owners": {}}
        self.messages[message_id] = message
        return message

    def _apply_edit(self, message: dict[str, Any], data: dict[str, Any], files: list[tuple[str, str, bytes]]) -> dict[str, Any]:
        updated = dict(message)
        for key in ("content", "embeds", "components"):
            if key in data:
                updated[key] = data[key] if data[key] is not None else ("" if key == "content" else [])
        if "flags" in data and data["flags"] is not None:
            updated["flags"] = int(data["flags"])
        if "attachments" in data:
            keep = {str(a.get("id")) for a in data["attachments"] or []}
            updated["attachments"] = [a for a in message.get("attachments", []) if a["id"] in keep]
        if files:
            updated["attachments"] = updated.get("attachments", []) + self._attachments(message["channel_id"], data, files)
        updated["edited_timestamp"] = _now_iso(self.now())
        self.messages[int(updated["id"])] = updated
        return updated


def _with_rate_limit_headers(response: web.StreamResponse, decision: Decision | None) -> web.StreamResponse:
    if decision is not None and not response.prepared:
        response.headers.update(decision.headers())
    return response


def _dropped(request: web.Request, rec: RecordedRequest) -> web.Response:
    """A held request let go with ``drop``: its connection is closed, no answer is sent."""
    rec.route = rec.route or "dropped"
    rec.status = 0 if rec.route == "dropped" else rec.status
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def _option_spec(options: list[dict[str, Any]], path: list[str], name: str) -> dict[str, Any]:
    for sub in path:
        nested = next((o for o in options if o["name"] == sub), None)
        if nested is None:
            raise AssertionError(f"no subcommand {sub!r}")
        options = nested.get("options", [])
    spec = next((o for o in options if o["name"] == name), None)
    if spec is None:
        raise AssertionError(f"the synced command has no option {name!r}")
    return spec


def _find_component(rows: list[dict[str, Any]], custom_id: str) -> dict[str, Any] | None:
    for row in rows:
        for comp in row.get("components") or []:
            if comp.get("custom_id") == custom_id:
                return comp
            inner = _find_component([comp], custom_id) if comp.get("components") else None
            if inner is not None:
                return inner
    return None


def _embed_problem(embeds: Any) -> str | None:
    if not embeds:
        return None
    if len(embeds) > MAX_EMBEDS:
        return f"{len(embeds)} embeds > {MAX_EMBEDS}"
    total = 0
    for i, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            text = embed.get(key) or ""
            total += len(text)
            if len(text) > limit:
                return f"embeds[{i}].{key} has {len(text)} characters > {limit}"
        fields = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            return f"embeds[{i}] has {len(fields)} fields > {MAX_FIELDS}"
        for j, f in enumerate(fields):
            name, value = str(f.get("name") or ""), str(f.get("value") or "")
            if not name or not value:
                return f"embeds[{i}].fields[{j}] has an empty name or value"
            if len(name) > FIELD_NAME or len(value) > FIELD_VALUE:
                return f"embeds[{i}].fields[{j}] is too long"
            total += len(name) + len(value)
        footer = (embed.get("footer") or {}).get("text") or ""
        author = (embed.get("author") or {}).get("name") or ""
        if len(footer) > FOOTER_TEXT or len(author) > AUTHOR_NAME:
            return f"embeds[{i}] footer or author too long"
        total += len(footer) + len(author)
    if total > EMBED_TOTAL:
        return f"embeds have {total} characters in total > {EMBED_TOTAL}"
    return None


def _component_problem(rows: Any) -> str | None:
    if not rows:
        return None
    if len(rows) > MAX_ACTION_ROWS:
        return f"{len(rows)} action rows > {MAX_ACTION_ROWS}"
    for i, row in enumerate(rows):
        comps = row.get("components") or []
        if row.get("type") == 1 and len(comps) > MAX_ROW_BUTTONS:
            return f"row {i} has {len(comps)} components > {MAX_ROW_BUTTONS}"
        for comp in comps:
            if len(str(comp.get("custom_id") or "")) > MAX_CUSTOM_ID:
                return "custom_id longer than 100"
            if len(str(comp.get("label") or "")) > MAX_LABEL:
                return "label longer than 80"
            if len(comp.get("options") or []) > MAX_SELECT_OPTIONS:
                return "select with more than 25 options"
    return None
