"""Which workflow a job runs, and which servers may take it, from what each server can run.

The job service asks a :class:`WorkflowRouter`:

- which workflow a member gets when they name none: the default if an answering server can run
  it with their options, else the first other workflow that can (a server without
  VideoHelperSuite still animates with the core-nodes workflow);
- whether a workflow and options can be accepted now, refusing with a reason members read;
- for a waiting job (its :class:`Needs`), which servers may take it, whether any server ever
  could, and why not.

What each server can run is learned by :class:`bot.workflows.support.WorkflowSupport`; a server
not checked yet counts as able to run everything. No discord import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import BackendUnavailable, InvalidInput
from bot.jobs.backends import Backend, BackendPool
from bot.jobs.models import Job
from bot.jobs.estimate import Work
from bot.jobs.workload import input_pixels, work_of
from bot.workflows import Workflow, WorkflowRegistry, resolve_options
from bot.workflows.support import WorkflowSupport, unavailable_choice_message, unrunnable_message

__all__ = ["Needs", "WorkflowRouter"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Needs:
    """What a waiting job needs from a server: its workflow, run with its options (and, for the
    wait estimate only, the pixels of its prepared image: :func:`bot.jobs.workload.input_pixels`)."""

    workflow: str
    options: Mapping[str, Any] = field(default_factory=dict)
    pixels: int | None = None
    work: Work | None = field(default=None, compare=False)  # for the wait estimate, worked out once

    @classmethod
    def of(cls, job: Job, workflow: Workflow | None = None) -> Needs:
        """What ``job`` needs; ``workflow``: its workflow's definition (the defaults of the options it left out)."""
        pixels = input_pixels(job)
        return cls(job.workflow, job.options, pixels, work_of(job.workflow, job.options, pixels, workflow))


class WorkflowRouter:
    """See the module docstring. ``workflows`` is read on each call (the owner may reload them)."""

    def __init__(self, pool: BackendPool, support: WorkflowSupport, workflows: Callable[[], WorkflowRegistry]) -> None:
        self.pool = pool
        self.support = support
        self._workflows = workflows

    # ---- choosing a workflow for a new job

    def workflow_for(self, name: str | None, options: Mapping[str, Any] | None = None) -> Workflow:
        """The named workflow (:class:`InvalidInput` if there is none), or the one to use when a
        member names none (see the module docstring)."""
        registry = self._workflows()
        if name is not None:
            workflow = registry.get(name)
            if workflow is None:
                names = ", ".join(registry.names()) or "none"
                raise InvalidInput(f"There is no workflow called {name!r}. Available: {names}.")
            return workflow
        default = registry.default
        if default is None:
            raise BackendUnavailable("No workflow is set up on this bot yet. An admin has been told.",
                                     detail="no workflow loaded")
        candidates = [default, *(w for w in registry if w.name != default.name)]
        runnable = [w for w in candidates if self.runnable_now(w.name)]
        for workflow in runnable:
            if self.runnable_now(workflow.name, options) and _accepts(workflow, options):
                if workflow is not default:
                    log.info("Workflow %s cannot run these options on any answering server; using %s",
                             default.name, workflow.name)
                return workflow
        # none takes these options: the first that runs explains why (or the default, when none runs)
        return runnable[0] if runnable else default

    def require_runnable(self, workflow: Workflow, options: Mapping[str, Any] | None = None) -> None:
        """Refuse (:class:`BackendUnavailable`) a workflow, or a choice of its options, that no
        answering server can run."""
        if not self.runnable_now(workflow.name):
            raise BackendUnavailable(unrunnable_message(workflow.name, self._runnable_names()),
                                     detail=f"workflow {workflow.name} cannot run on any answering server")
        if options and not self.runnable_now(workflow.name, options):
            option, value = self._refused_choice(workflow.name, options, [b for b in self.pool if b.healthy])
            raise BackendUnavailable(unavailable_choice_message(option, value),
                                     detail=f"no answering server offers {option}={value} for {workflow.name}")

    def runnable_now(self, workflow: str, options: Mapping[str, Any] | None = None) -> bool:
        """Whether an answering server can (or may: not checked yet) run ``workflow`` (with ``options``)."""
        return self.support.runnable_on(workflow, [b.name for b in self.pool if b.healthy], options)

    # ---- placing a waiting job

    def accepts(self, needs: Needs | None) -> Callable[[Backend], bool] | None:
        """For :meth:`BackendPool.choose`: the servers that can run ``needs`` (None: any)."""
        if needs is None:
            return None
        return lambda backend: self.support.can_run(backend.name, needs.workflow, needs.options)

    def runnable_anywhere(self, needs: Needs) -> bool:
        """Whether any configured server, answering or not, can (or may) run ``needs``."""
        return self.support.runnable_on(needs.workflow, [b.name for b in self.pool], needs.options)

    def waiting_runnable(self, needs: Needs | None) -> bool:
        """Whether an answering server can take a waiting job (without needs: any answering server)."""
        if needs is None:
            return any(b.healthy for b in self.pool)
        return self.runnable_now(needs.workflow, needs.options)

    def unrunnable_reason(self, needs: Needs) -> str:
        """Why no server can run ``needs`` (for a job that waited and now never can)."""
        if not self.support.runnable_on(needs.workflow, [b.name for b in self.pool]):
            return unrunnable_message(needs.workflow, self._runnable_names())
        option, value = self._refused_choice(needs.workflow, needs.options, list(self.pool))
        return unavailable_choice_message(option, value)

    # ---- helpers

    def _runnable_names(self) -> list[str]:
        return [w.name for w in self._workflows() if self.runnable_now(w.name)]

    def _refused_choice(self, workflow: str, options: Mapping[str, Any], backends: list[Backend]) -> tuple[str, Any]:
        for backend in backends:
            for choice in self.support.refused_choices(backend.name, workflow, options):
                return choice
        return ("option", "you chose")  # not reached: a refusal always names its choice


def _accepts(workflow: Workflow, options: Mapping[str, Any] | None) -> bool:
    """Whether ``options`` are valid for ``workflow`` (names, types, ranges, choices)."""
    try:
        resolve_options(workflow, options or {})
    except InvalidInput:
        return False
    return True
