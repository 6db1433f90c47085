"""The stand-in itself: a plain discord.py Client logs in, reconnects, and the rules are enforced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import discord
import pytest
from discord import app_commands

from standins.discord_server import DiscordStandIn


class _Client(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.tree = app_commands.CommandTree(self)
        self.ready_event = asyncio.Event()
        self.resumed_event = asyncio.Event()

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before a re-identify; the stand-in has no identify rate limit."""

    async def on_resumed(self) -> None:
        self.resumed_event.set()


async def _start(client: discord.Client, token: str) -> asyncio.Task[None]:
    task = asyncio.create_task(client.start(token))
    return task


@pytest.fixture
async def client(discord_stand_in: DiscordStandIn) -> AsyncIterator[_Client]:
    c = _Client()
    task = await _start(c, discord_stand_in.token)
    await asyncio.wait_for(c.ready_event.wait(), 10)
    yield c
    await c.close()
    await asyncio.wait_for(task, 5)


async def test_plain_client_logs_in_and_sees_the_guild(client: _Client, discord_stand_in: DiscordStandIn) -> None:
    assert client.user is not None and client.user.id == discord_stand_in.bot_user.id
    guild = client.get_guild(discord_stand_in.guild.id)
    assert guild is not None and guild.name == "Test Guild"
    assert [c.name for c in guild.text_channels] == ["general"]
    assert client.application_id == discord_stand_in.application_id
    # zlib-stream, or zstd-stream when a zstd module is importable: what discord.py asked for
    assert discord_stand_in.gateway_compressions == [discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE]
    assert discord_stand_in.requests_to("GET", "/users/@me")


async def test_wrong_token_is_refused(discord_stand_in: DiscordStandIn) -> None:
    c = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await c.login("not-the-token-at-all-xxxxxxxx")
    await c.close()


async def test_forced_reconnect_resumes_and_invalid_session_identifies_again(
    client: _Client, discord_stand_in: DiscordStandIn
) -> None:
    await discord_stand_in.force_reconnect()
    await asyncio.wait_for(client.resumed_event.wait(), 5)
    assert discord_stand_in.resumes == 1
    client.ready_event.clear()
    discord_stand_in.ready.clear()
    await discord_stand_in.invalidate_session()
    await asyncio.wait_for(client.ready_event.wait(), 5)
    assert discord_stand_in.identifies == 2


async def test_interaction_rules_and_429_retry(client: _Client, discord_stand_in: DiscordStandIn) -> None:
    seen: list[str] = []
    twice_done = asyncio.Event()

    @client.tree.command(name="twice", description="answers twice")
    async def twice(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message("one")
            seen.append("first")
            try:
                await interaction.response.send_message("two")
            except discord.InteractionResponded:
                seen.append("library refused")
        finally:
            twice_done.set()

    @client.tree.command(name="ping", description="pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("pong")

    await client.tree.sync()
    discord_stand_in.add_fault("POST", "/webhooks/*", 429)
    record = await discord_stand_in.slash(None, None, None, "ping")
    message = await record.wait_message()
    assert message["content"] == "pong"
    assert record.ack_type == 5
    assert len(discord_stand_in.requests_to("POST", "/webhooks/*")) == 2  # the 429, then the retry

    record = await discord_stand_in.slash(None, None, None, "twice")
    assert (await record.wait_message())["content"] == "one"
    await asyncio.wait_for(twice_done.wait(), 5)  # the handler ran to its end (no record change to wait on)
    assert seen == ["first", "library refused"]


async def test_rule_breaking_requests_are_recorded(discord_stand_in: DiscordStandIn) -> None:
    headers = {"Authorization": f"Bot {discord_stand_in.token}"}
    url = f"{discord_stand_in.api_base}/channels/{discord_stand_in.channel.id}/messages"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"content": ""}, headers=headers) as resp:
            assert resp.status == 400
        async with session.post(url, json={"content": "x" * 2001}, headers=headers) as resp:
            assert resp.status == 400
        form = aiohttp.FormData()
        form.add_field("payload_json", '{"content": "big"}', content_type="application/json")
        form.add_field("files[0]", b"0" * (discord_stand_in.upload_limit + 1), filename="big.mp4")
        async with session.post(url, data=form, headers=headers) as resp:
            assert resp.status == 413
        async with session.get(f"{discord_stand_in.api_base}/nope", headers=headers) as resp:
            assert resp.status == 404
    assert [v.kind for v in discord_stand_in.violations] == ["empty_message", "content_too_long", "upload_too_large"]
    assert [r.path for r in discord_stand_in.unhandled_requests()] == ["/nope"]
    discord_stand_in.violations.clear()
    discord_stand_in.requests.clear()


