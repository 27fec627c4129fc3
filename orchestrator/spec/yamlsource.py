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


# Bounds on what one fleet file may make us build (issue 13, class 1): a few hundred bytes of nested
# aliases ("billion laughs") otherwise expand to gigabytes, and deep nesting overflows the composer's stack.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 200_000  # scalars, mappings and sequences after alias expansion


class LimitError(yaml.YAMLError):
    """The document is over one of the bounds above; `line` is where, `problem` what, `fix` the fix."""

    def __init__(self, line: int, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.line, self.problem, self.fix = line, problem, fix


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences keep line numbers and report duplicate keys."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicate_keys: list[tuple[int, str]] = []
        self._depth = 0

    def compose_node(self, parent, index):
        # The composer recurses once per level: bound the depth before Python's stack does (exit 70).
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise LimitError(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep",
                                 "a fleet file needs only a few levels; remove the extra nesting")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    # A key given next to `<<: *base` overrides the merged one: that is the point of a merge key, not a
    # duplicate (issue 13, class 12). Only keys written twice in the mapping itself are reported.
    has_merge = any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value)
    explicit_ids = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    explicit_keys: set = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, (str, int, float, bool)) or key is None:
            key = str(key)
        is_explicit = id(key_node) in explicit_ids
        if key in result:
            if not has_merge or (is_explicit and key in explicit_keys):
                loader.duplicate_keys.append((line, str(key)))
            elif not is_explicit:
                continue  # merged keys never override explicit ones (nor earlier merged ones)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
        if is_explicit:
            explicit_keys.add(key)
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
# YAML 1.2 core integers only. YAML 1.1 reads `05064` as octal (2612), `84:30` as base 60 (5070) and
# `1_000` with underscores: silently not what was written. Such plain scalars load as strings tagged
# `yaml11int`, which `fields.check_int` names with the fix.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:int",
                                                                      "tag:yaml.org,2002:float")]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]{0,39})|0x[0-9a-fA-F]+|0o[0-7]+)\Z"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)(?:[eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z"),
    list("-+.0123456789"))
_Loader.add_implicit_resolver("!yaml11int", re.compile(r"^[-+]?(?:0[0-9_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+|[0-9]+_[0-9_]*)\Z"),
                              list("-+0123456789"))


class Yaml11Int(str):
    """A plain scalar YAML 1.1 would read as a number other than it looks (octal, base 60, underscores)."""


_Loader.add_constructor("!yaml11int", lambda loader, node: Yaml11Int(node.value))
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _expanded_size(root) -> int:
    """Nodes the document has once every alias is expanded; aliases share node objects, so memoise by id.
    Iterative (the depth is bounded, but a cycle — an alias inside its own anchor — must not loop)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = []
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        if done or not children:
            open_nodes.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), 10 * MAX_NODES)
            continue
        if key in open_nodes:
            raise LimitError(node.start_mark.line + 1, "an alias refers to the value it is part of",
                             "an anchor (`&name`) cannot contain its own alias (`*name`)")
        open_nodes.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise LimitError(child.start_mark.line + 1, "an alias refers to the value it is part of",
                                 "an anchor (`&name`) cannot contain its own alias (`*name`)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def load_yaml(text: str) -> Loaded:
    """Parse one YAML document; raises yaml.YAMLError (with a mark) on syntax errors, LimitError when it
    is too big, too deep, or its aliases expand too far."""
    if len(text) > MAX_FILE_BYTES:
        raise LimitError(1, f"{len(text)} characters is over the {MAX_FILE_BYTES} limit",
                         "split the fleet, or use `replicas` instead of repeating entries")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Loaded(None)
        if _expanded_size(node) > MAX_NODES:
            raise LimitError(1, f"aliases expand to more than {MAX_NODES} values",
                             "use fewer or smaller aliases (`*name`); `replicas` repeats an IOC without them")
        data = loader.construct_document(node)
        return Loaded(data, list(loader.duplicate_keys))
    finally:
        loader.dispose()
