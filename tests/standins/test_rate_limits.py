"""The Discord stand-in's rate limits: buckets per interaction token and per channel, the global
limit that interaction routes are exempt from, the headers on every answer, 429s recorded, and
discord.py's own handling of them (it waits instead of being refused)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import discord
import pytest

from standins.discord_server import DiscordStandIn
from standins.discord_server.fixtures import discord_stand_in
from standins.discord_server.ratelimits import RULES, BucketRule, RateLimiter, classify

__all__ = ["discord_stand_in"]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_buckets_by_route_and_top_level_resource() -> None:
    app = "42"
    assert classify("PATCH", f"/webhooks/{app}/tok/messages/@original", app)[:3] == (RULES["interaction_webhook"], "tok", True)
    assert classify("POST", f"/webhooks/{app}/tok", app)[0].name == "interaction_webhook"
    assert classify("POST", "/interactions/1/tok/callback", app)[:3] == (RULES["interaction_callback"], "tok", True)
    assert classify("POST", "/channels/7/messages", app)[:3] == (RULES["channel_message_create"], "7", False)
    assert classify("PATCH", "/channels/7/messages/9", app)[0].name == "channel_message_edit"
    assert classify("GET", "/channels/7/messages", app)[0].name == "channel_message_read"
    assert classify("GET", "/users/@me", app)[0].name == "other"


def test_fixed_windows_tokens_and_the_global_limit() -> None:
    clock = _Clock()
    limiter = RateLimiter(monotonic=clock, wall=lambda: 1_700_000_000.0)
    app = "42"
    answers = [limiter.take("PATCH", f"/webhooks/{app}/a/messages/@original", app) for _ in range(6)]
    assert [d.allowed for d in answers] == [True] * 5 + [False]
    assert [d.remaining for d in answers[:5]] == [4, 3, 2, 1, 0]
    refused = answers[5]
    assert refused.scope == "user" and refused.retry_after == pytest.approx(2.0)
    headers = refused.headers()
    assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Reset-After"] == "2.000" and headers["X-RateLimit-Scope"] == "user"
    assert headers["Via"] and headers["Retry-After"] == "2" and refused.body()["global"] is False
    assert limiter.take("PATCH", f"/webhooks/{app}/b/messages/@original", app).allowed  # another token
    clock.now += 2.0
    assert limiter.take("PATCH", f"/webhooks/{app}/a/messages/@original", app).remaining == 4  # a new window
    # 50 requests a second for the bot's token, whatever the route; interaction routes do not count
    others = [limiter.take("GET", f"/channels/{c}/messages/1", app) for c in range(50)]
    assert all(d.allowed for d in others)
    over = limiter.take("GET", "/channels/999/messages/1", app)
    assert not over.allowed and over.is_global and over.body()["global"] is True
    assert over.headers()["X-RateLimit-Global"] == "true" and over.headers()["X-RateLimit-Scope"] == "global"
    assert limiter.take("POST", f"/webhooks/{app}/c", app).allowed  # exempt
    clock.now += 1.0
    assert limiter.take("GET", "/channels/999/messages/1", app).allowed


async def test_every_answer_carries_the_headers_and_a_burst_is_refused_and_recorded(
        discord_stand_in: DiscordStandIn) -> None:
    headers = {"Authorization": f"Bot {discord_stand_in.token}"}
    url = f"{discord_stand_in.api_base}/channels/{discord_stand_in.channel.id}/messages"
    statuses: list[int] = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{discord_stand_in.api_base}/users/@me", headers=headers) as resp:
            assert resp.status == 200 and resp.headers["X-RateLimit-Limit"] == "50"
            assert {"X-RateLimit-Remaining", "X-RateLimit-Reset", "X-RateLimit-Reset-After",
                    "X-RateLimit-Bucket"} <= set(resp.headers)
        for i in range(6):
            async with session.post(url, json={"content": f"hello {i}"}, headers=headers) as resp:
                statuses.append(resp.status)
                body: Any = await resp.json()
                if resp.status == 429:
                    assert body["retry_after"] > 0 and body["global"] is False and resp.headers["Via"]
    assert statuses == [200] * 5 + [429]
    assert len(discord_stand_in.channel_messages()) == 5  # the refused one was not handled
    [hit] = discord_stand_in.rate_limit_hits
    assert (hit.method, hit.bucket, hit.major) == ("POST", "channel_message_create", str(discord_stand_in.channel.id))
    assert [r.route for r in discord_stand_in.requests][-1] == "rate_limited"


async def test_off_means_no_headers_and_no_429() -> None:
    stand_in = DiscordStandIn(rate_limits=False)
    await stand_in.start()
    try:
        headers = {"Authorization": f"Bot {stand_in.token}"}
        url = f"{stand_in.api_base}/channels/{stand_in.channel.id}/messages"
        async with aiohttp.ClientSession() as session:
            for i in range(7):
                async with session.post(url, json={"content": f"x{i}"}, headers=headers) as resp:
                    assert resp.status == 200 and "X-RateLimit-Limit" not in resp.headers
    finally:
        await stand_in.stop()
    assert not stand_in.rate_limit_hits


class _Client(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.none())
        self.tree = discord.app_commands.CommandTree(self)


@pytest.mark.timeout(30)
async def test_discord_py_waits_on_the_headers_instead_of_being_refused(discord_stand_in: DiscordStandIn) -> None:
    """Seven quick edits of one interaction's message and seven channel messages at once: discord.py
    reads the buckets from the headers and spaces its requests; the stand-in answers no 429."""
    # the channel bucket scaled down (5 per 0.5 s), so the test stays short
    limiter = discord_stand_in.rate_limiter
    assert limiter is not None
    limiter.rules["channel_message_create"] = BucketRule("channel_message_create", 5, 0.5, "channel")
    client = _Client()
    done = asyncio.Event()
    times: list[float] = []

    @client.tree.command(name="burst", description="edits its answer seven times")
    async def burst(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer(thinking=True)
            for i in range(7):
                await interaction.edit_original_response(content=f"edit {i}")
                times.append(time.monotonic())
            channel = client.get_partial_messageable(discord_stand_in.channel.id)
            await asyncio.gather(*(channel.send(f"message {i}") for i in range(7)))
        finally:
            done.set()

    task = asyncio.create_task(client.start(discord_stand_in.token))
    try:
        await discord_stand_in.wait_connected()
        await client.tree.sync()
        record = await discord_stand_in.slash(None, None, None, "burst")
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await client.close()
        await asyncio.wait_for(task, 5)
    assert len(record.edits) == 7 and record.edits[-1]["content"] == "edit 6"
    assert len(discord_stand_in.channel_messages()) >= 7
    assert discord_stand_in.rate_limit_hits == []
    assert times[5] - times[0] >= 1.5  # the sixth edit waited for the token's bucket (5 per 2 s)
