"""Check a workflow against a server's ``/object_info`` and report every problem at once.

Checks: each node's class_type is installed (a missing VideoHelperSuite node names the pack to
install), each bound input exists on its node, and each fixed choice value (checkpoint,
sampler, scheduler, every value a member ``choice`` option can write such as the VHS format)
is one the server offers; the message lists what the server has. Pure: the caller fetches
``object_info`` (``ComfyClient.object_info()``) and passes the dict.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    kind: str  # "missing_node" | "missing_input" | "bad_value"
    message: str
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None

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
            ))

    # Fixed choice values: the graph as a default job would send it, plus every value a
    # member choice option can write.
    graph = inject(workflow, {}, image_name="", width=1024, height=576, filename_prefix="check", rng=_Zero())
    skip = {(t.node_id, t.input) for targets in workflow.derived.values() for t in targets}
    checks: list[tuple[str, str, str, Any]] = []
    for node_id, node in graph.items():
        for input_name, value in node.get("inputs", {}).items():
            if (node_id, input_name) not in skip and not isinstance(value, list):
                checks.append((node_id, node["class_type"], input_name, value))
    for spec in workflow.member_options:
        if spec.type != "choice":
            continue
        for choice in spec.choices:
            for target in spec.targets:
                checks.append((target.node_id, target.class_type, target.input, spec.node_value(choice)))
            for target, value in spec.extra.get(choice, ()):
                checks.append((target.node_id, target.class_type, target.input, value))
    reported: set[tuple[str, str, str]] = set()
    for node_id, class_type, input_name, value in checks:
        if class_type in missing:
            continue
        allowed = combo_options(_input_specs(object_info.get(class_type, {})).get(input_name))
        if allowed is None or value in allowed:
            continue
        key = (node_id, input_name, repr(value))
        if key in reported:
            continue
        reported.add(key)
        if not allowed:
            has = _EMPTY_MEANS.get(input_name, f"the server offers no values for {input_name}")
            message = f"{class_type}.{input_name} = {value!r} (node {node_id}): {has}"
        else:
            message = f"{class_type}.{input_name} = {value!r} (node {node_id}) is not on the server; it has: {_listing(allowed)}"
        problems.append(Problem("bad_value", message, node_id=node_id, class_type=class_type, input=input_name))
    return problems


class _Zero:
    def randint(self, a: int, b: int) -> int:
        return a


def merge_object_info(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge several ``/object_info`` answers (e.g. per-class requests) into one dict."""
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged
