"""Counting Discord's HTTP 429 answers and failed message edits through an aiohttp ``TraceConfig``.

discord.py waits out and retries rate-limited requests itself and has no hook for them, but it
accepts an aiohttp ``TraceConfig`` for its HTTP session: ``discord.Client(..., http_trace=trace)``
(and ``commands.Bot``, which passes its options on). Every REST call goes through that one
session, interaction responses and follow-ups (webhook routes) included, so
:func:`rate_limit_trace` sees every 429, each retry's too.

Each 429 is counted with a route template (method and path, with ids and tokens replaced by
``:id``: an interaction token sits in the path of webhook routes and must never become a label)
and Discord's ``X-RateLimit-Scope`` (``user``, ``global``, ``shared``; ``unknown`` when absent, as
on Cloudflare's own 429s). This module does not import discord.

:func:`discord_trace` (what the bot passes) also counts failed status-message edits: an edit
(``PATCH`` of a webhook message, the interaction's original response included, or of a channel
message) that Discord refused for good (a 4xx other than 429, which discord.py retries), or that
never got an answer. The delivery handles such a failure itself (the result still goes out), so
this is where they are seen. A 5xx is left out: discord.py tries again, so it is not yet a failure.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import aiohttp
from yarl import URL

from bot.observability.metrics import BotMetrics

__all__ = ["EDIT_ROUTES", "discord_trace", "rate_limit_trace", "route_template"]

_API_PREFIX = re.compile(r"^/api(?:/v\d+)?(?=/|$)")
# a path word kept as it is: lower-case letters, '-' or '_' between them, an optional leading '@'
# ("@me", "@original"), at most 24 characters; ids, tokens, emoji and names become ":id"
_WORD = re.compile(r"@?[a-z]+(?:[-_][a-z]+)*")
_MAX_SEGMENTS = 10
# /webhooks/{id}/{token}/... and /interactions/{id}/{token}/callback: the segment after the id is a token
_TOKEN_AFTER = frozenset({"webhooks", "interactions"})

#: The route templates of a message edit.
EDIT_ROUTES = frozenset({
    "PATCH /webhooks/:id/:id/messages/:id",
    "PATCH /webhooks/:id/:id/messages/@original",
    "PATCH /channels/:id/messages/:id",
})


def route_template(method: str, url: URL | str) -> str:
    """``PATCH /webhooks/:id/:id/messages/@original`` for
    ``PATCH https://discord.com/api/v10/webhooks/123/<token>/messages/@original``."""
    path = (url if isinstance(url, URL) else URL(url)).path
    path = _API_PREFIX.sub("", path)
    segments = [s for s in path.split("/") if s][:_MAX_SEGMENTS]
    words = [
        ":id" if len(s) > 24 or not _WORD.fullmatch(s) or (i >= 2 and segments[i - 2] in _TOKEN_AFTER) else s
        for i, s in enumerate(segments)
    ]
    verb = method.upper() if method.isalpha() else "OTHER"
    return f"{verb} /" + "/".join(words)


def rate_limit_trace(metrics: BotMetrics) -> aiohttp.TraceConfig:
    """A ``TraceConfig`` counting every 429 response into ``metrics.discord_429``.

    Pass it to discord.py as ``http_trace=`` when building the client or bot. It holds no state of
    its own beyond ``metrics``; give each bot its own.
    """

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        if params.response.status == 429:
            scope = params.response.headers.get("X-RateLimit-Scope", "unknown").lower()
            metrics.discord_429(route=route_template(params.method, params.url), scope=scope)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def discord_trace(metrics: BotMetrics) -> aiohttp.TraceConfig:
    """The bot's ``http_trace``: every 429 (as :func:`rate_limit_trace`) and every failed message
    edit (``metrics.edit_failed``; see the module docstring)."""
    trace = rate_limit_trace(metrics)

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        status = params.response.status
        if 400 <= status < 500 and status != 429 and route_template(params.method, params.url) in EDIT_ROUTES:
            metrics.edit_failed()

    async def on_request_exception(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        if route_template(params.method, params.url) in EDIT_ROUTES:
            metrics.edit_failed()

    trace.on_request_end.append(on_request_end)
    trace.on_request_exception.append(on_request_exception)
    return trace
