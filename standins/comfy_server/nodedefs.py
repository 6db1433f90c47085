"""Node definitions loaded from the recorded /object_info answers, and prompt validation.

Validation mirrors ComfyUI 0.8.0's ``validate_prompt``: the error shapes (``error`` plus
``node_errors``) are the ones recorded in tests/fixtures/comfyui/http-prompt-validation_errors.json.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "comfyui"

_TRACEBACK_838 = '  File "execution.py", line 838, in validate_inputs\n    <source line omitted>\n'


def load_node_definitions(fixtures: Path = FIXTURES) -> dict[str, dict[str, Any]]:
    """Every node class recorded in ``http-object_info-*.json`` (class name -> definition)."""
    defs: dict[str, dict[str, Any]] = {}
    for path in sorted(fixtures.glob("http-object_info-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "classes" in data:
            defs.update(data["classes"])
            continue
        body = data.get("response", {}).get("json")
        if isinstance(body, dict):
            defs.update({k: v for k, v in body.items() if isinstance(v, dict) and "input" in v})
    return defs


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _combo_options(info: list[Any]) -> list[Any] | None:
    kind = info[0]
    if isinstance(kind, list):
        return kind
    if kind == "COMBO" and len(info) > 1 and isinstance(info[1], dict):
        return list(info[1].get("options", []))
    return None


def _input_config(info: list[Any]) -> list[Any]:
    return [info[0], info[1] if len(info) > 1 else {}]


class Validator:
    """Validates an API-format graph against node definitions.

    ``definitions`` is called for the current definitions (so dynamic combo lists such as
    LoadImage files or checkpoints are up to date); ``image_exists`` answers LoadImage's
    custom validation.
    """

    def __init__(
        self,
        definitions: Callable[[], dict[str, dict[str, Any]]],
        image_exists: Callable[[str], bool],
    ) -> None:
        self._definitions = definitions
        self._image_exists = image_exists

    def validate(
        self, prompt: dict[str, Any]
    ) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
        """Return (ok, error, good_outputs, node_errors). Converts values in place."""
        defs = self._definitions()
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                return (
                    False,
                    _error(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
            if node["class_type"] not in defs:
                return (
                    False,
                    _error(
                        "invalid_prompt",
                        f"Cannot execute because node {node['class_type']} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    [],
                    {},
                )
        outputs = [nid for nid, node in prompt.items() if defs[node["class_type"]].get("output_node")]
        if not outputs:
            return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}

        validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}
        good: list[str] = []
        errors_by_node: dict[str, list[dict[str, Any]]] = {}
        failing_by_output: dict[str, set[str]] = {}
        for out in outputs:
            ok = self._validate_node(prompt, defs, out, validated, [out, 0])
            if ok:
                good.append(out)
            failing = {nid for nid, (v, _) in validated.items() if not v and nid in _ancestors(prompt, out)}
            failing_by_output[out] = failing
        for nid, (ok, reasons) in validated.items():
            if not ok and reasons:
                errors_by_node[nid] = reasons
        node_errors: dict[str, Any] = {}
        for nid, reasons in errors_by_node.items():
            node_errors[nid] = {
                "errors": reasons,
                "dependent_outputs": [o for o in outputs if nid in failing_by_output[o]],
                "class_type": prompt[nid]["class_type"],
            }
        if not good:
            return (
                False,
                _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""),
                [],
                node_errors,
            )
        return True, None, good, node_errors

    def _validate_node(
        self,
        prompt: dict[str, Any],
        defs: dict[str, dict[str, Any]],
        node_id: str,
        validated: dict[str, tuple[bool, list[dict[str, Any]]]],
        via: list[Any],
    ) -> bool:
        if node_id in validated:
            return validated[node_id][0]
        validated[node_id] = (True, [])  # guards against cycles
        node = prompt[node_id]
        definition = defs[node["class_type"]]
        inputs = node.setdefault("inputs", {})
        reasons: list[dict[str, Any]] = []
        valid = True
        spec: dict[str, tuple[list[Any], bool]] = {}
        for name, info in definition["input"].get("required", {}).items():
            spec[name] = (info, True)
        for name, info in definition["input"].get("optional", {}).items():
            spec[name] = (info, False)
        custom = node["class_type"] == "LoadImage"
        for name, (info, required) in spec.items():
            if name not in inputs:
                if required:
                    reasons.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                    valid = False
                continue
            val = inputs[name]
            input_type = info[0]
            if _is_link(val):
                o_id, o_idx = val
                try:
                    o_class = prompt[o_id]["class_type"]
                    received = tuple(defs[o_class]["output"])[o_idx]
                except (KeyError, IndexError) as ex:
                    message = str(ex)
                    reasons.append(
                        {
                            "type": "exception_during_inner_validation",
                            "message": "Exception when validating inner node",
                            "details": message,
                            "extra_info": {
                                "input_name": name,
                                "input_config": _input_config(info),
                                "exception_message": message,
                                "exception_type": type(ex).__name__,
                                "traceback": [
                                    _TRACEBACK_838,
                                    '  File "execution.py", line '
                                    f"{818 if isinstance(ex, KeyError) else 820}"
                                    ", in validate_inputs\n    <source line omitted>\n",
                                ],
                                "linked_node": [node_id, 0],
                            },
                        }
                    )
                    valid = False
                    continue
                if isinstance(input_type, str) and input_type not in ("*", received) and received != "*":
                    reasons.append(
                        {
                            "type": "return_type_mismatch",
                            "message": "Return type mismatch between linked nodes",
                            "details": f"{name}, received_type({received}) mismatch input_type({input_type})",
                            "extra_info": {
                                "input_name": name,
                                "input_config": _input_config(info),
                                "received_type": received,
                                "linked_node": val,
                            },
                        }
                    )
                    valid = False
                    continue
                if not self._validate_node(prompt, defs, o_id, validated, [node_id, 0]):
                    valid = False
                continue
            conv: Any = val
            try:
                if input_type == "INT":
                    conv = int(val)
                elif input_type == "FLOAT":
                    conv = float(val)
                elif input_type == "STRING":
                    conv = str(val)
                elif input_type == "BOOLEAN":
                    conv = bool(val)
            except (TypeError, ValueError) as ex:
                reasons.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {input_type} value",
                        "details": f"{name}, {val}, {ex}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": _input_config(info),
                            "received_value": val,
                            "exception_message": str(ex),
                        },
                    }
                )
                valid = False
                continue
            inputs[name] = conv
            extra = info[1] if len(info) > 1 and isinstance(info[1], dict) else {}
            if input_type in ("INT", "FLOAT"):
                if "min" in extra and conv < extra["min"]:
                    reasons.append(
                        {
                            "type": "value_smaller_than_min",
                            "message": f"Value {conv} smaller than min of {extra['min']}",
                            "details": name,
                            "extra_info": {
                                "input_name": name,
                                "input_config": _input_config(info),
                                "received_value": val,
                            },
                        }
                    )
                    valid = False
                    continue
                if "max" in extra and conv > extra["max"]:
                    reasons.append(
                        {
                            "type": "value_bigger_than_max",
                            "message": f"Value {conv} bigger than max of {extra['max']}",
                            "details": name,
                            "extra_info": {
                                "input_name": name,
                                "input_config": _input_config(info),
                                "received_value": val,
                            },
                        }
                    )
                    valid = False
                    continue
            if custom and name == "image":
                if not self._image_exists(str(val)):
                    reasons.append(
                        {
                            "type": "custom_validation_failed",
                            "message": "Custom validation failed for node",
                            "details": f"{name} - Invalid image file: {val}",
                            "extra_info": {"input_name": name},
                        }
                    )
                    valid = False
                continue
            options = _combo_options(info)
            if options is not None and val not in options:
                shown: Any = options if len(options) <= 20 else f"(list of length {len(options)})"
                reasons.append(
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": f"{name}: '{val}' not in {shown}",
                        "extra_info": {
                            "input_name": name,
                            "input_config": _input_config(info),
                            "received_value": val,
                        },
                    }
                )
                valid = False
        validated[node_id] = (valid, reasons)
        return valid


def _ancestors(prompt: dict[str, Any], node_id: str) -> set[str]:
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        nid = stack.pop()
        if nid in seen or nid not in prompt:
            continue
        seen.add(nid)
        for val in prompt[nid].get("inputs", {}).values():
            if _is_link(val):
                stack.append(val[0])
    return seen


def _error(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def is_link(value: Any) -> bool:
    """True for an API-format link ``[node_id, output_index]``."""
    return _is_link(value)


def with_dynamic_lists(
    defs: dict[str, dict[str, Any]], input_files: list[str], checkpoints: list[str]
) -> dict[str, dict[str, Any]]:
    """A copy of ``defs`` whose LoadImage and checkpoint combos list the server's files."""
    out = copy.deepcopy(defs)
    if "LoadImage" in out:
        out["LoadImage"]["input"]["required"]["image"][0] = list(input_files)
    if "ImageOnlyCheckpointLoader" in out:
        out["ImageOnlyCheckpointLoader"]["input"]["required"]["ckpt_name"][0] = list(checkpoints)
    return out
