"""A server's option defaults and cost caps, and the pure rules that apply them (no I/O, no discord).

:class:`OptionCaps` are a guild's upper bounds on what a job may cost: the most frames, the most
sampling steps, the result formats allowed, and how many times a result may be extended.
:class:`OptionRules` pairs them with the guild's defaults for member options a member leaves out
(e.g. format mp4, 14 frames). :mod:`bot.storage.guilds` keeps them (``guild_options``);
:meth:`bot.moderation.policy.AdmissionPolicy.option_rules` reads them.

The rules, each a pure function:

- :func:`validate_caps` and :func:`validate_defaults`: a moderator's new values, checked against
  *every* workflow the bot may run or fall back to (the loaded ones) and against each other; an
  :class:`~bot.errors.InvalidInput` lists each bad value ("format gif is not available on the
  fallback workflow svd_img2vid_core (it offers mp4, webp)");
- :func:`check_caps`: a member's chosen options against the caps (refused, naming the cap);
- :func:`apply_defaults` then :func:`cap_workflow_defaults`: fill what the member left out, first
  with the server's defaults, then with the workflow's own, lowered to the caps;
- :func:`clamp_to_caps`: a stored job's options brought under today's caps, with the notes to tell
  the member (Re-roll, More/Less motion, and any later variation such as Extend).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from bot.errors import InvalidInput
from bot.moderation import messages
from bot.workflows import OptionSpec, Workflow, WorkflowRegistry, check_value

__all__ = [
    "DEFAULTABLE",
    "DEFAULT_MAX_EXTENSIONS",
    "MAX_EXTENSIONS_LIMIT",
    "OptionCaps",
    "OptionRules",
    "Clamped",
    "validate_caps",
    "validate_defaults",
    "check_caps",
    "apply_defaults",
    "cap_workflow_defaults",
    "clamp_to_caps",
    "parse_formats",
    "describe_rules",
]

log = logging.getLogger(__name__)

FRAMES: Final = "frames"
STEPS: Final = "steps"
FORMAT: Final = "format"
#: Member options a server may give a default (the seed stays random; the workflow is the member's).
DEFAULTABLE: tuple[str, ...] = ("motion", "frames", "fps", "augmentation", "steps", "cfg", "format", "fit", "loop")
#: How many times a result may be extended when the server sets nothing.
DEFAULT_MAX_EXTENSIONS: Final = 3
#: The highest ``max_extensions`` a moderator may set.
MAX_EXTENSIONS_LIMIT: Final = 10


@dataclass(frozen=True)
class OptionCaps:
    """A guild's upper bounds. ``None``: no cap of the server's own (the workflow's range applies);
    ``allowed_formats`` None: every format the workflow offers. ``max_extensions``: how many times
    one result may be extended (default :data:`DEFAULT_MAX_EXTENSIONS`)."""

    max_frames: int | None = None
    max_steps: int | None = None
    allowed_formats: tuple[str, ...] | None = None
    max_extensions: int = DEFAULT_MAX_EXTENSIONS

    def __post_init__(self) -> None:
        for name in ("max_frames", "max_steps"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else int(value))
        if self.allowed_formats is not None:
            object.__setattr__(self, "allowed_formats", tuple(str(f) for f in self.allowed_formats))
        object.__setattr__(self, "max_extensions", int(self.max_extensions))

    @property
    def is_default(self) -> bool:
        """Nothing set by the server."""
        return self == OptionCaps()

    def allows_format(self, value: Any) -> bool:
        return self.allowed_formats is None or str(value).lower() in self.allowed_formats


@dataclass(frozen=True)
class OptionRules:
    """A guild's option defaults (option name -> value) and caps. Direct messages get the empty rules."""

    defaults: Mapping[str, Any] = field(default_factory=dict)
    caps: OptionCaps = field(default_factory=OptionCaps)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def is_default(self) -> bool:
        return not self.defaults and self.caps.is_default


@dataclass(frozen=True)
class Clamped:
    """A stored job's options under today's caps: ``options`` (all of them), ``changed`` (only
    the values the caps lowered or replaced, to pass as overrides) and the ``notes`` to tell the member."""

    options: dict[str, Any]
    changed: dict[str, Any]
    notes: tuple[str, ...]


# --------------------------------------------------------------------------- helpers


def _role(registry: WorkflowRegistry, workflow: Workflow) -> str:
    """``the default workflow svd_img2vid`` or ``the fallback workflow svd_img2vid_core``."""
    default = registry.default
    kind = "default" if default is not None and default.name == workflow.name else "fallback"
    return f"the {kind} workflow {workflow.name}"


def _per_workflow(found: list[tuple[str, Workflow]], registry: WorkflowRegistry, *, every: str = "every") -> list[str]:
    """Problems written with ``{where}`` (and ``{offer}``) for the workflow, each said once: "every
    workflow" (or ``every`` = "any") when all of several workflows have it, else each by its role."""
    problems: list[str] = []
    for template in dict.fromkeys(t for t, _ in found):
        workflows = [w for t, w in found if t == template]
        if len(workflows) > 1 and len(workflows) == len(registry):
            problems.append(template.format(where=f"{every} workflow", offer="they offer"))
        else:
            problems += [template.format(where=_role(registry, w), offer="it offers") for w in workflows]
    return problems


def _specs(registry: WorkflowRegistry, name: str) -> list[tuple[Workflow, OptionSpec]]:
    """Each workflow's member option ``name`` (workflows without it left out)."""
    found = []
    for workflow in registry:
        spec = workflow.options.get(name)
        if spec is not None and spec.is_member:
            found.append((workflow, spec))
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_formats(text: str) -> tuple[str, ...]:
    """``"mp4, webp"`` or ``"mp4 webp"`` -> ``("mp4", "webp")`` (lower case, each once, in order)."""
    found: list[str] = []
    for part in text.replace(",", " ").split():
        name = part.strip().lower()
        if name and name not in found:
            found.append(name)
    return tuple(found)


# --------------------------------------------------------------------------- a moderator's values


def _cap_problems(name: str, label: str, cap: int | None, registry: WorkflowRegistry) -> list[str]:
    if cap is None:
        return []
    specs = [(w, s) for w, s in _specs(registry, name) if s.type == "int"]
    if not specs:
        return [f"no workflow has a {name} option to cap"]
    found = []
    for workflow, spec in specs:
        if spec.min is not None and cap < spec.min:
            unit = name[:-1] if spec.min == 1 and name.endswith("s") else name
            found.append((f"{label} {cap} is below what {{where}} needs (at least {_fmt(spec.min)} {unit})", workflow))
    problems = _per_workflow(found, registry)
    highest = [s.max for _, s in specs]
    if all(h is not None for h in highest) and cap > max(h for h in highest if h is not None):
        top = max(h for h in highest if h is not None)
        problems.append(f"{label} {cap} is above every workflow's own limit ({_fmt(top)}), so it would cap nothing")
    return problems


def validate_caps(caps: OptionCaps, registry: WorkflowRegistry, defaults: Mapping[str, Any] | None = None) -> OptionCaps:
    """``caps`` checked against every loaded workflow and the server's ``defaults``; returns them
    normalised (formats in lower case, each once). Raises :class:`InvalidInput` listing each problem."""
    problems = _cap_problems(FRAMES, "max frames", caps.max_frames, registry)
    problems += _cap_problems(STEPS, "max steps", caps.max_steps, registry)
    formats = caps.allowed_formats
    if formats is not None:
        formats = parse_formats(" ".join(formats))
        specs = _specs(registry, FORMAT)
        offered = sorted({c for _, s in specs for c in s.choices})
        if not formats:
            problems.append("allow at least one format")
        for name in formats:
            if name not in offered:
                problems.append(f"format {name} is not offered by any workflow (they offer {', '.join(offered)})")
        for workflow, spec in specs:
            if formats and not set(formats) & set(spec.choices):
                problems.append(f"with only {', '.join(formats)} allowed, {_role(registry, workflow)} could make no "
                                f"result (it offers {', '.join(spec.choices)}): allow one of those too")
    if not 0 <= caps.max_extensions <= MAX_EXTENSIONS_LIMIT:
        problems.append(f"max extensions must be between 0 and {MAX_EXTENSIONS_LIMIT}")
    normalised = OptionCaps(caps.max_frames, caps.max_steps, formats, caps.max_extensions)
    for name, value in (defaults or {}).items():
        problem = _default_above_cap(name, value, normalised)
        if problem:
            problems.append(f"{problem}: change or clear that default first (/mod defaults)")
    _raise(problems, "Those caps can't be used")
    return normalised


def _default_above_cap(name: str, value: Any, caps: OptionCaps) -> str | None:
    number = _number(value)
    if name == FRAMES and caps.max_frames is not None and number is not None and number > caps.max_frames:
        return f"the server's default frames {_fmt(value)} is above the cap of {caps.max_frames}"
    if name == STEPS and caps.max_steps is not None and number is not None and number > caps.max_steps:
        return f"the server's default steps {_fmt(value)} is above the cap of {caps.max_steps}"
    if name == FORMAT and not caps.allows_format(value):
        return f"the server's default format {value} is not among the allowed formats"
    return None


def _default_problems(name: str, value: Any, registry: WorkflowRegistry) -> tuple[Any, list[str]]:
    """(the value as the workflows read it, problems) for one default on every workflow."""
    if name not in DEFAULTABLE:
        return value, [f"{name} cannot have a server default (defaults: {', '.join(DEFAULTABLE)})"]
    found: list[tuple[str, Workflow]] = []
    missing: list[tuple[str, Workflow]] = []
    checked = value
    shown = str(_fmt(value))[:40].replace("{", "(").replace("}", ")")
    for workflow in registry:
        spec = workflow.options.get(name)
        if spec is None or not spec.is_member:
            missing.append((f"{name} is not an option of {{where}}", workflow))
            continue
        try:
            checked = check_value(spec, value)
        except InvalidInput:
            if spec.type == "choice":
                missing.append((f"{name} {shown} is not available on {{where}} ({{offer}} {', '.join(spec.choices)})",
                                workflow))
            else:
                span = f"{_fmt(spec.min)}–{_fmt(spec.max)}" if spec.min is not None and spec.max is not None else "its range"
                found.append((f"{name} {shown} is outside {{where}}'s range ({span})", workflow))
    return checked, _per_workflow(missing, registry, every="any") + _per_workflow(found, registry)


def validate_defaults(defaults: Mapping[str, Any], registry: WorkflowRegistry, caps: OptionCaps) -> dict[str, Any]:
    """``defaults`` checked against every loaded workflow (a default must work on each one the bot
    may fall back to) and the ``caps``; returns them normalised. Raises :class:`InvalidInput`."""
    if not len(registry):
        raise InvalidInput("No workflow is loaded, so no default can be checked.")
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for name, value in defaults.items():
        checked[name], found = _default_problems(name, value, registry)
        if not found and (above := _default_above_cap(name, checked[name], caps)):
            found = [above.replace("the server's default", "the default") + " (/mod caps)"]
        problems += found
    _raise(problems, "Those defaults can't be used")
    return checked


def _raise(problems: list[str], lead: str) -> None:
    if not problems:
        return
    if len(problems) == 1:
        raise InvalidInput(f"{lead}: {problems[0]}.")
    raise InvalidInput(f"{lead}:\n" + "\n".join(f"• {p}" for p in problems))


# --------------------------------------------------------------------------- a member's request


def check_caps(caps: OptionCaps, options: Mapping[str, Any]) -> None:
    """Refuse (:class:`InvalidInput`, naming the cap) a value the member chose above a cap."""
    frames, steps = _number(options.get(FRAMES)), _number(options.get(STEPS))
    if caps.max_frames is not None and frames is not None and frames > caps.max_frames:
        raise InvalidInput(messages.above_cap("frames", caps.max_frames, _fmt(options[FRAMES])),
                           detail=f"frames {frames} above the cap {caps.max_frames}")
    if caps.max_steps is not None and steps is not None and steps > caps.max_steps:
        raise InvalidInput(messages.above_cap("steps", caps.max_steps, _fmt(options[STEPS])),
                           detail=f"steps {steps} above the cap {caps.max_steps}")
    chosen = options.get(FORMAT)
    if chosen is not None and caps.allowed_formats is not None and not caps.allows_format(chosen):
        raise InvalidInput(messages.format_not_allowed(caps.allowed_formats, str(chosen)),
                           detail=f"format {chosen} not allowed")


def apply_defaults(rules: OptionRules, options: Mapping[str, Any], registry: WorkflowRegistry) -> dict[str, Any]:
    """``options`` with the server's default for each option the member left out (None counts as
    left out). A default the loaded workflows no longer accept (they were reloaded) is skipped."""
    filled = {k: v for k, v in options.items() if v is not None}
    for name, value in rules.defaults.items():
        if name in filled:
            continue
        value, problems = _default_problems(name, value, registry)
        if problems or _default_above_cap(name, value, rules.caps):
            log.warning("skipping the server default %s=%r: the loaded workflows or caps no longer take it", name, value)
            continue
        filled[name] = value
    return filled


def _capped_value(spec: OptionSpec, caps: OptionCaps, value: Any) -> Any:
    """``value`` of ``spec`` brought under ``caps`` (itself when it is under them)."""
    number = _number(value)
    if spec.name == FRAMES and caps.max_frames is not None and number is not None and number > caps.max_frames:
        return caps.max_frames
    if spec.name == STEPS and caps.max_steps is not None and number is not None and number > caps.max_steps:
        return caps.max_steps
    if spec.name == FORMAT and spec.type == "choice" and not caps.allows_format(value):
        return next((c for c in spec.choices if caps.allows_format(c)), value)
    return value


def cap_workflow_defaults(workflow: Workflow, caps: OptionCaps, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` plus, for frames, steps and format left out, the workflow's default lowered to
    the caps (or the first allowed format) where that default is above them."""
    filled = dict(options)
    for name in (FRAMES, STEPS, FORMAT):
        spec = workflow.options.get(name)
        if name in filled or spec is None or not spec.is_member or spec.default is None:
            continue
        capped = _capped_value(spec, caps, spec.default)
        if capped != spec.default:
            filled[name] = capped
    return filled


def clamp_to_caps(workflow: Workflow | None, caps: OptionCaps, options: Mapping[str, Any]) -> Clamped:
    """A stored job's ``options`` brought under today's ``caps``, with a note per change
    ("Used 14 frames: this server now caps frames at 14."). ``workflow``: the job's, for the
    formats it offers (None: the first allowed format)."""
    clamped = dict(options)
    changed: dict[str, Any] = {}
    notes: list[str] = []
    for name in (FRAMES, STEPS, FORMAT):
        if name not in clamped or clamped[name] is None:
            continue
        value = clamped[name]
        spec = workflow.options.get(name) if workflow is not None else None
        if spec is None:
            spec = OptionSpec(name=name, kind="member", type="choice" if name == FORMAT else "int", description="",
                              choices=caps.allowed_formats or ())
        new = _capped_value(spec, caps, value)
        if new == value:
            continue
        clamped[name] = changed[name] = new
        if name == FORMAT:
            notes.append(messages.format_clamped(str(new), str(value), caps.allowed_formats or ()))
        else:
            notes.append(messages.clamped(name, new))
    return Clamped(clamped, changed, tuple(notes))


def describe_rules(rules: OptionRules) -> tuple[str, str]:
    """(caps, defaults) as one line each, for ``/help`` and ``/mod settings``:
    ``frames at most 14 · steps at most 20 · formats mp4, webp · 3 extensions per result``."""
    caps = rules.caps
    parts = []
    if caps.max_frames is not None:
        parts.append(f"frames at most {caps.max_frames}")
    if caps.max_steps is not None:
        parts.append(f"steps at most {caps.max_steps}")
    if caps.allowed_formats is not None:
        parts.append(f"formats {', '.join(caps.allowed_formats)}")
    extensions = "extension" if caps.max_extensions == 1 else "extensions"
    parts.append(f"{caps.max_extensions} {extensions} per result")
    order = {name: i for i, name in enumerate(DEFAULTABLE)}
    ordered = sorted(rules.defaults.items(), key=lambda item: order.get(item[0], len(order)))
    defaults = " · ".join(f"{name} {_fmt(value)}" for name, value in ordered)
    return " · ".join(parts), defaults or "the workflow's own"

