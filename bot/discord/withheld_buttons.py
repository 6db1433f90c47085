"""The Release and Delete buttons of a withheld result (``DynamicItem``, custom id ``safety:<action>:<job id>``).

They sit on a withheld result's audit-log record and in ``/mod withheld``. As with the job buttons
(:mod:`bot.discord.buttons`), discord.py makes the button itself from a click's custom id, so the
click finds its handler on the client it came to: ``interaction.client.withheld_buttons``, typed by
:class:`WithheldButtonClient` (the bot's :class:`~bot.discord.withheld.WithheldReview`). Errors go
to the one error path (:func:`bot.discord.tree.report_error`).
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

import discord

from bot.discord.tree import report_error

__all__ = ["ACTIONS", "WithheldButton", "WithheldButtonClient", "WithheldButtonHandler", "withheld_view"]

ACTIONS: tuple[str, ...] = ("release", "delete")
TEMPLATE = re.compile(r"safety:(?P<action>release|delete):(?P<job_id>[A-Za-z0-9_-]{1,40})")
_LOOK: dict[str, tuple[str, str, discord.ButtonStyle]] = {
    "release": ("Release", "🔓", discord.ButtonStyle.success),
    "delete": ("Delete", "🗑️", discord.ButtonStyle.danger),
}


class WithheldButtonHandler(Protocol):
    async def on_withheld_button(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None: ...


@runtime_checkable
class WithheldButtonClient(Protocol):
    """A client that handles Release/Delete (the bot)."""

    @property
    def withheld_buttons(self) -> WithheldButtonHandler: ...


class WithheldButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=TEMPLATE):
    """Release or Delete on one withheld result; the action and job id live in its custom id."""

    def __init__(self, action: str, job_id: str, *, label: str | None = None) -> None:
        text, emoji, style = _LOOK[action]
        super().__init__(discord.ui.Button(label=label or text, emoji=emoji, style=style,
                                           custom_id=f"safety:{action}:{job_id}"))
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any],
                             match: re.Match[str], /) -> WithheldButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        client = interaction.client
        try:
            if not isinstance(client, WithheldButtonClient):
                raise RuntimeError(f"{type(client).__name__} handles no withheld results")
            await client.withheld_buttons.on_withheld_button(interaction, self.action, self.job_id)
        except Exception as exc:  # the one error path answers the moderator
            await report_error(interaction, exc, where=f"withheld {self.action}")


def withheld_view(job_ids: list[str], *, numbered: bool = False) -> discord.ui.View:
    """Release and Delete for each job (one row each, at most 5); ``numbered`` labels them 1, 2..."""
    view = discord.ui.View(timeout=None)
    for index, job_id in enumerate(job_ids[:5], start=1):
        for action in ACTIONS:
            label = f"{_LOOK[action][0]} {index}" if numbered else None
            button = WithheldButton(action, job_id, label=label)
            button.row = index - 1
            view.add_item(button)
    return view
