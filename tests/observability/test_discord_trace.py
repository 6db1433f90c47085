"""The http_trace TraceConfig counts Discord's 429s, through aiohttp and through discord.py itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from aiohttp import web

from bot.observability.discord_trace import rate_limit_trace, route_template
from bot.observability.metrics import BotMetrics

from .helpers import value

pytestmark = pytest.mark.timeout(15)

INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnNlY3JldHNlY3JldA"
BOT_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secretsecretsecretsecret"


class TinyDiscord:
    """Answers 429 to the first PATCH of each path, then 200; GET /users/@me for discord.py's login."""

    def __init__(self) -> None:
        self.patched: dict[str, int] = {}

    async def patch(self, request: web.Request) -> web.Response:
        n = self.patched[request.path] = self.patched.get(request.path, 0) + 1
        if n == 1:
            headers = {"Via": "1.1 google", "X-RateLimit-Scope": "user", "Retry-After": "0"}
            if "webhooks" in request.path:
                headers = {}  # as on a Cloudflare 429: no Via, no scope
            return _json({"message": "You are being rate limited.", "retry_after": 0.0, "global": False}, 429, headers)
        return _json({"id": "1", "channel_id": "2"})

    async def me(self, request: web.Request) -> web.Response:
        return _json({"id": "123456789012345678", "username": "bot", "discriminator": "0", "avatar": None})


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Discord's exact content type (discord.py parses only ``application/json``, no charset)."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


@pytest.fixture
async def tiny() -> AsyncIterator[tuple[TinyDiscord, str]]:
    fake = TinyDiscord()
    app = web.Application()
    app.router.add_patch("/{tail:.*}", fake.patch)
    app.router.add_get("/api/v10/users/@me", fake.me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield fake, f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_429_is_counted_with_its_route_template_and_scope(tiny: tuple[TinyDiscord, str]) -> None:
    _, base = tiny
    metrics = BotMetrics(process_metrics=False)
    async with aiohttp.ClientSession(trace_configs=[rate_limit_trace(metrics)]) as session:
        url = f"{base}/api/v10/webhooks/123456789012345678/{INTERACTION_TOKEN}/messages/@original"
        async with session.patch(url, json={}) as resp:
            assert resp.status == 429
        async with session.patch(url, json={}) as resp:
            assert resp.status == 200
    text = metrics.exposition()
    assert value(text, "animate_bot_discord_rate_limited_total",
                 route="PATCH /webhooks/:id/:id/messages/@original", scope="unknown") == 1
    assert INTERACTION_TOKEN not in text and "123456789012345678" not in text


async def test_discord_py_passes_http_trace_to_its_session(tiny: tuple[TinyDiscord, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, base = tiny
    monkeypatch.setattr(discord.http.Route, "BASE", f"{base}/api/v10")
    metrics = BotMetrics(process_metrics=False)
    trace = rate_limit_trace(metrics)
    client = discord.Client(intents=discord.Intents(guilds=True), http_trace=trace)
    assert client.http.http_trace is trace
    try:
        await client.http.static_login(BOT_TOKEN)
        # discord.py waits out the 429 (retry_after 0) and retries by itself; the trace saw the 429
        route = discord.http.Route("PATCH", "/channels/{channel_id}/messages/{message_id}",
                                   channel_id=222222222222222222, message_id=333333333333333333)
        await asyncio.wait_for(client.http.request(route, json={"content": "hi"}), 10)
    finally:
        await client.http.close()
    assert fake.patched == {"/api/v10/channels/222222222222222222/messages/333333333333333333": 2}
    text = metrics.exposition()
    assert value(text, "animate_bot_discord_rate_limited_total",
                 route="PATCH /channels/:id/messages/:id", scope="user") == 1
    assert BOT_TOKEN not in text and "222222222222222222" not in text


@pytest.mark.parametrize(
    ("method", "url", "template"),
    [
        ("post", "https://discord.com/api/v10/interactions/1234/tok.en-x_y/callback", "POST /interactions/:id/:id/callback"),
        ("GET", "https://discord.com/api/v10/users/@me", "GET /users/@me"),
        ("PUT", "https://discord.com/api/v10/channels/1/messages/2/reactions/%F0%9F%91%8D/@me",
         "PUT /channels/:id/messages/:id/reactions/:id/@me"),
        ("PATCH", "https://discord.com/api/v10/webhooks/1/abc/messages/@original?wait=true",
         "PATCH /webhooks/:id/:id/messages/@original"),  # a token is never kept, however it looks
        ("POST", "https://discord.com/api/v10/interactions/1/callback/callback", "POST /interactions/:id/:id/callback"),
        ("GET", "https://discord.com/api/v10/applications/1/guilds/2/commands", "GET /applications/:id/guilds/:id/commands"),
        ("GET", "https://discord.com/api", "GET /"),
    ],
)
def test_route_templates_keep_words_and_drop_ids_and_tokens(method: str, url: str, template: str) -> None:
    assert route_template(method, url) == template
