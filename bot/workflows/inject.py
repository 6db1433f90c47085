"""Option checking and injection: template + options -> a new graph (pure, no I/O).

:func:`resolve_options` turns what a member typed (or a shell ``name=value``) into checked
values, filling defaults and drawing a random seed from the injected RNG. :func:`inject`
writes them, plus the derived values (uploaded image name, size, filename prefix), into a
deep copy of the template; the template itself is never touched. Bad values raise
:class:`bot.errors.InvalidInput` with a member-facing message.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping, Protocol

from bot.errors import InvalidInput
from bot.workflows.model import OptionSpec, ResolvedOptions, Workflow


class RandomSource(Protocol):
    def randint(self, a: int, b: int) -> int: ...


def _fmt(number: int | float | None) -> str:
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return str(number)


def _range_message(spec: OptionSpec) -> str:
    if spec.min is not None and spec.max is not None:
        return f"{spec.name} must be between {_fmt(spec.min)} and {_fmt(spec.max)}"
    if spec.min is not None:
        return f"{spec.name} must be at least {_fmt(spec.min)}"
    return f"{spec.name} must be at most {_fmt(spec.max)}"


def check_value(spec: OptionSpec, value: Any) -> Any:
    """Coerce and check one option value; raises :class:`InvalidInput` for members."""
    if spec.type == "int":
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise InvalidInput(f"{spec.name} must be a whole number") from None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{spec.name} must be a whole number")
    elif spec.type == "float":
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise InvalidInput(f"{spec.name} must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInput(f"{spec.name} must be a number")
        try:
            value = float(value)
        except OverflowError:  # an int too big for a float
            raise InvalidInput(_range_message(spec)) from None
        if not math.isfinite(value):
            raise InvalidInput(f"{spec.name} must be a number")
    elif spec.type == "choice":
        if isinstance(value, str):
            lowered = value.strip().lower()
            value = next((c for c in spec.choices if c.lower() == lowered), value)
        if value not in spec.choices:
            shown = value if isinstance(value, str) and len(value) <= 20 and value.isprintable() else "that"
            raise InvalidInput(f"{spec.name} must be one of {', '.join(spec.choices)} ({shown} isn't available)")
        return value
    elif spec.type == "bool":
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        if not isinstance(value, bool):
            raise InvalidInput(f"{spec.name} must be true or false")
        return value
    else:  # str
        if not isinstance(value, str):
            raise InvalidInput(f"{spec.name} must be text")
        return value
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise InvalidInput(_range_message(spec))
    return value


def resolve_options(
    workflow: Workflow,
    raw: Mapping[str, Any] | None,
    rng: RandomSource | None = None,
    *,
    allow_admin: bool = False,
) -> ResolvedOptions:
    """Check ``raw`` against the member options and fill the rest.

    Missing options get their default; a missing ``random`` option (the seed) is drawn from
    ``rng`` (default: :class:`random.SystemRandom`). ``None`` values count as missing.
    Unknown names are refused; admin options only with ``allow_admin`` (shell use).
    """
    raw = {k: v for k, v in (raw or {}).items() if v is not None}
    allowed = {o.name for o in workflow.options.values() if o.kind == "member" or allow_admin}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        names = ", ".join(o.name for o in workflow.member_options)
        shown = unknown[0] if len(unknown[0]) <= 40 else unknown[0][:40] + "…"
        raise InvalidInput(f"unknown option {shown!r} for {workflow.name} (options: {names})")
    values: dict[str, Any] = {}
    for spec in workflow.options.values():
        if spec.name in raw:
            values[spec.name] = check_value(spec, raw[spec.name])
        elif spec.kind == "member":
            if spec.random:
                source = rng if rng is not None else random.SystemRandom()
                lo = int(spec.min) if spec.min is not None else 0
                values[spec.name] = source.randint(lo, int(spec.max))  # type: ignore[arg-type]
            else:
                values[spec.name] = spec.default
    return ResolvedOptions(values=values)


def _set(graph: dict[str, Any], node_id: str, input_name: str, value: Any) -> None:
    graph[node_id].setdefault("inputs", {})[input_name] = value


def inject(
    workflow: Workflow,
    options: Mapping[str, Any] | ResolvedOptions,
    *,
    image_name: str,
    width: int,
    height: int,
    filename_prefix: str,
    rng: RandomSource | None = None,
) -> dict[str, Any]:
    """A new API-format graph with options and derived values written in.

    ``options`` may be a :class:`ResolvedOptions` (already checked) or a plain mapping, which
    is checked with :func:`resolve_options` (a missing seed is then drawn from ``rng``).
    """
    resolved = options if isinstance(options, ResolvedOptions) else resolve_options(workflow, options, rng, allow_admin=True)
    graph = workflow.graph_copy()
    dropped: set[str] = set()
    for spec in workflow.options.values():
        if spec.name in resolved.values:
            value = check_value(spec, resolved[spec.name])
        elif spec.kind == "admin" and spec.value is not None:
            value = spec.value
        elif spec.kind == "member" and spec.default is not None:
            value = spec.default
        else:
            continue
        node_value = spec.node_value(value)
        for target in spec.targets:
            _set(graph, target.node_id, target.input, node_value)
        if spec.type == "choice":
            _apply_choice_extras(graph, spec, value)
            dropped.update(spec.drop.get(value, ()))
    derived = {"image": image_name, "width": int(width), "height": int(height), "filename_prefix": filename_prefix}
    for name, targets in workflow.derived.items():
        for target in targets:
            _set(graph, target.node_id, target.input, derived[name])
    for node_id in dropped:  # last, so bindings into a dropped node are harmless
        graph.pop(node_id, None)
    return graph


def _apply_choice_extras(graph: dict[str, Any], spec: OptionSpec, choice: str) -> None:
    mine = spec.extra.get(choice, ())
    keep = {(t.node_id, t.input) for t, _ in mine}
    for other, pairs in spec.extra.items():
        if other == choice:
            continue
        for target, _ in pairs:
            if (target.node_id, target.input) not in keep and target.node_id in graph:
                graph[target.node_id].get("inputs", {}).pop(target.input, None)
    for target, value in mine:
        _set(graph, target.node_id, target.input, value)
