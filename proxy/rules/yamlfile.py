"""Rule files as YAML 1.2 with line marks: every mapping key and list item remembers its
line, so that every problem is reported as `file:line: message`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from proxy.errors import ConfigError
from proxy.jsontypes import JsonObject

__all__ = ["Ctx", "LDict", "LList", "load_yaml"]


class _LineLoader(yaml.SafeLoader):
    """Remembers the line of every mapping key and sequence item (1-based), and reads
    scalars as YAML 1.2 does: only true/false are booleans, so `country: NO` is the string
    "NO" (YAML 1.1 made it False; Alertmanager keeps label values as strings)."""


_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:bool",
                                  re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class LDict(JsonObject):
    line: int = 0
    lines: dict[str, int]
    raw: dict[str, str]  # the text of each plain scalar value, as written


class LList(list[Any]):
    line: int = 0
    lines: list[int]


def _map(loader: _LineLoader, node: yaml.MappingNode) -> LDict:
    d = LDict()
    d.line = node.start_mark.line + 1
    d.lines = {}
    d.raw = {}
    for k_node, v_node in node.value:
        key = loader.construct_object(k_node, deep=True)
        if key in d:
            raise yaml.MarkedYAMLError(problem=f"duplicate key {key!r}", problem_mark=k_node.start_mark)
        d[str(key)] = loader.construct_object(v_node, deep=True)
        d.lines[str(key)] = k_node.start_mark.line + 1
        if isinstance(v_node, yaml.ScalarNode):
            d.raw[str(key)] = v_node.value
    return d


def _seq(loader: _LineLoader, node: yaml.SequenceNode) -> LList:
    items = LList(loader.construct_object(n, deep=True) for n in node.value)
    items.line = node.start_mark.line + 1
    items.lines = [n.start_mark.line + 1 for n in node.value]
    return items


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _seq)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file with line marks; ConfigError `file:line: message` on bad YAML."""
    try:
        with path.open("rb") as f:
            return yaml.load(f, Loader=_LineLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else 0
        raise ConfigError([f"{path}:{line}: YAML: {e.problem}"]) from None
    except OSError as e:
        raise ConfigError([f"{path}:0: cannot read: {e.strerror}"]) from None


class Ctx:
    """Collects errors for one file; `at(obj, key)` is the `file:line` of a key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[str] = []

    def err(self, obj: Any, key: str | int | None, msg: str) -> None:
        line = getattr(obj, "line", 0)
        if isinstance(obj, LDict) and isinstance(key, str):
            line = obj.lines.get(key, line)
        elif isinstance(obj, LList) and isinstance(key, int) and key < len(obj.lines):
            line = obj.lines[key]
        self.errors.append(f"{self.path}:{line}: {msg}")
