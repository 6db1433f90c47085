"""Which workflows each ComfyUI server can run, learned from its ``/object_info``.

A server without VideoHelperSuite cannot run the VHS workflow, and one without the checkpoint
cannot run any SVD workflow. Only problems that stop every job count (a missing node, or a
problem with the default options, see :attr:`bot.workflows.validate.Problem.blocking`); one that
stops only some option values (a format the server's VHS lacks) is logged for the admin and
kept per value (:attr:`~bot.workflows.validate.Problem.choice`). The job service checks every
server when it starts, when a server comes back or its websocket reconnects (it may have
restarted with other node packs), and when the workflows are reloaded. Jobs then go only to
servers that can run their workflow with their options (:mod:`bot.jobs.routing`), and what no
answering server can run is refused at once instead of failing later inside ComfyUI.

Not checked yet, or the check failed: "can run". ``POST /prompt`` still validates, and its
refusal fails the job with a reason. Only the node classes the workflows use are fetched
(``/object_info/{class}``), not the server's full 1-2 MB node list. No discord import.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from bot.workflows import Problem, Workflow, validate_against
from bot.workflows.validate import merge_object_info

__all__ = [
    "NodeInfoClient",
    "WorkflowSupport",
    "blocking",
    "check_workflows",
    "unavailable_choice_message",
    "unrunnable_message",
]

log = logging.getLogger(__name__)


class NodeInfoClient(Protocol):
    """What a support check needs from a ComfyUI client."""

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]: ...


async def check_workflows(client: NodeInfoClient, workflows: Sequence[Workflow]) -> dict[str, tuple[Problem, ...]]:
    """Each workflow's problems on the server behind ``client`` (none blocking: it runs there).

    Raises whatever the client raises when the server does not answer.
    """
    classes = sorted({str(node["class_type"]) for w in workflows for node in w.template.values()})
    parts = await asyncio.gather(*(client.object_info(c) for c in classes))
    info = merge_object_info(parts)

    def validate() -> dict[str, tuple[Problem, ...]]:
        return {w.name: tuple(validate_against(w, info)) for w in workflows}

    return await asyncio.to_thread(validate)


def blocking(problems: Sequence[Problem]) -> tuple[str, ...]:
    """The messages of the problems that stop every job."""
    return tuple(p.message for p in problems if p.blocking)


def unrunnable_message(workflow: str, alternatives: Iterable[str] = ()) -> str:
    """What a member reads when no image server can run ``workflow`` right now."""
    others = [name for name in alternatives if name != workflow]
    text = (f"The image servers can't run the **{workflow}** workflow right now "
            "(something it needs is not installed). An admin has been told.")
    if others:
        text += " Try workflow " + " or ".join(f"**{name}**" for name in others) + "."
    return text


def unavailable_choice_message(option: str, value: Any) -> str:
    """What a member reads when no image server offers the option value they chose."""
    return f"The {option} **{value}** isn't available on the image servers right now. Please choose another {option}."


class WorkflowSupport:
    """Per server, the workflows it cannot run and why (see the module docstring)."""

    def __init__(self, *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self._problems: dict[str, dict[str, tuple[Problem, ...]]] = {}

    async def check(self, server: str, client: NodeInfoClient, workflows: Sequence[Workflow]) -> bool:
        """Ask ``server`` which of ``workflows`` it can run; False if it did not answer.

        A server that does not answer keeps what was known before (or stays unknown).
        """
        try:
            async with asyncio.timeout(self.timeout):
                found = await check_workflows(client, workflows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not known"; logged without detail
            log.warning("Could not check which workflows %s can run (%s)", server, type(exc).__name__)
            return False
        before = self._problems.get(server, {})
        for name, problems in found.items():
            if problems == before.get(name, ()):
                continue
            stopping = blocking(problems)
            if stopping:
                log.warning("Workflow %s cannot run on %s: %s", name, server, "; ".join(stopping))
            elif blocking(before.get(name, ())):
                log.info("Workflow %s can run on %s again", name, server)
            partial = [p.message for p in problems if not p.blocking]
            if partial:
                log.warning("Workflow %s on %s: some option values will be refused: %s", name, server, "; ".join(partial))
        self._problems[server] = found
        return True

    def known(self, server: str) -> bool:
        return server in self._problems

    def can_run(self, server: str, workflow: str, options: Mapping[str, Any] | None = None) -> bool:
        """False only when ``server`` was checked and ``workflow`` has a blocking problem there,
        or (given a job's ``options``) a problem with one of the values it chose."""
        return not self.problems(server, workflow) and not self.refused_choices(server, workflow, options)

    def refused_choices(
        self, server: str, workflow: str, options: Mapping[str, Any] | None
    ) -> list[tuple[str, Any]]:
        """The ``(option, value)`` choices in ``options`` that ``server`` would refuse."""
        if not options:
            return []
        found = self._problems.get(server, {}).get(workflow, ())
        return [p.choice for p in found if p.choice is not None and options.get(p.choice[0]) == p.choice[1]]

    def problems(self, server: str, workflow: str) -> tuple[str, ...]:
        """Why ``workflow`` cannot run on ``server`` at all (empty: it can, or not checked)."""
        return blocking(self._problems.get(server, {}).get(workflow, ()))

    def partial_problems(self, server: str, workflow: str) -> tuple[str, ...]:
        """Option values of ``workflow`` that ``server`` would refuse (the workflow still runs)."""
        return tuple(p.message for p in self._problems.get(server, {}).get(workflow, ()) if not p.blocking)

    def runnable_on(self, workflow: str, servers: Iterable[str], options: Mapping[str, Any] | None = None) -> bool:
        """Whether any of ``servers`` can (or may) run ``workflow`` (with ``options``)."""
        return any(self.can_run(server, workflow, options) for server in servers)
