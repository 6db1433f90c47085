"""Load workflows from ``WORKFLOWS_DIR``: each ``name.json`` (API format) with its ``name.toml``.

Bindings in the manifest name nodes by ``class_type`` (plus ``title`` when two nodes share a
class), so a workflow re-exported from the ComfyUI editor with new node ids still binds.
A file that cannot be used is reported in :attr:`LoadResult.errors` with a message saying
what to do; the other files still load. Loading is plain file I/O: call it at start-up or
through ``asyncio.to_thread``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from bot.workflows.model import (
    DERIVED_NAMES,
    OPTION_KINDS,
    OPTION_TYPES,
    SEED_MAX,
    OptionSpec,
    Target,
    Workflow,
    freeze,
)

log = logging.getLogger(__name__)


class WorkflowError(ValueError):
    """A workflow file or manifest cannot be used; the message says what to fix (for admins)."""


@dataclass(frozen=True)
class LoadError:
    """One file that did not load, with an admin-facing message."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.message}"


class WorkflowRegistry:
    """The loaded workflows by name; ``default`` is the one used when a member names none."""

    def __init__(self, workflows: Mapping[str, Workflow] | None = None, default: str | None = None) -> None:
        self._workflows: dict[str, Workflow] = dict(workflows or {})
        if default is not None and default not in self._workflows:
            raise KeyError(default)
        self._default = default

    def get(self, name: str | None = None) -> Workflow | None:
        """The named workflow (case-insensitive), the default one for ``None``, else ``None``."""
        if name is None:
            return self.default
        found = self._workflows.get(name)
        if found is None:
            lowered = name.strip().lower()
            found = next((w for n, w in self._workflows.items() if n.lower() == lowered), None)
        return found

    def names(self) -> list[str]:
        return sorted(self._workflows)

    @property
    def default(self) -> Workflow | None:
        if self._default is not None:
            return self._workflows[self._default]
        names = self.names()
        return self._workflows[names[0]] if names else None

    def __len__(self) -> int:
        return len(self._workflows)

    def __iter__(self) -> Iterator[Workflow]:
        return iter([self._workflows[n] for n in self.names()])

    def __contains__(self, name: object) -> bool:
        return name in self._workflows


@dataclass(frozen=True)
class LoadResult:
    registry: WorkflowRegistry
    errors: list[LoadError] = field(default_factory=list)


def load_workflows(directory: Path) -> LoadResult:
    """Load every ``*.json`` + ``*.toml`` pair in ``directory``; bad files go to ``errors``."""
    directory = Path(directory)
    errors: list[LoadError] = []
    loaded: dict[str, Workflow] = {}
    if not directory.is_dir():
        errors.append(LoadError(directory, f"workflows folder {directory} does not exist; create it or set WORKFLOWS_DIR"))
        return LoadResult(WorkflowRegistry(), errors)
    jsons = sorted(directory.glob("*.json"))
    json_stems = {p.stem for p in jsons}
    for toml_path in sorted(directory.glob("*.toml")):
        if toml_path.stem not in json_stems:
            errors.append(LoadError(toml_path, f"manifest without a workflow: add {toml_path.stem}.json (API format) beside it"))
    for json_path in jsons:
        try:
            workflow = load_workflow(json_path)
        except WorkflowError as exc:
            errors.append(LoadError(json_path, str(exc)))
            continue
        if workflow.name in loaded:
            errors.append(LoadError(json_path, f"workflow name {workflow.name!r} is already used by another file; rename one"))
            continue
        loaded[workflow.name] = workflow
    defaults = [w.name for w in loaded.values() if w.is_default]
    if len(defaults) > 1:
        errors.append(LoadError(directory, f"several manifests say default = true ({', '.join(sorted(defaults))}); using {sorted(defaults)[0]}"))
    return LoadResult(WorkflowRegistry(loaded, sorted(defaults)[0] if defaults else None), errors)


def load_registry(directory: Path) -> LoadResult:
    """:func:`load_workflows`, with each file that was not loaded logged (ERROR); the others
    still load. How the bot loads ``WORKFLOWS_DIR`` at start and on ``/owner reload-workflows``,
    and how ``python -m bot animate`` does."""
    result = load_workflows(directory)
    for error in result.errors:
        log.error("Workflow %s was not loaded: %s", error.path.name, error.message)
    return result


def load_workflow(json_path: Path, toml_path: Path | None = None) -> Workflow:
    """Load and bind one workflow; raises :class:`WorkflowError` saying what to fix."""
    json_path = Path(json_path)
    toml_path = Path(toml_path) if toml_path is not None else json_path.with_suffix(".toml")
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read the file ({exc.__class__.__name__})") from exc
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    if not toml_path.is_file():
        raise WorkflowError(f"no manifest: add {toml_path.name} beside it (see svd_img2vid.toml for an example)")
    try:
        manifest = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"cannot read {toml_path.name} ({exc.__class__.__name__})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WorkflowError(f"{toml_path.name} is not valid TOML: {exc}") from exc
    workflow = build_workflow(graph, manifest, fallback_name=json_path.stem)
    return dataclasses.replace(workflow, path=json_path)


def check_api_format(graph: Any) -> dict[str, Any]:
    """Refuse anything but an API-format graph ``{node_id: {class_type, inputs}}``."""
    if isinstance(graph, dict) and ("nodes" in graph or "links" in graph):
        raise WorkflowError(
            "this is a UI-format workflow (it has nodes/links); in ComfyUI open it and re-export it "
            "with Workflow > Export (API) / Save (API Format)"
        )
    if not isinstance(graph, dict) or not graph:
        raise WorkflowError("not an API-format workflow: expected an object of nodes {id: {class_type, inputs}}")
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str) or not isinstance(node.get("inputs", {}), dict):
            raise WorkflowError(
                f"node {node_id!r} has no class_type/inputs: not an API-format workflow; re-export it with Save (API Format)"
            )
    return graph


def _title(node: Mapping[str, Any]) -> str | None:
    meta = node.get("_meta")
    return meta.get("title") if isinstance(meta, dict) else None


def _resolve_nodes(graph: Mapping[str, Any], spec: Any) -> dict[str, str]:
    if not isinstance(spec, dict) or not spec:
        raise WorkflowError("the manifest needs a [nodes] table naming nodes by class_type, e.g. sampler = { class_type = \"KSampler\" }")
    resolved: dict[str, str] = {}
    for alias, sel in spec.items():
        if isinstance(sel, str):
            sel = {"class_type": sel}
        if not isinstance(sel, dict) or not isinstance(sel.get("class_type"), str):
            raise WorkflowError(f"[nodes] {alias}: give a class_type (and a title when two nodes share a class)")
        if "id" in sel or "node_id" in sel:
            raise WorkflowError(f"[nodes] {alias}: bind by class_type (and title), not by node id, so re-exports keep working")
        class_type, title = sel["class_type"], sel.get("title")
        matches = [nid for nid, node in graph.items() if node.get("class_type") == class_type]
        if title is not None:
            matches = [nid for nid in matches if _title(graph[nid]) == title]
        if not matches:
            where = f"class_type {class_type!r}" + (f" with title {title!r}" if title is not None else "")
            raise WorkflowError(f"[nodes] {alias}: no node with {where} in the workflow; fix the manifest or the workflow")
        if len(matches) > 1:
            titles = ", ".join(repr(_title(graph[n])) for n in matches)
            raise WorkflowError(
                f"[nodes] {alias}: {len(matches)} nodes have class_type {class_type!r}"
                + (f" and title {title!r}" if title is not None else "")
                + f"; add a distinct title (titles found: {titles})"
            )
        resolved[alias] = matches[0]
    return resolved


def _target(ref: Any, graph: Mapping[str, Any], nodes: Mapping[str, str], where: str) -> Target:
    if not isinstance(ref, str) or "." not in ref:
        raise WorkflowError(f"{where}: bindings are written \"<node alias>.<input>\", got {ref!r}")
    alias, input_name = ref.split(".", 1)
    if alias not in nodes:
        raise WorkflowError(f"{where}: unknown node alias {alias!r}; declare it under [nodes] (known: {', '.join(nodes)})")
    node_id = nodes[alias]
    node = graph[node_id]
    value = node.get("inputs", {}).get(input_name)
    if isinstance(value, list):
        raise WorkflowError(f"{where}: input {ref} is a link to another node, not a value; bind a widget input")
    return Target(node_id=node_id, input=input_name, node_alias=alias, class_type=node["class_type"])


