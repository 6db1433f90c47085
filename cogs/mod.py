"""``/mod``: per-guild moderation of the bot, a thin adapter over :mod:`bot.moderation.actions`.

Who may use it is checked by the bot itself on every call (Manage Server, or one of the
guild's moderator roles: :func:`bot.moderation.policy.is_moderator`), not with
``default_permissions``: Discord would then hide the commands from a moderator role that
lacks Manage Server. ``/mod moderators`` and ``/mod safety`` need Manage Server itself.
``/mod defaults`` and ``/mod caps`` set the guild's defaults for ``/animate`` options and its cost caps
(:mod:`bot.moderation.option_actions`), each checked against every loaded workflow; without an option
they show the current ones. ``/mod withheld`` lists the results the safety check withheld, with Release and Delete
(:mod:`bot.discord.withheld_buttons`; for guilds without an audit channel, whose records carry them).

Every change is validated and written to the audit log by the action (:mod:`bot.moderation.actions`,
on the job store); the cog then posts the record to the guild's audit channel
(:class:`bot.discord.audit.AuditLog`) and answers the moderator privately. Guild settings are read
through the :class:`~bot.moderation.policy.AdmissionPolicy`, jobs through the job service.
Refusals are :class:`bot.errors.UserFacingError` s, answered by the one error path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.discord.audit import AuditLog
from bot.discord.requester import requester_from
from bot.discord.withheld_buttons import withheld_view
from bot.errors import InvalidInput, NotAllowed
from bot.jobs.service import JobService
from bot.moderation import actions, messages, option_actions
from bot.moderation.actions import KEEP, MAX_COOLDOWN, MAX_DAILY_QUOTA, MAX_GUILD_DAILY_CAP, MAX_IN_FLIGHT, Actions
from bot.moderation.audit_text import render
from bot.moderation.caps import MAX_EXTENSIONS_LIMIT, describe_rules, parse_formats
from bot.moderation.option_actions import CAP_NAMES
from bot.moderation.policy import AdmissionPolicy, Requester, is_moderator
from bot.safety.gate import SafetyGate, SafetyState
from bot.safety.verdict import SCORE_FLOOR
from bot.settings import Settings
from bot.storage import AuditRecord, Storage

log = logging.getLogger(__name__)

NONE = discord.AllowedMentions.none()
#: Channel types that make no sense as "where /animate works" or an audit channel.
_NOT_MESSAGEABLE = (discord.ChannelType.category, discord.ChannelType.voice, discord.ChannelType.stage_voice)
LimitName = Literal["cooldown", "daily quota", "jobs in flight", "server daily cap", "all"]
SafetyModeName = Literal["strict", "standard", "off"]
ThresholdName = Literal["suggestive", "explicit", "both"]
DefaultName = Literal["motion", "frames", "fps", "augmentation", "steps", "cfg", "format", "fit", "loop", "all"]
CapName = Literal["max frames", "max steps", "formats", "max extensions", "all"]
WITHHELD_SHOWN = 5  # one row of Release/Delete each

__all__ = ["Mod", "setup"]


def _channel_ids(channels: Iterable[app_commands.AppCommandChannel | app_commands.AppCommandThread | None]) -> list[int]:
    ids: list[int] = []
    for channel in channels:
        if channel is None:
            continue
        if channel.type in _NOT_MESSAGEABLE:
            raise InvalidInput(f"{channel.mention} is not a text channel.")
        ids.append(channel.id)
    return ids


def _chosen_role_ids(roles: Iterable[discord.Role | None]) -> list[int]:
    """The ids of the roles given as options (unset options left out)."""
    return [role.id for role in roles if role is not None]


class Mod(commands.Cog):
    """The ``/mod`` command group."""

    mod = app_commands.Group(name="mod", description="Moderate the animation bot on this server", guild_only=True)

    def __init__(self, *, jobs: JobService, store: Storage, audit: AuditLog, policy: AdmissionPolicy,
                 settings: Settings, safety: SafetyGate | None = None) -> None:
        self.jobs = jobs
        self.store = store  # what the moderation actions change
        self.audit = audit
        self.policy = policy
        self.settings = settings
        self.safety_gate = safety

    # ------------------------------------------------------------------ helpers

    async def _moderator(self, interaction: discord.Interaction[Any]) -> Requester:
        """The requester, if they moderate this guild; else :class:`NotAllowed`."""
        requester = requester_from(interaction)
        if requester.guild_id is None:
            raise NotAllowed(messages.guild_only())
        if not is_moderator(requester, await self.policy.settings_for(requester)):
            raise NotAllowed(messages.not_moderator(), detail=f"user {requester.user_id} is not a moderator")
        return requester

    async def _done(self, interaction: discord.Interaction[Any], record: AuditRecord, text: str | None = None) -> None:
        """Post the (stored) record to the audit channel and tell the moderator what changed."""
        self.audit.post(record)
        await interaction.response.send_message(text or f"Done. {render(record)}", ephemeral=True,
                                                allowed_mentions=NONE)

    # ------------------------------------------------------------------ settings

    @mod.command(name="settings", description="Show how the bot is set up on this server")
    async def show_settings(self, interaction: discord.Interaction[Any]) -> None:
        requester = await self._moderator(interaction)
        assert requester.guild_id is not None
        settings = await self.policy.settings_for(requester)
        embed = discord.Embed(title="Animation bot settings", colour=discord.Colour.blurple())
        for label, value in actions.describe_settings(settings,
                                                      default_max_in_flight=self.settings.max_jobs_per_member):
            embed.add_field(name=label, value=value[:1024] or "—", inline=False)
        caps, defaults = describe_rules(await self.policy.option_rules(requester.guild_id))
        embed.add_field(name="Option defaults", value=defaults[:1024], inline=False)
        embed.add_field(name="Option caps", value=caps[:1024], inline=False)
        if self.safety_gate is not None:
            status = self.safety_gate.status
            if status.state is SafetyState.UNAVAILABLE:
                detector = f"⚠️ not working ({status.reason}): every animation is refused unless the mode is off"
            else:
                detector = f"{status.detector} ({status.state.value})"
            embed.add_field(name="Safety detector", value=detector[:1024], inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True, allowed_mentions=NONE)

    @mod.command(name="channels", description="Channels where /animate works (none given: every channel)")
    @app_commands.describe(channel1="A channel where /animate works", channel2="Another channel",
                           channel3="Another channel", channel4="Another channel", channel5="Another channel")
    async def channels(self, interaction: discord.Interaction[Any],
                       channel1: Optional[app_commands.AppCommandChannel] = None,
                       channel2: Optional[app_commands.AppCommandChannel] = None,
                       channel3: Optional[app_commands.AppCommandChannel] = None,
                       channel4: Optional[app_commands.AppCommandChannel] = None,
                       channel5: Optional[app_commands.AppCommandChannel] = None) -> None:
        ids = _channel_ids((channel1, channel2, channel3, channel4, channel5))
        result = await actions.set_channels(self.store, requester_from(interaction), ids)
        await self._done(interaction, result.audit)

    @mod.command(name="role", description="A role members need to use /animate (none given: no role needed)")
    @app_commands.describe(role="The role needed; leave empty to remove the requirement")
    async def role(self, interaction: discord.Interaction[Any], role: Optional[discord.Role] = None) -> None:
        result = await actions.set_required_role(self.store, requester_from(interaction), role.id if role else None)
        await self._done(interaction, result.audit)

    @mod.command(name="limits", description="Per-member cooldown, daily quota, jobs in flight; server daily cap")
    @app_commands.describe(
        cooldown="Seconds a member waits between animations (0: none)",
        daily_quota="Animations per member per day (0: only exempt roles)",
        jobs_in_flight="Animations a member may have waiting or running at once",
        server_daily_cap="Animations per day for the whole server",
        clear="Remove a limit (back to unlimited / the bot default)",
    )
    async def limits(self, interaction: discord.Interaction[Any],
                     cooldown: Optional[app_commands.Range[float, 0.0, MAX_COOLDOWN]] = None,
                     daily_quota: Optional[app_commands.Range[int, 0, MAX_DAILY_QUOTA]] = None,
                     jobs_in_flight: Optional[app_commands.Range[int, 1, MAX_IN_FLIGHT]] = None,
                     server_daily_cap: Optional[app_commands.Range[int, 1, MAX_GUILD_DAILY_CAP]] = None,
                     clear: Optional[LimitName] = None) -> None:
        values: dict[str, Any] = {
            "cooldown": KEEP if cooldown is None else cooldown,
            "daily_quota": KEEP if daily_quota is None else daily_quota,
            "max_in_flight": KEEP if jobs_in_flight is None else jobs_in_flight,
            "guild_daily_cap": KEEP if server_daily_cap is None else server_daily_cap,
        }
        cleared = {"cooldown": ("cooldown",), "daily quota": ("daily_quota",), "jobs in flight": ("max_in_flight",),
                   "server daily cap": ("guild_daily_cap",), "all": tuple(values)}.get(clear or "", ())
        for name in cleared:
            values[name] = None
        result = await actions.set_limits(self.store, requester_from(interaction), **values)
        await self._done(interaction, result.audit)

    @mod.command(name="exempt", description="Roles whose members skip the per-member limits (none given: no role)")
    @app_commands.describe(role1="An exempt role", role2="Another role", role3="Another role", role4="Another role",
                           role5="Another role")
    async def exempt(self, interaction: discord.Interaction[Any], role1: Optional[discord.Role] = None,
                     role2: Optional[discord.Role] = None, role3: Optional[discord.Role] = None,
                     role4: Optional[discord.Role] = None, role5: Optional[discord.Role] = None) -> None:
        ids = _chosen_role_ids((role1, role2, role3, role4, role5))
        result = await actions.set_exempt_roles(self.store, requester_from(interaction), ids)
        await self._done(interaction, result.audit)

    @mod.command(name="moderators", description="Roles that may use /mod (Manage Server only; none given: no role)")
    @app_commands.describe(role1="A moderator role", role2="Another role", role3="Another role", role4="Another role",
                           role5="Another role")
    async def moderators(self, interaction: discord.Interaction[Any], role1: Optional[discord.Role] = None,
                         role2: Optional[discord.Role] = None, role3: Optional[discord.Role] = None,
                         role4: Optional[discord.Role] = None, role5: Optional[discord.Role] = None) -> None:
        ids = _chosen_role_ids((role1, role2, role3, role4, role5))
        result = await actions.set_moderator_roles(self.store, requester_from(interaction), ids)
        await self._done(interaction, result.audit)

    @mod.command(name="others", description="Whether members may animate other members' images")
    @app_commands.describe(allowed="True: any image in the server; False: only their own images")
    async def others(self, interaction: discord.Interaction[Any], allowed: bool) -> None:
        result = await actions.set_allow_others(self.store, requester_from(interaction), allowed)
        await self._done(interaction, result.audit)

    @mod.command(name="pause", description="Stop new animations on this server (running ones finish)")
    @app_commands.describe(message="What members are told when they try")
    async def pause(self, interaction: discord.Interaction[Any],
                    message: Optional[app_commands.Range[str, 1, messages.MAX_FREE_TEXT]] = None) -> None:
        result = await actions.pause(self.store, requester_from(interaction), message)
        await self._done(interaction, result.audit)

    @mod.command(name="resume", description="Accept new animations again")
    async def resume(self, interaction: discord.Interaction[Any]) -> None:
        result = await actions.resume(self.store, requester_from(interaction))
        await self._done(interaction, result.audit)

    @mod.command(name="ban", description="Stop a member from using the bot on this server")
    @app_commands.describe(member="Who to ban from the bot", reason="Shown to them when they try")
    async def ban(self, interaction: discord.Interaction[Any], member: discord.User,
                  reason: Optional[app_commands.Range[str, 1, messages.MAX_FREE_TEXT]] = None) -> None:
        if member.bot:
            raise InvalidInput("Bots cannot use the bot anyway.")
        result = await actions.ban(self.store, requester_from(interaction), member.id, reason)
        await self._done(interaction, result.audit)

    @mod.command(name="unban", description="Let a banned member use the bot again")
    @app_commands.describe(member="Who to unban")
    async def unban(self, interaction: discord.Interaction[Any], member: discord.User) -> None:
        result = await actions.unban(self.store, requester_from(interaction), member.id)
        await self._done(interaction, result.audit)

    @mod.command(name="auditlog", description="Where the bot posts its audit log (none given: turn it off)")
    @app_commands.describe(channel="The audit-log channel; leave empty to stop posting (records are still kept)")
    async def auditlog(self, interaction: discord.Interaction[Any],
                       channel: Optional[app_commands.AppCommandChannel] = None) -> None:
        ids = _channel_ids((channel,))
        result = await actions.set_audit_channel(self.store, requester_from(interaction), ids[0] if ids else None)
        await self._done(interaction, result.audit)

    @mod.command(name="safety", description="Content safety mode and thresholds (Manage Server only)")
    @app_commands.describe(
        mode="strict: explicit refused everywhere; standard: allowed in age-restricted channels; off: no checks",
        suggestive=f"Score from which a result counts as suggestive (spoiler); {SCORE_FLOOR}-1, default 0.40",
        explicit=f"Score from which an image counts as explicit; {SCORE_FLOOR}-1, default 0.50",
        default_thresholds="Put a threshold (or both) back to the bot's default",
    )
    async def safety(self, interaction: discord.Interaction[Any], mode: Optional[SafetyModeName] = None,
                     suggestive: Optional[app_commands.Range[float, SCORE_FLOOR, 1.0]] = None,
                     explicit: Optional[app_commands.Range[float, SCORE_FLOOR, 1.0]] = None,
                     default_thresholds: Optional[ThresholdName] = None) -> None:
        values: dict[str, Any] = {"mode": KEEP if mode is None else mode,
                                  "suggestive": KEEP if suggestive is None else suggestive,
                                  "explicit": KEEP if explicit is None else explicit}
        for name in {"suggestive": ("suggestive",), "explicit": ("explicit",),
                     "both": ("suggestive", "explicit")}.get(default_thresholds or "", ()):
            values[name] = None
        result = await actions.set_safety(self.store, requester_from(interaction), **values)
        await self._done(interaction, result.audit)

    @mod.command(name="defaults", description="Default /animate options on this server (none given: show them)")
    @app_commands.describe(
        motion="Default motion", frames="Default frames", fps="Default fps", augmentation="Default augmentation",
        steps="Default steps", cfg="Default cfg", format="Default file type (one every workflow makes, e.g. mp4)",
        fit="Default fit", loop="Default loop", clear="Put a default (or all) back to the workflow's own",
    )
    async def defaults(self, interaction: discord.Interaction[Any],
                       motion: Optional[int] = None, frames: Optional[int] = None, fps: Optional[int] = None,
                       augmentation: Optional[float] = None, steps: Optional[int] = None, cfg: Optional[float] = None,
                       format: Optional[str] = None, fit: Optional[str] = None, loop: Optional[str] = None,
                       clear: Optional[DefaultName] = None) -> None:
        values = {"motion": motion, "frames": frames, "fps": fps, "augmentation": augmentation, "steps": steps,
                  "cfg": cfg, "format": format, "fit": fit, "loop": loop}
        if clear is None and all(v is None for v in values.values()):
            await self._show_option_rules(interaction)
            return
        result = await option_actions.set_option_defaults(self.store, requester_from(interaction), self.jobs.workflows,
                                                          values=values, clear=(clear,) if clear else ())
        await self._done(interaction, result.audit)

    @defaults.autocomplete("format")
    async def default_format_autocomplete(self, interaction: discord.Interaction[Any],
                                          current: str) -> list[app_commands.Choice[str]]:
        return self._choices("format", current, every=True)

    @defaults.autocomplete("fit")
    async def default_fit_autocomplete(self, interaction: discord.Interaction[Any],
                                       current: str) -> list[app_commands.Choice[str]]:
        return self._choices("fit", current, every=True)

    @defaults.autocomplete("loop")
    async def default_loop_autocomplete(self, interaction: discord.Interaction[Any],
                                        current: str) -> list[app_commands.Choice[str]]:
        return self._choices("loop", current, every=True)

    @mod.command(name="caps", description="Upper bounds on /animate options on this server (none given: show them)")
    @app_commands.describe(
        max_frames="Most frames a member may ask for", max_steps="Most sampling steps a member may ask for",
        formats="File types allowed, e.g. mp4, webp", clear="Remove a cap (or all)",
        max_extensions=f"How many times one result may be extended (0-{MAX_EXTENSIONS_LIMIT}, default 3)",
    )
    async def caps(self, interaction: discord.Interaction[Any],
                   max_frames: Optional[int] = None, max_steps: Optional[int] = None,
                   formats: Optional[app_commands.Range[str, 1, 100]] = None,
                   max_extensions: Optional[app_commands.Range[int, 0, MAX_EXTENSIONS_LIMIT]] = None,
                   clear: Optional[CapName] = None) -> None:
        values: dict[str, Any] = {"max_frames": max_frames, "max_steps": max_steps, "allowed_formats": formats,
                                  "max_extensions": max_extensions}
        if clear is None and all(v is None for v in values.values()):
            await self._show_option_rules(interaction)
            return
        values = {name: KEEP if value is None else value for name, value in values.items()}
        for name in CAP_NAMES.values() if clear == "all" else [CAP_NAMES[clear]] if clear else []:
            values[name] = None
        result = await option_actions.set_option_caps(self.store, requester_from(interaction), self.jobs.workflows,
                                                      **values)
        await self._done(interaction, result.audit)

    @caps.autocomplete("formats")
    async def caps_formats_autocomplete(self, interaction: discord.Interaction[Any],
                                        current: str) -> list[app_commands.Choice[str]]:
        typed = list(parse_formats(current))
        partial = typed.pop() if typed and current[-1:] not in (",", " ") else ""
        texts = [", ".join([*typed, c]) for c in self._choice_names("format", every=False)
                 if c not in typed and c.startswith(partial)]
        return [app_commands.Choice(name=text, value=text) for text in texts][:25]

    def _choice_names(self, option: str, *, every: bool) -> list[str]:
        """The choices of ``option`` on every loaded workflow (``every``) or on any of them."""
        sets = [set(spec.choices) for w in self.jobs.workflows if (spec := w.options.get(option)) is not None]
        names = (set.intersection(*sets) if every else set.union(*sets)) if sets else set()
        return sorted(names)

    def _choices(self, option: str, current: str, *, every: bool) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=c, value=c) for c in self._choice_names(option, every=every)
                if current.lower() in c.lower()][:25]

    async def _show_option_rules(self, interaction: discord.Interaction[Any]) -> None:
        requester = await self._moderator(interaction)
        caps, defaults = describe_rules(await self.policy.option_rules(requester.guild_id))
        await interaction.response.send_message(
            f"**Option defaults:** {defaults}\n**Caps:** {caps}\n/animate still shows each workflow's full range "
            "(Discord cannot vary it per server); a value above a cap is refused.", ephemeral=True)

    @mod.command(name="withheld", description="Results the safety check withheld, with Release and Delete")
    async def withheld(self, interaction: discord.Interaction[Any]) -> None:
        requester = await self._moderator(interaction)
        assert requester.guild_id is not None
        items = await self.store.withheld.for_guild(requester.guild_id, limit=WITHHELD_SHOWN)
        if not items:
            await interaction.response.send_message("No result is withheld on this server.", ephemeral=True)
            return
        total = await self.store.withheld.count(requester.guild_id)
        lines = [f"**Withheld results** ({total}; newest first)"]
        for number, item in enumerate(items, start=1):
            labels = ", ".join(f"{label} {score:.2f}" for label, score in item.labels[:4]) or item.level
            lines.append(f"{number}. job `{item.job_id}` of {messages.user_mention(item.user_id)} in "
                         f"{messages.channel_mention(item.channel_id)} <t:{int(item.at)}:R>: {item.level} ({labels})")
        if total > len(items):
            lines.append(f"…and {total - len(items)} older; decide on these first.")
        await interaction.response.send_message("\n".join(lines)[:1900], ephemeral=True, allowed_mentions=NONE,
                                                view=withheld_view([i.job_id for i in items], numbered=True))

    # ------------------------------------------------------------------ jobs

    @mod.command(name="cancel", description="Cancel any animation waiting or running on this server")
    @app_commands.describe(job="The job to cancel")
    async def cancel(self, interaction: discord.Interaction[Any], job: str) -> None:
        requester = await self._moderator(interaction)
        target = await self.jobs.get(job.strip())
        if target is None or target.guild_id != requester.guild_id:
            raise InvalidInput("I don't know that job on this server. Pick one from the list.")
        if target.is_terminal:
            raise InvalidInput("That animation has already ended.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        # a refusal (it ended meanwhile) goes to the tree's error path, which follows up
        ended = await self.jobs.cancel(target.id, by_user=requester.user_id, moderator=True)
        word = "Cancelled" if ended.is_terminal else "Cancelling"
        await interaction.followup.send(f"{word} job `{target.id}` of {messages.user_mention(target.user_id)}.",
                                        ephemeral=True, allowed_mentions=NONE)

    @cancel.autocomplete("job")
    async def cancel_autocomplete(self, interaction: discord.Interaction[Any],
                                  current: str) -> list[app_commands.Choice[str]]:
        if interaction.guild_id is None:
            return []
        active = await self.jobs.guild_active_jobs(interaction.guild_id, limit=50)
        choices = []
        for job in active:
            member = interaction.guild.get_member(job.user_id) if interaction.guild else None
            who = member.display_name if member else str(job.user_id)
            label = f"{job.id} · {job.state.value} · {who}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=job.id))
        return choices[:25]

    @mod.command(name="clear", description="Cancel every animation waiting in line on this server")
    async def clear(self, interaction: discord.Interaction[Any]) -> None:
        requester = await self._moderator(interaction)
        assert requester.guild_id is not None
        await interaction.response.defer(ephemeral=True, thinking=True)
        cleared = await self.jobs.clear_waiting(requester.guild_id, by=requester.user_id)
        await self.audit.record(guild_id=requester.guild_id, actor_id=requester.user_id,
                                action=Actions.QUEUE_CLEARED, details={"count": len(cleared)})
        noun = "job" if len(cleared) == 1 else "jobs"
        await interaction.followup.send(f"Cleared {len(cleared)} waiting {noun}.", ephemeral=True)


async def setup(bot: AnimateBot) -> None:
    await bot.add_cog(Mod(jobs=bot.jobs, store=bot.store, audit=bot.audit, policy=bot.policy, settings=bot.settings,
                          safety=bot.safety))
