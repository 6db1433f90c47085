"""Check a workflow against a server's ``/object_info`` and report every problem at once.

Checks: each node's class_type is installed (a missing VideoHelperSuite node names the pack to
install), each bound input exists on its node, and every graph a job can send (the default, each
choice of each member choice option such as the format, every member number at its min and at its
max) passes the rules the server applies to POST /prompt: required inputs present, links to
existing nodes and outputs, choice values in the server's list (the message lists what the server
has, e.g. its checkpoints), numbers within min/max, and the per-format inputs VHS lists for the
chosen format (``pix_fmt``, ``crf``... for ``video/h264-mp4``). Pure: the caller fetches
``object_info`` (``ComfyClient.object_info()``) and passes the dict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

from bot.workflows.inject import inject
from bot.workflows.model import Target, Workflow

# class_type prefix -> the node pack that provides it (what an admin must install).
NODE_PACKS: tuple[tuple[str, str], ...] = (
    ("VHS_", "ComfyUI-VideoHelperSuite (https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite)"),
)

# Input names whose empty server list means "nothing of that kind is installed".
_EMPTY_MEANS: dict[str, str] = {
    "ckpt_name": "no checkpoints installed (put one in ComfyUI/models/checkpoints)",
    "vae_name": "no VAE files installed",
    "clip_name": "no CLIP files installed",
    "lora_name": "no LoRA files installed",
}


@dataclass(frozen=True)
class Problem:
    """One reason the workflow will not run on a server (admin-facing message)."""

    kind: str  # "missing_node" | "missing_input" | "bad_value" | "bad_link"
    message: str
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    #: True when every job would be refused (a missing node, or a problem of the default graph);
    #: False when only some option values would be (e.g. one format, or a number at its max).
    blocking: bool = True
    #: For a problem only one value of a member choice option has: ``(option, value)``, e.g.
    #: ``("format", "webp")``: jobs choosing it are refused, the others run.
    choice: tuple[str, Any] | None = None

    def __str__(self) -> str:
        return self.message


def node_pack_for(class_type: str) -> str | None:
    for prefix, pack in NODE_PACKS:
        if class_type.startswith(prefix):
            return pack
    return None


def combo_options(spec: Any) -> list[Any] | None:
    """The allowed values of an input spec, or ``None`` if it is not a choice.

    Handles both shapes servers send: ``[["a", "b"], {...}]`` and
    ``["COMBO", {"options": ["a", "b"], ...}]``.
    """
    if not isinstance(spec, list) or not spec:
        return None
    head = spec[0]
    if isinstance(head, list):
        return head
    if head == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        opts = spec[1].get("options")
        return list(opts) if isinstance(opts, list) else None
    return None


def _input_specs(info: Mapping[str, Any]) -> dict[str, Any]:
    """Every input a node accepts: required, optional, and per-format inputs (VHS ``formats``)."""
    section = info.get("input", {}) if isinstance(info, Mapping) else {}
    specs: dict[str, Any] = {}
    for group in ("required", "optional"):
        specs.update(section.get(group, {}) or {})
    for spec in list(specs.values()):
        if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict):
            formats = spec[1].get("formats")
            if isinstance(formats, dict):
                for extra in formats.values():
                    for item in extra or []:
                        if isinstance(item, list) and item and isinstance(item[0], str):
                            specs.setdefault(item[0], item[1:])
    return specs


def _listing(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def validate_against(workflow: Workflow, object_info: Mapping[str, Any]) -> list[Problem]:
    """Every problem that would stop ``workflow`` on a server with this ``/object_info``."""
    problems: list[Problem] = []
    template = workflow.template
    missing: set[str] = set()
    for node_id, node in sorted(template.items(), key=lambda kv: kv[0]):
        class_type = node["class_type"]
        if class_type in object_info or class_type in missing:
            continue
        missing.add(class_type)
        pack = node_pack_for(class_type)
        what = f"install the {pack} node pack" if pack else "install the custom node pack that provides it"
        problems.append(Problem(
            "missing_node",
            f"node type {class_type} (node {node_id}) is not installed on the server: {what} and restart ComfyUI",
            node_id=node_id, class_type=class_type,
        ))

    # Every bound input must exist on its node.
    bound: list[Target] = [t for spec in workflow.options.values() for t in spec.targets]
    bound += [t for targets in workflow.derived.values() for t in targets]
    bound += [t for spec in workflow.options.values() for pairs in spec.extra.values() for t, _ in pairs]
    seen: set[tuple[str, str]] = set()
    for target in bound:
        if target.class_type in missing or (target.node_id, target.input) in seen:
            continue
        seen.add((target.node_id, target.input))
        specs = _input_specs(object_info.get(target.class_type, {}))
        if target.input not in specs:
            problems.append(Problem(
                "missing_input",
                f"{target.class_type} on the server has no input {target.input!r} (bound as {target.node_alias}.{target.input}); "
                "update the node or fix the manifest",
                node_id=target.node_id, class_type=target.class_type, input=target.input,
                blocking=False,  # the option has no effect there, but jobs still run
            ))

    # The graphs jobs can send: the default one, each choice of each member choice option
    # (a format switch adds, removes or drops nodes), and every member number at its min and
    # at its max. Each is checked with the rules the server applies to POST /prompt.
    reported: set[tuple[str, str | None, str | None, str]] = set()
    skip = {(t.node_id, t.input) for t in workflow.derived.get("image", ())}
    for index, (graph, choice) in enumerate(_job_graphs(workflow)):
        for problem, key in _graph_problems(graph, object_info, missing, skip):
            if key not in reported:
                reported.add(key)
                problems.append(problem if index < DEFAULT_GRAPHS else replace(problem, blocking=False, choice=choice))
    return problems


#: The first graphs of :func:`_job_graphs`: default options at each aspect. A problem there
#: stops every job; one found only in later graphs stops only jobs with those option values.
DEFAULT_GRAPHS = 3


def _job_graphs(workflow: Workflow) -> list[tuple[dict[str, Any], tuple[str, Any] | None]]:
    """Graphs a job of ``workflow`` can produce (one per choice value, plus numbers at min / max),
    each with the ``(option, value)`` choice it was built for (None for the others)."""

    def build(options: Mapping[str, Any], width: int = 1024, height: int = 576) -> dict[str, Any]:
        return inject(workflow, options, image_name="", width=width, height=height, filename_prefix="check", rng=_Zero())

    graphs: list[tuple[dict[str, Any], tuple[str, Any] | None]] = [
        (build({}), None), (build({}, 576, 1024), None), (build({}, 768, 768), None),  # the DEFAULT_GRAPHS
    ]
    numbers = [s for s in workflow.member_options if s.type in ("int", "float")]
    for bound in ("min", "max"):
        values = {s.name: getattr(s, bound) for s in numbers if getattr(s, bound) is not None}
        if values:
            graphs.append((build(values), None))
    for spec in workflow.member_options:
        if spec.type == "choice":
            graphs.extend((build({spec.name: choice}), (spec.name, choice)) for choice in spec.choices)
    return graphs


def _value_problem(spec: Any, value: Any) -> tuple[str, list[Any] | None] | None:
    """Why ``value`` is refused by an input spec (``(reason, allowed list)``), or ``None``."""
    allowed = combo_options(spec)
    if allowed is not None:
        return None if value in allowed else ("not in list", allowed)
    if not isinstance(spec, list) or not spec:
        return None
    kind = spec[0]
    extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return (f"is not a number ({kind})", None)
        if kind == "INT" and isinstance(value, float) and not value.is_integer():
            return ("is not a whole number", None)
        if "min" in extra and value < extra["min"]:
            return (f"is below the server's min {extra['min']}", None)
        if "max" in extra and value > extra["max"]:
            return (f"is above the server's max {extra['max']}", None)
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        return ("is not true/false", None)
    elif kind == "STRING" and not isinstance(value, str):
        return ("is not text", None)
    return None


def _graph_problems(
    graph: Mapping[str, Any], object_info: Mapping[str, Any], missing: set[str], skip: set[tuple[str, str]]
) -> Iterable[tuple[Problem, tuple[str, str | None, str | None, str]]]:
    """Problems of one API-format graph, as ComfyUI's POST /prompt validation would find them.

    Required inputs present; links to existing nodes and output indexes; combo values in the
    server's list; numbers within min/max; and, for inputs like VHS ``format``, every
    per-format input the server lists for the chosen value.
    """
    for node_id, node in sorted(graph.items(), key=lambda kv: kv[0]):
        class_type = node["class_type"]
        if class_type in missing:
            continue
        info = object_info.get(class_type, {})
        section = info.get("input", {}) if isinstance(info, Mapping) else {}
        required = dict(section.get("required", {}) or {})
        specs = dict(required)
        specs.update(section.get("optional", {}) or {})
        inputs = node.get("inputs", {})
        for name in required:
            if name not in inputs:
                yield (
                    Problem("missing_input", f"{class_type} (node {node_id}) needs input {name!r}, which the workflow does not set; "
                            "re-export the workflow from this server's ComfyUI", node_id=node_id, class_type=class_type, input=name),
                    ("missing_input", node_id, name, ""),
                )
        for name, value in inputs.items():
            spec = specs.get(name)
            if spec is None or (node_id, name) in skip:
                continue
            if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int) and not isinstance(value[1], bool):
                source = graph.get(str(value[0]))
                if source is None:
                    yield (
                        Problem("bad_link", f"{class_type}.{name} (node {node_id}) links to node {value[0]}, which is not in the graph; "
                                "fix the manifest's drop lists or the workflow", node_id=node_id, class_type=class_type, input=name),
                        ("bad_link", node_id, name, repr(value)),
                    )
                elif source["class_type"] not in missing:
                    outputs = (object_info.get(source["class_type"], {}) or {}).get("output", [])
                    if isinstance(outputs, list) and not 0 <= value[1] < len(outputs):
                        yield (
                            Problem("bad_link", f"{class_type}.{name} (node {node_id}) uses output {value[1]} of {source['class_type']}, "
                                    f"which has {len(outputs)} outputs", node_id=node_id, class_type=class_type, input=name),
                            ("bad_link", node_id, name, repr(value)),
                        )
                continue
            refused = _value_problem(spec, value)
            if refused is not None:
                reason, allowed = refused
                if allowed is not None and not allowed:
                    has = _EMPTY_MEANS.get(name, f"the server offers no values for {name}")
                    message = f"{class_type}.{name} = {value!r} (node {node_id}): {has}"
                elif allowed is not None:
                    message = f"{class_type}.{name} = {value!r} (node {node_id}) is not on the server; it has: {_listing(allowed)}"
                else:
                    message = f"{class_type}.{name} = {value!r} (node {node_id}) {reason}; fix the manifest's range or value"
                yield (
                    Problem("bad_value", message, node_id=node_id, class_type=class_type, input=name),
                    ("bad_value", node_id, name, repr(value)),
                )
            formats = spec[1].get("formats") if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) else None
            if isinstance(formats, dict) and isinstance(value, str):
                for widget in formats.get(value) or []:
                    if not (isinstance(widget, list) and widget and isinstance(widget[0], str)):
                        continue
                    wname, wspec = widget[0], widget[1:]
                    if wname not in inputs:
                        yield (
                            Problem("missing_input", f"{class_type} (node {node_id}) with {name} {value!r} needs input {wname!r}; "
                                    f"add it under the manifest's [options.<option>.extra.<choice>] for that choice",
                                    node_id=node_id, class_type=class_type, input=wname),
                            ("missing_input", node_id, wname, value),
                        )
                        continue
                    refused = _value_problem(wspec, inputs[wname])
                    if refused is not None:
                        reason, allowed = refused
                        why = f"is not one of {_listing(allowed)}" if allowed is not None else reason
                        yield (
                            Problem("bad_value", f"{class_type}.{wname} = {inputs[wname]!r} (node {node_id}, {name} {value!r}) {why}",
                                    node_id=node_id, class_type=class_type, input=wname),
                            ("bad_value", node_id, wname, repr(inputs[wname])),
                        )


class _Zero:
    def randint(self, a: int, b: int) -> int:
        return a


def merge_object_info(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge several ``/object_info`` answers (e.g. per-class requests) into one dict."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged
