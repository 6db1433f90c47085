"""The bot, in-process, through the Discord stand-in: login, sync, /help, /status and the error path."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bot.app import COMMAND_HASH_FILE, AnimateBot, build
from bot.settings import ServerConfig, Settings
from standins.comfy_server.server import ComfyTestServer
from standins.discord_server import (
    DEFAULT_APP_PERMISSIONS,
    PERM_ATTACH_FILES,
    DiscordStandIn,
    message_text,
)
from standins.wait import wait_until

TEST_EXTENSION = "tests.discord.commands_for_tests"

BotFactory = Callable[..., Awaitable[AnimateBot]]


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def start_bot(discord_stand_in: DiscordStandIn, tmp_path: Path) -> AsyncIterator[BotFactory]:
    """Start AnimateBot in-process against the stand-in (built by the production wiring, with the
    extensions given); stop it (and check it stopped) afterwards."""
    running: list[tuple[AnimateBot, asyncio.Task[None], aiohttp.ClientSession]] = []

    async def factory(*, servers: tuple[ServerConfig, ...] = (), dev_guild: bool = True, sync: bool = False,
                      extensions: tuple[str, ...] = ("cogs.meta", TEST_EXTENSION), wait_ready: bool = True) -> AnimateBot:
        settings = Settings(
            discord_token=discord_stand_in.token,
            comfyui_servers=servers,
            data_dir=tmp_path / "data",
            dev_guild_id=discord_stand_in.guild.id if dev_guild else None,
            comfyui_timeout=2.0,
        )
        session = aiohttp.ClientSession()
        bot = await build(settings, session, sync=sync, extensions=extensions, guild_ready_timeout=0.05)
        ready = asyncio.Event()
        bot.add_listener(_setter(ready), "on_ready")
        task = asyncio.create_task(bot.start(settings.discord_token))
        running.append((bot, task, session))
        if wait_ready:
            await asyncio.wait_for(ready.wait(), 10)
        return bot

    yield factory
    for bot, task, session in running:
        await bot.close()
        await asyncio.wait_for(task, 5)
        await session.close()


def _setter(event: asyncio.Event) -> Callable[[], Awaitable[None]]:
    async def on_ready() -> None:
        event.set()

    return on_ready


async def test_bot_logs_in_and_syncs_its_commands_to_the_dev_guild(start_bot: BotFactory,
                                                                  discord_stand_in: DiscordStandIn) -> None:
    bot = await start_bot()
    assert bot.synced == "guild"
    guild_id, payload = discord_stand_in.command_syncs[-1]
    assert guild_id == discord_stand_in.guild.id
    assert {"help", "status", "boom", "needs-files"} <= {c["name"] for c in payload}
    assert not discord_stand_in.global_commands
    assert bot.get_guild(discord_stand_in.guild.id) is not None


async def test_global_sync_happens_once_then_only_when_commands_change(
    start_bot: BotFactory, discord_stand_in: DiscordStandIn, tmp_path: Path
) -> None:
    bot = await start_bot(dev_guild=False)
    assert bot.synced == "global"
    assert (tmp_path / "data" / COMMAND_HASH_FILE).exists()
    await bot.close()
    bot = await start_bot(dev_guild=False)
    assert bot.synced == "unchanged"
    await bot.close()
    bot = await start_bot(dev_guild=False, extensions=("cogs.meta",))  # a command set that changed
    assert bot.synced == "global"
    assert {c["name"] for c in discord_stand_in.global_commands} == {"help", "status"}
    assert len(discord_stand_in.requests_to("PUT", "/applications/*/commands")) == 2


async def test_help_lists_every_command_and_option(start_bot: BotFactory, discord_stand_in: DiscordStandIn) -> None:
    await start_bot()
    record = await discord_stand_in.slash(None, None, None, "help")
    message = await record.wait_message()
    assert record.ephemeral
    text = message_text(message)
    for expected in ("/help", "/status", "/boom", "/needs-files", "Apps → Quote", "`image` (file, required)", "`caption` (text, optional)"):
        assert expected in text


async def test_status_names_each_server_up_or_down_without_urls(
    start_bot: BotFactory, discord_stand_in: DiscordStandIn, comfy_server: ComfyTestServer
) -> None:
    down_url = f"http://127.0.0.1:{closed_port()}"
    servers = (ServerConfig("gpu-box", comfy_server.url), ServerConfig("old-box", down_url))
    await start_bot(servers=servers)
    record = await discord_stand_in.slash(None, None, None, "status")
    message = await record.wait_message(timeout=8)
    assert record.ack_type == 5 and record.ephemeral
    fields = {f["name"]: f["value"] for f in message["embeds"][0]["fields"]}
    assert set(fields) == {"gpu-box", "old-box"}
    assert "up" in fields["gpu-box"] and "Queue: 0" in fields["gpu-box"]
    assert "ComfyUI 0.8.0" in fields["gpu-box"] and "GPU: cpu" in fields["gpu-box"]
    assert "VRAM: 22.6 GiB free of 23.5 GiB" in fields["gpu-box"]
    assert "down" in fields["old-box"]
    text = message_text(message)
    assert "127.0.0.1" not in text and "http" not in text


async def test_unexpected_error_gets_generic_reply_and_a_log_entry(
    start_bot: BotFactory, discord_stand_in: DiscordStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    await start_bot()
    caplog.set_level(logging.ERROR, logger="bot.discord.tree")
    record = await discord_stand_in.slash(None, None, None, "boom")
    message = await record.wait_message()
    assert record.ephemeral
    assert "Something went wrong on our side" in message["content"]
    assert "secret-detail" not in message["content"] and "Traceback" not in message["content"]
    logged = [r for r in caplog.records if r.name == "bot.discord.tree" and r.exc_info]
    assert logged and "secret-detail" in str(logged[0].exc_info[1])
    error_id = logged[0].args[1]
    assert error_id in message["content"]


async def test_missing_attach_files_permission_is_named(start_bot: BotFactory,
                                                        discord_stand_in: DiscordStandIn) -> None:
    await start_bot()
    record = await discord_stand_in.slash(
        None, None, None, "needs-files", attachments={"image": ("cat.png", b"\x89PNG fake", "image/png")},
        app_permissions=DEFAULT_APP_PERMISSIONS & ~PERM_ATTACH_FILES,
    )
    message = await record.wait_message()
    assert record.ephemeral
    assert message["content"] == "I need the Attach Files permission in this channel."
    ok = await discord_stand_in.slash(
        None, None, None, "needs-files", attachments={"image": ("cat.png", b"\x89PNG fake", "image/png")},
        options={"caption": "hi"},
    )
    assert (await ok.wait_message())["content"] == "got cat.png (9 bytes): hi"


async def test_rate_limited_reply_is_retried(start_bot: BotFactory, discord_stand_in: DiscordStandIn) -> None:
    await start_bot()
    discord_stand_in.add_fault("POST", "/interactions/*/callback", 429, retry_after=0.05)
    record = await discord_stand_in.slash(None, None, None, "help")
    await record.wait_message()
    assert len(discord_stand_in.requests_to("POST", "/interactions/*/callback")) == 2


async def test_discord_down_does_not_crash_the_bot(start_bot: BotFactory, discord_stand_in: DiscordStandIn) -> None:
    discord_stand_in.add_fault("PUT", "/applications/*", 503, times=None)
    bot = await start_bot()
    assert bot.synced == "failed"
    discord_stand_in.faults.clear()
    # The commands Discord already had keep working.
    discord_stand_in.guild_commands[discord_stand_in.guild.id] = [
        {"id": "1", "name": "help", "type": 1, "options": [], "guild_id": str(discord_stand_in.guild.id)}
    ]
    record = await discord_stand_in.slash(None, None, None, "help")
    assert "/status" in message_text(await record.wait_message())
    assert not bot.is_closed()


async def test_expired_token_falls_back_to_the_channel(start_bot: BotFactory, discord_stand_in: DiscordStandIn) -> None:
    await start_bot()
    discord_stand_in.allow_violation("token_expired")
    record = await discord_stand_in.slash(None, None, None, "slow-boom")
    await record.wait_ack()
    discord_stand_in.expire_tokens()
    test_commands = __import__(TEST_EXTENSION, fromlist=["release"])
    test_commands.release.set()
    mention = f"<@{discord_stand_in.user.id}> "

    def replied_in_channel() -> list[dict[str, object]]:
        return [m for m in discord_stand_in.channel_messages() if str(m["content"]).startswith(mention)]

    # a channel message does not touch the interaction record: poll the stand-in's messages
    [reply, *_] = await wait_until(replied_in_channel, timeout=5, what="the reply in the channel")
    assert "Something went wrong on our side" in str(reply["content"])
    assert [v.kind for v in discord_stand_in.violations] == ["token_expired"]  # the followup tried first


async def test_view_errors_use_the_same_translator(start_bot: BotFactory, discord_stand_in: DiscordStandIn) -> None:
    bot = await start_bot()
    record = await discord_stand_in.slash(None, None, None, "buttons")
    message = await record.wait_message()
    # discord.py registers the view only after it has read the response that created the message.
    await wait_until(lambda: bot._connection._view_store.is_message_tracked(int(message["id"])), timeout=5,
                     what="discord.py to track the view", interval=0.005)
    click = await discord_stand_in.click(message, "again")
    answer = await click.wait_message()
    assert click.ephemeral and answer["content"] == "Please wait a minute before asking again."


async def test_context_menu_from_a_cog_is_registered_and_answers(start_bot: BotFactory,
                                                                 discord_stand_in: DiscordStandIn) -> None:
    await start_bot()
    record = await discord_stand_in.slash(None, None, None, "buttons")
    target = await record.wait_message()
    menu = await discord_stand_in.context_menu_message(None, None, None, "Quote", target)
    assert (await menu.wait_message())["content"] == "quoted: press it"


async def test_settings_are_not_changed_by_the_bot(start_bot: BotFactory) -> None:
    bot = await start_bot()
    assert replace(bot.settings) == bot.settings
    assert bot.intents.value == 1  # guilds only: no privileged intent


async def test_mentions_ping_nobody_unless_a_message_names_the_member(start_bot: BotFactory,
                                                                     discord_stand_in: DiscordStandIn) -> None:
    bot = await start_bot()
    channel = bot.get_partial_messageable(discord_stand_in.channel.id)
    await channel.send(f"<@{discord_stand_in.user.id}> @everyone hello")
    sent = discord_stand_in.requests_to("POST", "/channels/*/messages")[-1].json
    assert sent["allowed_mentions"] == {"parse": []}
