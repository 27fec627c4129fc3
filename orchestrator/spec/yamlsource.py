"""YAML loading that remembers where every key and item came from, so errors can name the line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml


class LineDict(dict):
    """A mapping from the file, with the line of the mapping and of each key."""

    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from the file, with the line of the sequence and of each item."""

    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


@dataclass
class Loaded:
    """The parsed document plus problems the loader itself found (duplicate keys)."""

    data: object
    duplicate_keys: list[tuple[int, str]] = field(default_factory=list)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences keep line numbers and report duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicate_keys: list[tuple[int, str]] = []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            key = str(key)
        if key in result:
            loader.duplicate_keys.append((line, str(key)))
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


# YAML 1.2 booleans only: with YAML 1.1's, `enum_strings: [Off, On]` or `value: no` would load as
# booleans (the "Norway problem"). Copy the resolver table before changing it: it is shared by class.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str) -> Loaded:
    """Parse one YAML document; raises yaml.YAMLError (with a mark) on syntax errors."""
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
        return Loaded(data, list(loader.duplicate_keys))
    finally:
        loader.dispose()
