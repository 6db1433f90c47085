"""The fleet: the ComfyUI servers' health, what each can run, evacuating a dead server, and removing prompts abandoned on one.

It listens to the server pool (health checks) and to each server's websocket hub (status
broadcasts with the queue length, reconnects):

- a server that stops answering is *evacuated* once its websocket is down too (while the
  websocket stays up the server is alive, only slow to answer HTTP, and moving its jobs would run
  them twice): every attempt on it ends with its server lost (``on_lost``, the runner);
- the prompts of jobs moved off a server that went away are remembered (:meth:`Fleet.abandon`)
  and stopped on it when it is back, so it does not run them too;
- which workflows each server can run is checked at start, when a server comes back or its
  websocket reconnects (it may have restarted with other node packs or models), and after the
  workflows are reloaded;
- :meth:`Fleet.require_a_server` refuses a new job at once when no server answers;
  :meth:`Fleet.server_views` is each server as ``/queue`` and ``/owner servers`` show it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.comfy.events import StatusEvent
from bot.errors import BackendUnavailable
from bot.jobs.backends import Backend, ServerView, WorkflowProblems
from bot.jobs.context import JobContext, comfy
from bot.jobs.runner import stop_on_server

log = logging.getLogger(__name__)

__all__ = ["Fleet"]

EVACUATION_GRACE = 20.0  # seconds a server's websocket may stay up after its HTTP stopped answering


class Fleet:
    """See the module docstring. ``on_lost(backend)`` ends every attempt running on ``backend``."""

    def __init__(self, ctx: JobContext, on_lost: Callable[[Backend], None]) -> None:
        self.ctx = ctx
        self.on_lost = on_lost
        self.abandoned: dict[str, set[str]] = {}  # server -> prompt ids to remove when it is back

    async def start(self, *, start_hubs: bool) -> None:
        """Listen to the hubs (starting them if the service owns them) and to the pool's health."""
        for name, hub in self.ctx.hubs.items():
            hub.on_status(self._status_listener(name))
            hub.on_reconnect(self._reconnect_listener(name))
            if start_hubs:
                await hub.start()
        self.ctx.pool.add_listener(self.on_health)

    # ------------------------------------------------------------------ health

    def require_a_server(self) -> None:
        """Refuse at once when no server answers (rather than letting the job wait for nothing)."""
        for backend in self.ctx.pool:
            hub = self.ctx.hubs.get(backend.name)
            if backend.healthy and (backend.consecutive_failures == 0 or (hub is not None and hub.connected)):
                return
        raise BackendUnavailable("The image servers are offline right now. Please try again in a few minutes.")

    def on_health(self, backend: Backend, healthy: bool) -> None:
        ctx = self.ctx
        if healthy:
            abandoned = self.abandoned.pop(backend.name, set())
            if abandoned:
                ctx.tasks.spawn(self._remove_abandoned(backend, abandoned))
            if ctx.started and not ctx.closing:
                ctx.tasks.spawn(self.check_workflow_support([backend.name]))
            ctx.wake()
            return
        ctx.tasks.spawn(self.evacuate(backend))

    async def evacuate(self, backend: Backend, *, grace: float = EVACUATION_GRACE) -> None:
        """A server stopped answering: once its websocket is down too, its jobs go elsewhere."""
        hub = self.ctx.hubs.get(backend.name)
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while hub is not None and hub.connected:
            if backend.healthy or loop.time() > end:
                return
            await asyncio.sleep(0.25)
        if not backend.healthy:
            self.on_lost(backend)

    # ------------------------------------------------------------------ abandoned prompts

    def abandon(self, server: str, prompt_id: str) -> None:
        """A prompt left on a server that went away: stop it there when the server is back."""
        self.abandoned.setdefault(server, set()).add(prompt_id)

    def abandoned_count(self) -> int:
        return sum(len(ids) for ids in self.abandoned.values())

    async def _remove_abandoned(self, backend: Backend, prompt_ids: set[str]) -> None:
        """A server that was given up on is back: make sure it does not run those prompts too."""
        for prompt_id in prompt_ids:
            await stop_on_server(backend, prompt_id)

    # ------------------------------------------------------------------ what each server can run

    async def check_workflow_support(self, names: list[str] | None = None) -> None:
        """Ask the servers (all, or those named) which workflows they can run; see
        :mod:`bot.workflows.support`. A server that does not answer stays as it was."""
        ctx = self.ctx
        workflows = list(ctx.workflows)
        if not workflows:
            return
        backends = [b for b in ctx.pool if names is None or b.name in names]
        await asyncio.gather(*(ctx.support.check(b.name, comfy(b), workflows) for b in backends if b.healthy))
        checked = [b.name for b in ctx.pool if ctx.support.known(b.name)]
        if checked and not any(ctx.support.can_run(s, w.name) for s in checked for w in workflows):
            log.error("No checked server can run any workflow (%s): /animate refuses every job until one can; "
                      "see the warnings above or run python -m bot doctor", ", ".join(checked))
        ctx.wake()

    def server_views(self) -> list[ServerView]:
        """Each server as ``/queue`` and ``/owner servers`` show it (by name, never a URL)."""
        ctx = self.ctx
        now = ctx.clock.now()
        views = []
        for backend in ctx.pool:
            status = backend.status()
            hub = ctx.hubs.get(status.name)
            problems = tuple(
                WorkflowProblems(w.name, ctx.support.problems(status.name, w.name),
                                 ctx.support.partial_problems(status.name, w.name))
                for w in ctx.workflows
            )
            views.append(ServerView(
                status=status,
                seen_ago=None if status.last_seen is None else now - status.last_seen,
                websocket_connected=hub is not None and hub.connected,
                last_error=backend.last_error,
                workflow_problems=tuple(p for p in problems if p.blocking or p.partial),
            ))
        return views

    # ------------------------------------------------------------------ hub listeners

    def _status_listener(self, name: str) -> Callable[[StatusEvent], Awaitable[None]]:
        async def on_status(event: StatusEvent) -> None:
            if event.queue_remaining is not None:
                self.ctx.pool.update_queue_remaining(name, event.queue_remaining)

        return on_status

    def _reconnect_listener(self, name: str) -> Callable[[], Awaitable[None]]:
        async def on_reconnect() -> None:
            # the server may have restarted with other node packs or models
            if self.ctx.started and not self.ctx.closing:
                self.ctx.tasks.spawn(self.check_workflow_support([name]))

        return on_reconnect