async def test_interaction_payload_carries_what_discord_py_reads(client: _Client,
                                                                 discord_stand_in: DiscordStandIn) -> None:
    seen: dict[str, object] = {}

    @client.tree.command(name="facts", description="reports the interaction")
    async def facts(interaction: discord.Interaction) -> None:
        seen.update(app=interaction.application_id, limit=interaction.filesize_limit,
                    files=interaction.app_permissions.attach_files, version=interaction.version,
                    token=interaction.token)
        await interaction.response.send_message("ok")

    await client.tree.sync()
    discord_stand_in.upload_limit = 25 * 1024 * 1024
    record = await discord_stand_in.slash(None, None, None, "facts")
    await record.wait_message()
    assert seen == {"app": discord_stand_in.application_id, "limit": 25 * 1024 * 1024, "files": True,
                    "version": 1, "token": record.token}


async def test_an_ack_after_3_seconds_is_a_violation_and_refused(client: _Client,
                                                                 discord_stand_in: DiscordStandIn) -> None:
    started, go, done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    errors: list[int] = []

    @client.tree.command(name="slow", description="acks late")
    async def slow(interaction: discord.Interaction) -> None:
        started.set()
        await go.wait()
        try:
            await interaction.response.send_message("late")
        except discord.NotFound as exc:
            errors.append(exc.code)
        finally:
            done.set()

    await client.tree.sync()
    record = await discord_stand_in.slash(None, None, None, "slow")
    await asyncio.wait_for(started.wait(), 5)  # the bot is handling it when the time jumps
    discord_stand_in.clock_offset = 3.5  # as if the bot took 3.5 s
    go.set()
    await asyncio.wait_for(done.wait(), 5)  # a refused ack leaves the record as it was: wait on the handler
    assert errors == [10062] and not record.acks
    assert [v.kind for v in discord_stand_in.violations] == ["late_ack"]
    discord_stand_in.violations.clear()


async def test_raw_rule_breaking_interaction_calls_are_recorded(discord_stand_in: DiscordStandIn) -> None:
    s = discord_stand_in
    record = s._record(s._interaction_base(2, None, None, None, None) | {"data": {"name": "x", "type": 1}})
    api = s.api_base
    hook = f"{api}/webhooks/{s.application_id}/{record.token}"
    callback = f"{api}/interactions/{record.id}/{record.token}/callback?with_response=1"
    headers = {"Authorization": f"Bot {s.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(hook, json={"content": "too early"}) as resp:
            assert resp.status == 404  # followup before the ack
        async with session.post(callback, json={"type": 5}) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        async with session.post(callback, json={"type": 4, "data": {"content": "again"}}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == 40060
        channel = f"{api}/channels/{s.channel.id}/messages"
        big_embed = {"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v" * 1025}]}]}
        async with session.post(channel, json=big_embed, headers=headers) as resp:
            assert resp.status == 400
        six_buttons = {"components": [{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "b", "custom_id": f"b{i}"} for i in range(6)]}]}
        async with session.post(channel, json=six_buttons, headers=headers) as resp:
            assert resp.status == 400
        long_id = {"components": [{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "b", "custom_id": "x" * 101}]}]}
        async with session.post(channel, json=long_id, headers=headers) as resp:
            assert resp.status == 400
        s.add_fault("GET", "/users/@me", 503)
        async with session.get(f"{api}/users/@me", headers=headers) as resp:
            assert resp.status == 503
        s.add_fault("*", "/channels/*/messages", 429, retry_after=0.25)
        async with session.post(channel, json={"content": "hi"}, headers=headers) as resp:
            assert resp.status == 429 and "Via" in resp.headers
            assert (await resp.json())["retry_after"] == 0.25
        async with session.post(channel, json={"content": "hi"}, headers=headers) as resp:
            assert resp.status == 200  # the fault was for one request
    assert [v.kind for v in s.violations] == [
        "followup_before_ack", "second_ack", "embed_limit", "component_limit", "component_limit"]
    s.violations.clear()
