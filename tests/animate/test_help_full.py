"""/help on the whole bot: every command, subcommand (/mod, /owner) and the context menu, within embed limits."""

from __future__ import annotations

from tests.animate.conftest import AnimateFactory
from standins.discord_server import message_text


async def test_help_lists_every_registered_command_within_discords_limits(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    record = await stand_in.slash(None, None, None, "help")
    await record.wait_message()
    assert record.ephemeral
    synced = stand_in.guild_commands[stand_in.guild.id]
    expected: list[str] = []
    for cmd in synced:
        if cmd.get("type", 1) == 3:
            expected.append(f"Apps → {cmd['name']}")
            continue
        subs = [o for o in cmd.get("options", []) if o["type"] in (1, 2)]
        if not subs:
            expected.append(f"/{cmd['name']}")
        for sub in subs:
            inner = [o for o in sub.get("options", []) if o["type"] == 1] if sub["type"] == 2 else [sub]
            for leaf in inner:
                expected.append(f"/{cmd['name']} {sub['name']}" + (f" {leaf['name']}" if leaf is not sub else ""))
    expected += ["`image` (file, required)", "`motion`", "`seed`"]

    def text() -> str:  # a long help comes as several private messages (Discord's 6000 characters each)
        return "\n".join(message_text(m) for m in record.messages())

    await record.wait_for(lambda r: all(name in text() for name in expected), timeout=5)
    for message in record.messages():
        assert int(message.get("flags") or 0) & 64, "every page of /help is private"
        total = sum(len(e.get("title") or "") + len(e.get("description") or "")
                    + sum(len(f["name"]) + len(f["value"]) for f in e.get("fields") or []) for e in message["embeds"])
        assert total <= 6000  # the stand-in also rejects more (embed_limit violation)
    assert not stand_in.violations
