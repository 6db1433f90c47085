"""/mod through the stand-in: who may change settings, what each setting does, and a restart."""

from __future__ import annotations

from tests.animate.conftest import AnimateFactory, png_bytes
from tests.animate.test_animate_flow import result_message
from standins.discord_server import InteractionRecord, message_text
from tests.moderation_discord.helpers import (
    PERM_MANAGE_GUILD,
    add_channel,
    add_role,
    animate,
    member_with,
    mod,
    refusal,
)

NOT_MOD = "Only moderators can do this"


async def delivered(record: InteractionRecord, timeout: float = 20.0) -> dict:
    await record.wait_for(lambda r: result_message(r) is not None, timeout=timeout)
    message = result_message(record)
    assert message is not None
    return message


async def test_only_moderators_change_settings_and_a_moderator_role_is_enough(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    mod_role = add_role(stand_in, "bot-mods")
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    helper = member_with(stand_in, "helper", roles=[mod_role])

    # a plain member and a member with a role that is not (yet) a moderator role are refused
    assert NOT_MOD in await mod(env, None, "limits", cooldown=30.0)
    assert NOT_MOD in await mod(env, helper, "settings")
    assert NOT_MOD in await mod(env, helper, "moderators", role1=mod_role)
    assert (await env.service.store.guilds.get_settings(stand_in.guild.id)).cooldown_seconds == 0

    # Manage Server names the moderator role; then the role may change settings...
    assert "moderator roles" in await mod(env, admin, "moderators", role1=mod_role)
    assert "cooldown none → 30 s" in await mod(env, helper, "limits", cooldown=30.0)
    shown = await mod(env, helper, "settings")
    assert "30 s" in shown and f"<@&{mod_role.id}>" in shown
    # ...but not hand out moderator rights (Manage Server only)
    assert NOT_MOD in await mod(env, helper, "moderators")
    assert NOT_MOD in await mod(env, None, "settings")
    settings = await env.service.store.guilds.get_settings(stand_in.guild.id)
    assert settings.moderator_role_ids == (mod_role.id,) and settings.cooldown_seconds == 30


async def test_channels_role_and_ban_survive_a_restart_and_change_who_may_animate(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    art = add_channel(stand_in, "art")
    artist = add_role(stand_in, "artist")
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    bob = member_with(stand_in, "bob", roles=[artist])
    carol = member_with(stand_in, "carol", roles=[artist])
    await mod(env, admin, "channels", channel1=art)
    await mod(env, admin, "role", role=artist)
    assert "banned" in await mod(env, admin, "ban", member=carol, reason="posting spam")
    assert "cannot ban yourself" in await mod(env, admin, "ban", member=admin)

    await env.stop()  # type: ignore[misc]
    env = await animate_bot(comfy=env.comfy)  # a new bot on the same DATA_DIR

    assert f"/animate works in <#{art.id}>" in await refusal(await animate(env, bob))
    assert f"You need the <@&{artist.id}> role" in await refusal(await animate(env, None, channel=art))
    banned = await refusal(await animate(env, carol, channel=art))
    assert "not allowed to use this bot" in banned and "posting spam" in banned
    message = await delivered(await animate(env, bob, channel=art))
    assert f"<@{bob.id}>" in message["content"]

    # clearing the settings opens /animate to everyone again
    await mod(env, admin, "channels")
    await mod(env, admin, "role")
    assert "unbanned" in await mod(env, admin, "unban", member=carol)
    assert "is not banned" in await mod(env, admin, "unban", member=carol)
    await delivered(await animate(env, None))
    await delivered(await animate(env, carol))


async def test_a_paused_guild_refuses_new_jobs_while_the_running_one_finishes(animate_bot: AnimateFactory) -> None:
    env = await animate_bot(step_time=0.1)
    admin = member_with(env.stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    running = await animate(env, None, steps=10)
    await running.wait_for(lambda r: any("step" in str(e.get("content")) for e in r.edits), timeout=10)
    await mod(env, admin, "pause", message="GPU maintenance until 18:00")
    maintenance = "Generation is paused on this server: GPU maintenance until 18:00"
    assert await refusal(await animate(env, admin)) == maintenance
    await delivered(running)  # the running job finishes

    await env.stop()  # type: ignore[misc]
    env = await animate_bot(comfy=env.comfy)  # the pause survives a restart
    assert await refusal(await animate(env, admin)) == maintenance
    assert "resumed" in await mod(env, admin, "resume")
    await delivered(await animate(env, admin, steps=2))


async def test_animating_other_members_images_needs_the_setting(animate_bot: AnimateFactory) -> None:
    env = await animate_bot()
    stand_in = env.stand_in
    admin = member_with(stand_in, "admin", permissions=PERM_MANAGE_GUILD)
    bob = member_with(stand_in, "bob")
    attachment = stand_in.add_attachment("photo.png", png_bytes(),
                                         "image/png", width=320, height=192)
    alices = {"id": str(stand_in.snowflake()), "channel_id": str(stand_in.channel.id), "content": "me",
              "author": stand_in.user.user_payload(), "attachments": [attachment], "embeds": [],
              "timestamp": "2024-01-01T00:00:00+00:00", "type": 0, "tts": False, "mention_everyone": False,
              "mentions": [], "mention_roles": [], "pinned": False}
    refused = await stand_in.context_menu_message(None, None, bob, "Animate image", alices)
    assert "only animate your own images" in await refusal(refused)
    own = await stand_in.context_menu_message(None, None, None, "Animate image", alices)
    await delivered(own)

    assert "animate others' images own images only → allowed" in await mod(env, admin, "others", allowed=True)
    allowed = await stand_in.context_menu_message(None, None, bob, "Animate image", alices)
    message = await delivered(allowed)
    assert f"<@{bob.id}>" in message_text(message)
    assert "own images only" in await mod(env, admin, "others", allowed=False)
    again = await stand_in.context_menu_message(None, None, bob, "Animate image", alices)
    assert "only animate your own images" in await refusal(again)
