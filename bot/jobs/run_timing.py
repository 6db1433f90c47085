"""Run timing: how long each successful run took on its server, in parts, fed to the wait estimator.

:class:`RunTimer` watches every prompt event of every server's websocket hub
(:meth:`~bot.comfy.hub.ComfyHub.on_event`), stamped with the job service's clock (``monotonic()``)
as it arrives, so it needs nothing from the runner:

- ``execution_start`` opens the prompt's timeline (a prompt whose start was not seen, e.g. one
  followed again after a restart, is never timed);
- ``executing`` (a node starts) and ``progress`` (a node's step k of n) are noted, per node;
- ``execution_success`` closes it: when the prompt is a job's (``job_of_prompt``) and the
  workflow's progress node (the sampler) ran all its steps, one
  :class:`~bot.jobs.estimate.RunRecord` is given to the :class:`~bot.jobs.estimate.WaitEstimator`:
  *sampling* from the sampler's start to its last step, *encoding* from there to the success
  (VAE decode, the video node), *overhead* from the prompt's start to the sampler's (loading the
  image, conditioning); keyed by server and workflow, with the sampler's own step count and the
  job's frames and pixels (:mod:`bot.jobs.workload`);
- ``execution_error`` / ``execution_interrupted`` drop it: only successful runs are learnt.

Cold runs: a server whose websocket reconnects, or that answers again after being down, may have
restarted, so its next run loads the model: it is marked cold
(:meth:`~bot.jobs.estimate.WaitEstimator.server_started`) and the timelines of its prompts are
dropped (their events were lost). The estimator takes the first run of a server it has not seen
as cold too. Neither poisons its medians.

Memory: one small timeline per prompt running on a server, dropped at the prompt's end; prompts
that are no job's (another client of the server) or whose end never came are dropped by
:meth:`RunTimer.prune`, and at most :data:`MAX_TIMELINES` are kept. :meth:`RunTimer.started_at`
says when a prompt started (the remaining time of a running job).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from bot.clock import Clock
from bot.comfy.events import (
    Event,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    Progress,
    event_prompt_id,
)
from bot.comfy.hub import ComfyHub
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.estimate import Recorded, RunRecord, WaitEstimator
from bot.jobs.models import Job
from bot.jobs.workload import input_pixels, work_of
from bot.workflows import WorkflowRegistry

log = logging.getLogger(__name__)

__all__ = ["MAX_TIMELINES", "RunTimer"]

MAX_TIMELINES: Final = 64

#: ``job_of_prompt(server, prompt_id)``: the job whose prompt this is on that server, or None.
JobOfPrompt = Callable[[str, str], "Job | None"]


@dataclass(slots=True)
class _Timeline:
    """What one prompt did so far, in the clock's ``monotonic()`` seconds."""

    server: str
    started: float
    node_starts: dict[str, float] = field(default_factory=dict)
    last_ticks: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # node -> (value, max, at)


