"""/help on the whole bot: every command, subcommand (/mod, /owner) and the context menu, within embed limits."""

from __future__ import annotations

from tests.animate.conftest import AnimateFactory
from standins.discord_server import message_text


async def test_help_lists_every_registered_command_within_discords_limits(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    record = await stand_in.slash(None, None, None, "help")
    message = await record.wait_message()
    assert record.ephemeral
    text = message_text(message)
    synced = stand_in.guild_commands[stand_in.guild.id]
    for cmd in synced:
        if cmd.get("type", 1) == 3:
            assert f"Apps → {cmd['name']}" in text
            continue
        subs = [o for o in cmd.get("options", []) if o["type"] in (1, 2)]
        if not subs:
            assert f"/{cmd['name']}" in text
        for sub in subs:
            inner = [o for o in sub.get("options", []) if o["type"] == 1] if sub["type"] == 2 else [sub]
            for leaf in inner:
                name = f"/{cmd['name']} {sub['name']}" + (f" {leaf['name']}" if leaf is not sub else "")
                assert name in text, name
    for option in ("`image` (file, required)", "`motion`", "`seed`"):
        assert option in text
    total = sum(len(e.get("title") or "") + len(e.get("description") or "")
                + sum(len(f["name"]) + len(f["value"]) for f in e.get("fields") or []) for e in message["embeds"])
    assert total <= 6000  # the stand-in also rejects more (embed_limit violation)
