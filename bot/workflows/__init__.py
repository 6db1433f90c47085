"""Workflows: API-format ComfyUI graphs bound to options by a TOML manifest.

- :mod:`bot.workflows.loader`: load ``WORKFLOWS_DIR`` into a :class:`WorkflowRegistry` (:func:`load_registry`).
- :mod:`bot.workflows.inject`: check options and build a job's graph (pure).
- :mod:`bot.workflows.validate`: check a workflow against a server's ``/object_info``.

Nothing here imports discord or does I/O on import.
"""

from bot.workflows.inject import check_value, inject, resolve_options
from bot.workflows.loader import (
    LoadError,
    LoadResult,
    WorkflowError,
    WorkflowRegistry,
    build_workflow,
    load_registry,
    load_workflow,
    load_workflows,
)
from bot.workflows.model import SEED_MAX, OptionSpec, ResolvedOptions, Target, Workflow
from bot.workflows.validate import Problem, merge_object_info, validate_against

__all__ = [
    "SEED_MAX",
    "LoadError",
    "LoadResult",
    "OptionSpec",
    "Problem",
    "ResolvedOptions",
    "Target",
    "Workflow",
    "WorkflowError",
    "WorkflowRegistry",
    "build_workflow",
    "check_value",
    "inject",
    "load_registry",
    "load_workflow",
    "load_workflows",
    "merge_object_info",
    "resolve_options",
    "validate_against",
]