def _targets(refs: Any, graph: Mapping[str, Any], nodes: Mapping[str, str], where: str, *, must_exist: bool) -> tuple[Target, ...]:
    if isinstance(refs, str):
        refs = [refs]
    if not isinstance(refs, list):
        raise WorkflowError(f"{where}: bind must be a list of \"<node alias>.<input>\"")
    out = []
    for ref in refs:
        target = _target(ref, graph, nodes, where)
        if must_exist and target.input not in graph[target.node_id].get("inputs", {}):
            raise WorkflowError(f"{where}: node {target.node_alias} ({target.class_type}) has no input {target.input!r} in the workflow")
        out.append(target)
    return tuple(out)


def _number(value: Any, kind: str, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise WorkflowError(f"{where} must be a number, got {value!r}")
    if kind == "int" and not isinstance(value, int):
        if float(value).is_integer():
            return int(value)
        raise WorkflowError(f"{where} must be a whole number, got {value!r}")
    return value


def _option(name: str, raw: Any, graph: Mapping[str, Any], nodes: Mapping[str, str]) -> OptionSpec:
    where = f"[options.{name}]"
    if not isinstance(raw, dict):
        raise WorkflowError(f"{where} must be a table")
    kind = raw.get("kind", "member")
    if kind not in OPTION_KINDS:
        raise WorkflowError(f"{where} kind must be one of {', '.join(OPTION_KINDS)}, got {kind!r}")
    type_ = raw.get("type")
    if type_ not in OPTION_TYPES:
        raise WorkflowError(f"{where} type must be one of {', '.join(OPTION_TYPES)}, got {type_!r}")
    description = raw.get("description", "")
    if not isinstance(description, str) or (kind == "member" and not description.strip()):
        raise WorkflowError(f"{where} needs a one-line description (it is shown in the command and /help)")
    if kind == "member" and not (name.isascii() and name.replace("_", "").isalnum() and name.islower() and len(name) <= 32):
        raise WorkflowError(f"{where} member option names must be lower-case letters, digits or _ (max 32), as Discord requires")
    targets = _targets(raw.get("bind", []), graph, nodes, where, must_exist=True)
    lo = _number(raw["min"], type_, f"{where} min") if "min" in raw else None
    hi = _number(raw["max"], type_, f"{where} max") if "max" in raw else None
    if lo is not None and hi is not None and lo > hi:
        raise WorkflowError(f"{where} min ({lo}) is above max ({hi})")
    choices: tuple[str, ...] = ()
    values: dict[str, Any] = {}
    extra: dict[str, tuple[tuple[Target, Any], ...]] = {}
    drop: dict[str, tuple[str, ...]] = {}
    if type_ == "choice":
        raw_choices = raw.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices or not all(isinstance(c, str) and c for c in raw_choices):
            raise WorkflowError(f"{where} a choice option needs choices = [\"a\", \"b\", ...]")
        if len(set(raw_choices)) != len(raw_choices):
            raise WorkflowError(f"{where} choices repeat a value")
        choices = tuple(raw_choices)
        raw_values = raw.get("values", {})
        if not isinstance(raw_values, dict) or set(raw_values) - set(choices):
            raise WorkflowError(f"{where}.values keys must be among the choices ({', '.join(choices)})")
        values = dict(raw_values)
        raw_extra = raw.get("extra", {})
        if not isinstance(raw_extra, dict) or set(raw_extra) - set(choices):
            raise WorkflowError(f"{where}.extra keys must be among the choices ({', '.join(choices)})")
        for choice, table in raw_extra.items():
            if not isinstance(table, dict):
                raise WorkflowError(f"{where}.extra.{choice} must be a table of \"alias.input\" = value")
            extra[choice] = tuple(
                (_target(ref, graph, nodes, f"{where}.extra.{choice}"), value) for ref, value in table.items()
            )
        raw_drop = raw.get("drop", {})
        if not isinstance(raw_drop, dict) or set(raw_drop) - set(choices):
            raise WorkflowError(f"{where}.drop keys must be among the choices ({', '.join(choices)})")
        for choice, aliases in raw_drop.items():
            if not isinstance(aliases, list) or any(a not in nodes for a in aliases):
                raise WorkflowError(f"{where}.drop.{choice} must list node aliases declared under [nodes]")
            drop[choice] = tuple(nodes[a] for a in aliases)
            _check_drop(graph, drop[choice], f"{where}.drop.{choice}")
    elif any(k in raw for k in ("choices", "values", "extra", "drop")):
        raise WorkflowError(f"{where} choices/values/extra/drop only apply to type = \"choice\"")
    random_ = bool(raw.get("random", False))
    if random_ and type_ != "int":
        raise WorkflowError(f"{where} random = true only applies to int options")
    if random_ and hi is None:
        raise WorkflowError(f"{where} a random option needs a max")
    if name == "seed" and (lo is None or lo < 0 or hi is None or hi > SEED_MAX):
        raise WorkflowError(f"{where} the seed range must lie within 0..{SEED_MAX} (Discord's integer limit)")
    spec = OptionSpec(
        name=name, kind=kind, type=type_, description=description.strip(), targets=targets,
        min=lo, max=hi, choices=choices, random=random_, values=freeze(values), extra=freeze(extra), drop=freeze(drop),
    )
    default = raw.get("default")
    if kind == "member" and default is None and not random_:
        raise WorkflowError(f"{where} a member option needs a default (or random = true)")
    if default is not None:
        default = _check_default(spec, default, f"{where} default")
    value = raw.get("value")
    if value is not None:
        value = _check_default(spec, value, f"{where} value")
    if kind == "member" and "value" in raw:
        raise WorkflowError(f"{where} value is for admin options; member options have a default")
    return dataclasses.replace(spec, default=default, value=value)


def _check_drop(graph: Mapping[str, Any], dropped: tuple[str, ...], where: str) -> None:
    for nid, node in graph.items():
        if nid in dropped:
            continue
        for value in node.get("inputs", {}).values():
            if isinstance(value, list) and value and str(value[0]) in dropped:
                raise WorkflowError(f"{where}: node {nid} ({node['class_type']}) still uses dropped node {value[0]}; drop it too")


def _check_default(spec: OptionSpec, value: Any, where: str) -> Any:
    if spec.type in ("int", "float"):
        value = _number(value, spec.type, where)
        if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
            raise WorkflowError(f"{where} {value} is outside its range {spec.min}..{spec.max}")
    elif spec.type == "choice":
        if value not in spec.choices:
            raise WorkflowError(f"{where} {value!r} is not one of the choices ({', '.join(spec.choices)})")
    elif spec.type == "bool":
        if not isinstance(value, bool):
            raise WorkflowError(f"{where} must be true or false")
    elif spec.type == "str":
        if not isinstance(value, str):
            raise WorkflowError(f"{where} must be a string")
    return value


def build_workflow(graph: Any, manifest: Mapping[str, Any], *, fallback_name: str) -> Workflow:
    """Bind a parsed manifest to a parsed graph (pure; used by :func:`load_workflow` and tests)."""
    graph = check_api_format(graph)
    name = manifest.get("name", fallback_name)
    if not isinstance(name, str) or not name.strip():
        raise WorkflowError("the manifest's name must be a non-empty string")
    name = name.strip()
    description = manifest.get("description", "")
    if not isinstance(description, str):
        raise WorkflowError("the manifest's description must be a string")
    nodes = _resolve_nodes(graph, manifest.get("nodes"))
    derived_raw = manifest.get("derived", {})
    if not isinstance(derived_raw, dict):
        raise WorkflowError("[derived] must be a table")
    unknown = set(derived_raw) - set(DERIVED_NAMES)
    if unknown:
        raise WorkflowError(f"[derived] unknown name(s) {', '.join(sorted(unknown))}; known: {', '.join(DERIVED_NAMES)}")
    derived = {k: _targets(v, graph, nodes, f"[derived] {k}", must_exist=True) for k, v in derived_raw.items()}
    if "image" not in derived:
        raise WorkflowError("[derived] image is missing: bind the LoadImage input, e.g. image = [\"image.image\"]")
    options_raw = manifest.get("options", {})
    if not isinstance(options_raw, dict):
        raise WorkflowError("[options] must be a table of option tables")
    options = {n: _option(n, raw, graph, nodes) for n, raw in options_raw.items()}
    clash = set(options) & set(DERIVED_NAMES)
    if clash:
        raise WorkflowError(f"option name(s) {', '.join(sorted(clash))} are filled by the bot; use [derived]")

    def alias_node(key: str) -> str | None:
        alias = manifest.get(key)
        if alias is None:
            return None
        if alias not in nodes:
            raise WorkflowError(f"{key} = {alias!r} is not a node alias declared under [nodes]")
        return nodes[alias]

    return Workflow(
        name=name,
        description=description.strip(),
        template=freeze(graph),
        manifest=freeze(manifest),
        options=freeze(options),
        derived=freeze(derived),
        nodes=freeze(nodes),
        progress_node_id=alias_node("progress"),
        output_node_id=alias_node("output"),
        is_default=bool(manifest.get("default", False)),
    )