class RunTimer:
    """Times runs and feeds the estimator (see the module docstring). ``on_recorded()`` is
    called after each run the estimator kept (the waits shown may have changed)."""

    def __init__(self, estimator: WaitEstimator, *, clock: Clock, job_of_prompt: JobOfPrompt,
                 workflows: Callable[[], WorkflowRegistry], on_recorded: Callable[[], object] | None = None) -> None:
        self.estimator = estimator
        self.clock = clock
        self.job_of_prompt = job_of_prompt
        self.workflows = workflows
        self.on_recorded = on_recorded
        self._timelines: dict[str, _Timeline] = {}  # prompt id -> its timeline, oldest first

    def watch(self, hubs: Mapping[str, ComfyHub], pool: BackendPool) -> None:
        """Observe each server's hub (events and reconnects) and the pool's health changes."""
        for name, hub in hubs.items():
            hub.on_event(self._observer(name))
            hub.on_reconnect(self._reconnected(name))
        pool.add_listener(self._on_health)

    # ------------------------------------------------------------------ what happens

    def observe(self, server: str, event: Event) -> None:
        """One event of a prompt on ``server`` (see the module docstring)."""
        now = self.clock.monotonic()
        if isinstance(event, ExecutionStart):
            self._timelines.pop(event.prompt_id, None)
            while len(self._timelines) >= MAX_TIMELINES:
                self._timelines.pop(next(iter(self._timelines)))
            self._timelines[event.prompt_id] = _Timeline(server, now)
            return
        prompt_id = event_prompt_id(event)
        timeline = self._timelines.get(prompt_id) if prompt_id is not None else None
        if timeline is None or timeline.server != server:
            return
        if isinstance(event, Executing) and event.node is not None:
            timeline.node_starts.setdefault(event.node, now)
        elif isinstance(event, Progress) and event.node is not None:
            timeline.last_ticks[event.node] = (event.value, event.max, now)
        elif isinstance(event, ExecutionSuccess):
            del self._timelines[event.prompt_id]
            self._finish(event.prompt_id, timeline, now)
        elif isinstance(event, (ExecutionError, ExecutionInterrupted)):
            del self._timelines[event.prompt_id]

    def server_started(self, server: str) -> None:
        """``server`` may have restarted: its next run is cold; its prompts' timelines are dropped."""
        self.estimator.server_started(server)
        for prompt_id in [p for p, t in self._timelines.items() if t.server == server]:
            del self._timelines[prompt_id]

    def prune(self, live: Collection[str]) -> None:
        """Drop the timelines of prompts not in ``live`` (the prompts of the jobs on servers)."""
        for prompt_id in [p for p in self._timelines if p not in live]:
            del self._timelines[prompt_id]

    # ------------------------------------------------------------------ asking

    def started_at(self, prompt_id: str) -> float | None:
        """When the prompt started on its server (``monotonic()``), if that was seen."""
        timeline = self._timelines.get(prompt_id)
        return timeline.started if timeline is not None else None

    def __len__(self) -> int:
        """Prompts being timed now."""
        return len(self._timelines)

    # ------------------------------------------------------------------ helpers

    def _finish(self, prompt_id: str, timeline: _Timeline, ended: float) -> None:
        job = self.job_of_prompt(timeline.server, prompt_id)
        if job is None:
            return  # another client's prompt, or a job that has gone
        workflow = self.workflows().get(job.workflow)
        node = workflow.progress_node_id if workflow is not None else None
        sampler_start = timeline.node_starts.get(node) if node is not None else None
        last = timeline.last_ticks.get(node) if node is not None else None
        if sampler_start is None or last is None or last[1] < 1 or last[0] < last[1]:
            log.debug("job %s: run on %s not timed (its sampler's steps were not all seen)", job.id, timeline.server)
            return
        steps, last_at = last[1], last[2]
        work = replace(work_of(job.workflow, job.options, input_pixels(job), workflow), steps=steps)
        record = RunRecord(timeline.server, work, sampling_seconds=last_at - sampler_start,
                           encode_seconds=ended - last_at, overhead_seconds=sampler_start - timeline.started)
        kept = self.estimator.record(record)
        log.debug("job %s on %s: %.2f s sampling, %.2f s encoding, %.2f s overhead (%s, %d steps, %d frames, "
                  "%d px): %s", job.id, timeline.server, record.sampling_seconds, record.encode_seconds,
                  record.overhead_seconds, work.workflow, work.steps, work.frames, work.pixels, kept.value)
        if kept in (Recorded.WARM, Recorded.SHIFT) and self.on_recorded is not None:
            self.on_recorded()

    def _observer(self, server: str) -> Callable[[Event], None]:
        def observe(event: Event) -> None:
            self.observe(server, event)

        return observe

    def _reconnected(self, server: str) -> Callable[[], Awaitable[None]]:
        async def on_reconnect() -> None:
            self.server_started(server)

        return on_reconnect

    def _on_health(self, backend: Backend, healthy: bool) -> None:
        if healthy:
            self.server_started(backend.name)
