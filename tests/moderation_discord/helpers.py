"""Helpers for the moderation tests through the Discord stand-in.

The stand-in's ``slash`` resolves attachments only; ``/mod`` takes channels, roles and members,
so :func:`slash_with` builds the same interaction payload with ``resolved`` channels, roles and
users (as Discord sends them) and dispatches it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tests.animate.conftest import AnimateEnv, png_bytes
from standins.discord_server import Channel, DiscordStandIn, InteractionRecord, Member, message_text
from standins.discord_server.records import Role
from standins.discord_server.server import _option_spec

PERM_MANAGE_GUILD = 1 << 5
PERM_MANAGE_MESSAGES = 1 << 13


def add_role(stand_in: DiscordStandIn, name: str) -> Role:
    role = Role(id=stand_in.snowflake(), name=name)
    stand_in.guild.roles.append(role)
    return role


def add_channel(stand_in: DiscordStandIn, name: str) -> Channel:
    channel = Channel(id=stand_in.snowflake(), guild_id=stand_in.guild.id, name=name)
    stand_in.guild.channels.append(channel)
    return channel


def member_with(stand_in: DiscordStandIn, name: str, *, roles: Sequence[Role] = (), permissions: int | None = None) -> Member:
    member = stand_in.add_member(name) if permissions is None else stand_in.add_member(name, permissions=permissions)
    member.roles = [r.id for r in roles]
    return member


def _resolved_value(stand_in: DiscordStandIn, value: Any, resolved: dict[str, Any]) -> Any:
    if isinstance(value, Channel):
        data = value.payload() | {"permissions": str((1 << 53) - 1)}
        resolved.setdefault("channels", {})[str(value.id)] = data
        return str(value.id)
    if isinstance(value, Role):
        resolved.setdefault("roles", {})[str(value.id)] = value.payload(len(stand_in.guild.roles))
        return str(value.id)
    if isinstance(value, Member):
        resolved.setdefault("users", {})[str(value.id)] = value.user_payload()
        member = value.member_payload(with_permissions=True)
        member.pop("user")
        resolved.setdefault("members", {})[str(value.id)] = member
        return str(value.id)
    return value


async def slash_with(stand_in: DiscordStandIn, user: Member | None, name: str,
                     options: Mapping[str, Any] | None = None, *, channel: Channel | None = None) -> InteractionRecord:
    """Like ``stand_in.slash``, with :class:`Channel`/:class:`Role`/:class:`Member` option values resolved."""
    parts = name.split()
    command = stand_in.find_command(parts[0], stand_in.guild)
    resolved: dict[str, Any] = {}
    values = []
    for opt_name, value in (options or {}).items():
        spec = _option_spec(command.get("options", []), parts[1:], opt_name)
        values.append({"name": opt_name, "type": spec["type"], "value": _resolved_value(stand_in, value, resolved)})
    for sub in reversed(parts[1:]):
        values = [{"name": sub, "type": 1 if sub == parts[-1] else 2, "options": values}]
    data: dict[str, Any] = {"id": command["id"], "name": parts[0], "type": 1, "options": values}
    if resolved:
        data["resolved"] = resolved
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    payload = stand_in._interaction_base(2, stand_in.guild, channel, user, None) | {"data": data}
    return await stand_in._send_interaction(payload)


async def reply(record: InteractionRecord, timeout: float = 5.0) -> str:
    """The private answer the member got (the original ephemeral response or the first followup)."""
    await record.wait_for(lambda r: any(message_text(m) for m in r.messages()), timeout=timeout)
    return "\n".join(message_text(m) for m in record.messages() if message_text(m))


async def mod(env: AnimateEnv, user: Member | None, sub: str, **options: Any) -> str:
    """Run ``/mod <sub>`` as ``user`` and return its (ephemeral) answer."""
    record = await slash_with(env.stand_in, user, f"mod {sub}", options)
    text = await reply(record)
    assert record.ephemeral or not record.original, "moderation answers are private"
    return text


async def animate(env: AnimateEnv, user: Member | None = None, *, channel: Channel | None = None,
                  **options: Any) -> InteractionRecord:
    opts = {"steps": 4, "frames": 2}
    opts.update(options)
    return await env.stand_in.slash(None, channel, user, "animate", options=opts,
                                    attachments={"image": ("cat.png", png_bytes(), "image/png")})


async def refusal(record: InteractionRecord) -> str:
    """The ephemeral refusal text (the interaction was answered privately, nothing deferred)."""
    message = await record.wait_message()
    assert record.ephemeral, f"expected a private refusal, got {message_text(message)!r}"
    return message_text(message)
