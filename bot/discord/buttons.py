"""The job buttons: ``discord.ui.DynamicItem`` buttons whose custom id carries the job id.

A custom id reads ``animate:<action>:<job id>`` (actions: reroll, more, less, extend, delete,
cancel). The bot registers :class:`JobButton` with ``bot.add_dynamic_items`` so a click
is understood from the custom id alone, also after a restart. discord.py makes the button
itself, so it cannot be handed its handler: it finds it on the client the click came to,
typed as :class:`JobButtonClient` (the bot, whose ``job_buttons`` is its
:class:`~bot.discord.animate_flow.AnimateFlow`). Errors go to the one error path
(:func:`bot.discord.tree.report_error`).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol, runtime_checkable

import discord

from bot.discord.tree import report_error

log = logging.getLogger(__name__)

ACTIONS: tuple[str, ...] = ("reroll", "more", "less", "extend", "delete", "cancel")
TEMPLATE = re.compile(r"animate:(?P<action>reroll|more|less|extend|delete|cancel):(?P<job_id>[A-Za-z0-9_-]{1,40})")

_LOOK: dict[str, tuple[str, str | None, discord.ButtonStyle]] = {
    "reroll": ("Re-roll", "🎲", discord.ButtonStyle.primary),
    "more": ("More motion", "➕", discord.ButtonStyle.secondary),
    "less": ("Less motion", "➖", discord.ButtonStyle.secondary),
    "extend": ("Extend", "⏩", discord.ButtonStyle.secondary),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
    "cancel": ("Cancel", "✖️", discord.ButtonStyle.danger),
}


def custom_id(action: str, job_id: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown job button action {action!r}")
    return f"animate:{action}:{job_id}"


def parse_custom_id(value: str) -> tuple[str, str] | None:
    """(action, job id) from a custom id, or None when it is not one of ours."""
    match = TEMPLATE.fullmatch(value)
    return (match["action"], match["job_id"]) if match else None


class JobButtonHandler(Protocol):
    """What a click is handed to."""

    async def on_job_button(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None: ...


@runtime_checkable
class JobButtonClient(Protocol):
    """A client that handles job buttons (the bot)."""

    @property
    def job_buttons(self) -> JobButtonHandler: ...


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """One job button; the action and job id live in its custom id."""

    def __init__(self, action: str, job_id: str) -> None:
        label, emoji, style = _LOOK[action]
        super().__init__(discord.ui.Button(label=label, emoji=emoji, style=style, custom_id=custom_id(action, job_id)))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        try:
            if not isinstance(client, JobButtonClient):
                raise RuntimeError(f"{type(client).__name__} handles no job buttons")
            await client.job_buttons.on_job_button(interaction, self.action, self.job_id)
        except Exception as exc:  # the one error path answers the member
            await report_error(interaction, exc, where=f"button {self.action}")


def job_view(job_id: str, actions: tuple[str, ...]) -> discord.ui.View:
    """A view holding the given buttons for a job (no timeout: the buttons are dynamic)."""
    view = discord.ui.View(timeout=None)
    for action in actions:
        view.add_item(JobButton(action, job_id))
    return view


RESULT_ACTIONS: tuple[str, ...] = ("reroll", "more", "less", "extend", "delete")
#: A withheld result a moderator released: no Extend (the job ended withheld, not delivered).
RELEASED_ACTIONS: tuple[str, ...] = ("reroll", "more", "less", "delete")
RUNNING_ACTIONS: tuple[str, ...] = ("cancel",)
