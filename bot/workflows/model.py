"""Data classes describing a loaded workflow: its options, bindings and template graph.

A :class:`Workflow` is an API-format ComfyUI graph (the template, never mutated) plus what
its TOML manifest says about it, with every binding already resolved to a node id of this
particular file. Loading lives in :mod:`bot.workflows.loader`; injection in
:mod:`bot.workflows.inject`; server checks in :mod:`bot.workflows.validate`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Mapping

OptionKind = Literal["member", "admin"]
OptionType = Literal["int", "float", "choice", "str", "bool"]
OPTION_KINDS: tuple[str, ...] = ("member", "admin")
OPTION_TYPES: tuple[str, ...] = ("int", "float", "choice", "str", "bool")
DERIVED_NAMES: tuple[str, ...] = ("image", "width", "height", "filename_prefix")

SEED_MAX = 2**53 - 1  # Discord integer options stop at 2^53 - 1


@dataclass(frozen=True)
class Target:
    """One node input an option writes to, resolved to this template's node id."""

    node_id: str
    input: str
    node_alias: str
    class_type: str

    def __str__(self) -> str:
        return f"{self.node_alias}.{self.input} (node {self.node_id}, {self.class_type})"


@dataclass(frozen=True)
class OptionSpec:
    """One option from the manifest.

    ``values`` maps a choice to the value written to the node (``gif`` -> ``image/gif``);
    choices without an entry are written as they are. ``extra`` maps a choice to further
    inputs it needs (VHS per-format inputs); ``drop`` maps a choice to node ids removed from
    the graph when it is chosen (for workflows with one output node per format).
    ``value`` is an admin option's fixed value (``None``: keep the template's).
    """

    name: str
    kind: OptionKind
    type: OptionType
    description: str
    targets: tuple[Target, ...] = ()
    default: Any = None
    min: float | int | None = None
    max: float | int | None = None
    choices: tuple[str, ...] = ()
    random: bool = False
    value: Any = None
    values: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, tuple[tuple[Target, Any], ...]] = field(default_factory=dict)
    drop: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def is_member(self) -> bool:
        return self.kind == "member"

    def node_value(self, value: Any) -> Any:
        """The value written to the bound inputs for an option value (choice mapping applied)."""
        if self.type == "choice":
            return self.values.get(value, value)
        return value


@dataclass(frozen=True)
class Workflow:
    """A loaded, bound workflow. ``template`` is read-only; use :meth:`graph_copy` to edit."""

    name: str
    description: str
    template: Mapping[str, Any]
    manifest: Mapping[str, Any]
    options: Mapping[str, OptionSpec]
    derived: Mapping[str, tuple[Target, ...]]
    nodes: Mapping[str, str]  # manifest alias -> node id
    progress_node_id: str | None = None
    output_node_id: str | None = None
    path: Path | None = None
    is_default: bool = False

    @property
    def member_options(self) -> tuple[OptionSpec, ...]:
        return tuple(o for o in self.options.values() if o.kind == "member")

    @property
    def admin_options(self) -> tuple[OptionSpec, ...]:
        return tuple(o for o in self.options.values() if o.kind == "admin")

    def graph_copy(self) -> dict[str, Any]:
        """A deep, mutable copy of the template graph."""
        return copy.deepcopy(dict(self.template))

    def class_types(self) -> set[str]:
        return {str(node.get("class_type")) for node in self.template.values()}

    def describe_progress(self, node_id: str | None, value: int, maximum: int) -> str:
        """Member-facing text for a ``progress`` tick: "step k of n" for the progress node."""
        if node_id is not None and node_id == self.progress_node_id:
            return f"step {value} of {maximum}"
        return "encoding"


@dataclass(frozen=True)
class ResolvedOptions:
    """Every member option with a checked value (defaults filled, a seed drawn when random)."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def freeze(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view (shallow) used for templates and manifests."""
    return MappingProxyType(dict(mapping))
