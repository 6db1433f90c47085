"""``/animate`` and the "Animate image" message menu: a thin adapter over the bot's :class:`AnimateFlow`.

The ``/animate`` options are built at setup from the default workflow's member options
(:class:`~bot.workflows.model.OptionSpec`): ints and floats become ``app_commands.Range``
parameters, choices become ``Literal`` choices, so Discord types and range-checks them; the
bot checks them again (the service raises :class:`~bot.errors.InvalidInput`). With several
workflows a ``workflow`` option with autocomplete is added.

Both hand the image to :class:`bot.discord.animate_flow.AnimateFlow`, which checks, admits, defers
and submits the job (see there). The menu first checks that the member may animate that message's
image. The job buttons are not here: discord.py routes a click to the bot's flow directly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Optional

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import AnimateBot
from bot.discord.animate_flow import AnimateFlow
from bot.jobs.service import JobService
from bot.moderation.policy import AdmissionPolicy
from bot.settings import Settings
from bot.workflows import OptionSpec, Workflow

log = logging.getLogger(__name__)

COMMAND_DESCRIPTION = "Animate an image into a short video"


def _annotation(spec: OptionSpec) -> Any:
    """The parameter annotation Discord turns into a typed, range-checked option."""
    if spec.type == "int":
        lo = int(spec.min) if spec.min is not None else None
        hi = int(spec.max) if spec.max is not None else None
        return app_commands.Range[int, lo, hi] if lo is not None or hi is not None else int
    if spec.type == "float":
        lo_f = float(spec.min) if spec.min is not None else None
        hi_f = float(spec.max) if spec.max is not None else None
        return app_commands.Range[float, lo_f, hi_f] if lo_f is not None or hi_f is not None else float
    if spec.type == "choice":
        return Literal[tuple(spec.choices)]
    if spec.type == "bool":
        return bool
    return str


def _describe(spec: OptionSpec) -> str:
    text = spec.description or spec.name
    if spec.default is not None and spec.type != "choice":
        text += f" (default {spec.default})"
    return text[:100]


def build_animate_command(workflow: Workflow, *, with_workflow: bool,
                          handler: Any, guild_only: bool = True) -> app_commands.Command[Any, ..., Any]:
    """``/animate`` with one parameter per member option of ``workflow`` (see module docstring)."""
    specs = [s for s in workflow.member_options if s.name not in ("image", "workflow")]

    async def animate(interaction: discord.Interaction[Any], **kwargs: Any) -> None:
        image = kwargs.pop("image")
        chosen = kwargs.pop("workflow", None)
        await handler.animate_attachment(interaction, image, workflow=chosen, options=kwargs)

    params = [
        inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=discord.Interaction),
        inspect.Parameter("image", inspect.Parameter.KEYWORD_ONLY, annotation=discord.Attachment),
    ]
    descriptions = {"image": "The image to animate (PNG, JPEG, WebP…)"}
    for spec in specs:
        params.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=Optional[_annotation(spec)], default=None))
        descriptions[spec.name] = _describe(spec)
    if with_workflow:
        params.append(inspect.Parameter("workflow", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                                        default=None))
        descriptions["workflow"] = "Which workflow to run (default: the server's default)"
    animate.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    animate.__qualname__ = "animate"
    animate.__discord_app_commands_param_description__ = descriptions  # type: ignore[attr-defined]
    command: app_commands.Command[Any, ..., Any] = app_commands.Command(
        name="animate", description=COMMAND_DESCRIPTION, callback=animate
    )
    command.guild_only = guild_only
    if with_workflow:
        command.autocomplete("workflow")(handler.workflow_autocomplete)
    return command


class Animate(commands.Cog):
    """``/animate`` and the "Animate image" menu."""

    def __init__(self, *, flow: AnimateFlow, jobs: JobService, policy: AdmissionPolicy, settings: Settings) -> None:
        self.flow = flow
        self.jobs = jobs
        self.policy = policy
        workflow = jobs.workflows.default
        self.animate_command: app_commands.Command[Any, ..., Any] | None = None
        if workflow is not None:
            self.animate_command = build_animate_command(workflow, with_workflow=len(jobs.workflows) > 1, handler=self,
                                                         guild_only=not settings.allow_dms)
        menu = app_commands.ContextMenu(name="Animate image", callback=self.animate_message)
        menu.guild_only = not settings.allow_dms
        self.context_menus = [menu]

    async def animate_message(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        """The "Animate image" menu: see :meth:`AnimateFlow.animate_message`."""
        await self.flow.animate_message(interaction, message)

    async def animate_attachment(self, interaction: discord.Interaction[Any], image: discord.Attachment, *,
                                 workflow: str | None, options: Mapping[str, Any]) -> None:
        """``/animate``: see :meth:`AnimateFlow.animate_attachment`."""
        await self.flow.animate_attachment(interaction, image, workflow=workflow, options=options)

    async def workflow_autocomplete(self, interaction: discord.Interaction[Any],
                                    current: str) -> list[app_commands.Choice[str]]:
        lowered = current.lower()
        return [app_commands.Choice(name=f"{w.name}: {w.description}"[:100], value=w.name)
                for w in self.jobs.workflows if lowered in w.name.lower()][:25]


async def setup(bot: AnimateBot) -> None:
    """The cog gets its services from the bot, explicitly; ``/animate`` exists once a default workflow does."""
    cog = Animate(flow=bot.animate_flow, jobs=bot.jobs, policy=bot.policy, settings=bot.settings)
    await bot.add_cog(cog)
    if cog.animate_command is not None:
        bot.tree.add_command(cog.animate_command)


__all__: Sequence[str] = ["Animate", "build_animate_command", "setup"]
