"""Moderation actions on a guild's option defaults and cost caps (``/mod defaults``, ``/mod caps``).

Like :mod:`bot.moderation.actions`: each action checks that the actor moderates the guild
(:class:`bot.errors.NotAllowed` otherwise), validates the new values with :mod:`bot.moderation.caps`
against every loaded workflow (:class:`bot.errors.InvalidInput` naming each bad value), stores them
(:meth:`bot.storage.guilds.GuildStore.update_option_rules`, validated inside the write so two
moderators cannot slip an invalid pair past each other) and appends an audit record with each
value before and after. Defaults and caps are kept per guild and survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Final

from bot.errors import InvalidInput
from bot.moderation.actions import KEEP, ActionResult, Actions, _audit, _Keep, _require_moderator
from bot.moderation.caps import DEFAULTABLE, OptionCaps, OptionRules, parse_formats, validate_caps, validate_defaults
from bot.moderation.policy import Requester
from bot.storage import Storage
from bot.workflows import WorkflowRegistry

__all__ = ["CAP_NAMES", "set_option_defaults", "set_option_caps", "show_value"]

#: The caps a moderator can set or clear, by the name ``/mod caps clear`` uses.
CAP_NAMES: Final = {"max frames": "max_frames", "max steps": "max_steps", "formats": "allowed_formats",
                    "max extensions": "max_extensions"}


def show_value(value: Any) -> Any:
    """A value as the audit record keeps it (lists, not tuples)."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


async def set_option_defaults(
    store: Storage,
    actor: Requester,
    workflows: WorkflowRegistry,
    *,
    values: Mapping[str, Any] | None = None,
    clear: Iterable[str] = (),
) -> ActionResult[OptionRules]:
    """Set the server's defaults for member options (``values``; None entries are ignored) and
    clear others (``clear``: option names, or ``all``). Each default must be valid on every loaded
    workflow and within the server's caps. Nothing given: :class:`InvalidInput`."""
    guild_id, _ = await _require_moderator(store, actor)
    given = {k: v for k, v in (values or {}).items() if v is not None}
    cleared = set(clear)
    if "all" in cleared:
        cleared = set(DEFAULTABLE)
    if not given and not cleared:
        raise InvalidInput("Give at least one default to set or clear; /mod defaults with no option shows them.")

    def change(rules: OptionRules) -> OptionRules:
        kept = {k: v for k, v in rules.defaults.items() if k not in cleared and k not in given}
        checked = validate_defaults(given, workflows, rules.caps)
        ordered = {name: (checked | kept)[name] for name in DEFAULTABLE if name in checked or name in kept}
        return replace(rules, defaults=ordered)

    before, after = await store.guilds.update_option_rules(guild_id, change)
    details = {"option_defaults": {"before": dict(before.defaults), "after": dict(after.defaults)}}
    return ActionResult(after, await _audit(store, actor, Actions.OPTION_DEFAULTS, details))


async def set_option_caps(
    store: Storage,
    actor: Requester,
    workflows: WorkflowRegistry,
    *,
    max_frames: int | None | _Keep = KEEP,
    max_steps: int | None | _Keep = KEEP,
    allowed_formats: str | Iterable[str] | None | _Keep = KEEP,
    max_extensions: int | None | _Keep = KEEP,
) -> ActionResult[OptionRules]:
    """Change some caps; :data:`~bot.moderation.actions.KEEP` leaves one as it is, None removes it
    (``max_extensions`` back to its default). ``allowed_formats``: names, or text like ``"mp4, webp"``.
    The caps must lie within the workflows' own ranges, leave every workflow a format, and not be
    below one of the server's defaults."""
    guild_id, _ = await _require_moderator(store, actor)
    changes: dict[str, Any] = {}
    if not isinstance(max_frames, _Keep):
        changes["max_frames"] = max_frames
    if not isinstance(max_steps, _Keep):
        changes["max_steps"] = max_steps
    if not isinstance(allowed_formats, _Keep):
        if isinstance(allowed_formats, str):
            allowed_formats = parse_formats(allowed_formats)
        changes["allowed_formats"] = None if allowed_formats is None else tuple(allowed_formats)
    if not isinstance(max_extensions, _Keep):
        changes["max_extensions"] = OptionCaps().max_extensions if max_extensions is None else max_extensions
    if not changes:
        raise InvalidInput("Give at least one cap to set or clear; /mod caps with no option shows them.")

    def change(rules: OptionRules) -> OptionRules:
        caps = validate_caps(replace(rules.caps, **changes), workflows, rules.defaults)
        return replace(rules, caps=caps)

    before, after = await store.guilds.update_option_rules(guild_id, change)
    details = {k: {"before": show_value(getattr(before.caps, k)), "after": show_value(getattr(after.caps, k))}
               for k in changes}
    return ActionResult(after, await _audit(store, actor, Actions.OPTION_CAPS, details))
