"""The bot's http_trace also counts failed message edits: refused (4xx but 429) or unanswered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bot.observability.discord_trace import discord_trace
from bot.observability.metrics import BotMetrics

from .helpers import value

pytestmark = pytest.mark.timeout(15)

TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnNlY3JldHNlY3JldA"


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({}, status=int(request.query.get("status", "200")))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/api/v10"
    finally:
        await runner.cleanup()


async def test_failed_edits_are_counted_and_nothing_else(base: str) -> None:
    metrics = BotMetrics(process_metrics=False)
    edits = [f"/webhooks/123456789012345678/{TOKEN}/messages/@original",
             f"/webhooks/123456789012345678/{TOKEN}/messages/223456789012345678",
             "/channels/323456789012345678/messages/423456789012345678"]
    async with aiohttp.ClientSession(trace_configs=[discord_trace(metrics)]) as session:
        for path in edits:
            for status in (200, 404, 429, 500):
                async with session.patch(f"{base}{path}?status={status}", json={}):
                    pass
        for method, path in (("POST", "/channels/1/messages"), ("GET", edits[0]), ("DELETE", edits[1])):
            async with session.request(method, f"{base}{path}?status=403"):
                pass
        with pytest.raises(aiohttp.ClientError):
            async with session.patch("http://127.0.0.1:9/api/v10" + edits[0], json={}):
                pass
    text = metrics.exposition()
    # one 404 per edit route, plus the edit that never reached Discord; 429s and 500s are retried
    assert value(text, "animate_bot_discord_edit_failures_total") == len(edits) + 1
    assert value(text, "animate_bot_discord_rate_limited_total",
                 route="PATCH /webhooks/:id/:id/messages/@original", scope="unknown") == 1
    assert TOKEN not in text and "123456789012345678" not in text
