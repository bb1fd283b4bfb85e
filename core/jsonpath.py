"""A tiny JSON path evaluator for gateway payloads: ``$.data.pdu[2].kw``, ``$['a b'][0]``.

Supported: the root ``$``, member access ``.name`` or ``['name']`` / ``["name"]``, and list
indices ``[n]`` (negative counts from the end). No wildcards, filters or slices: a path
names exactly one value. Paths are compiled once (at config load) into a tuple of steps.
"""

from __future__ import annotations

import re

#: One compiled step: a str is an object key, an int a list index.
Step = str | int

_TOKEN = re.compile(
    r"""\.(?P<name>[A-Za-z_$][\w$-]*)"""
    r"""|\[(?P<index>-?\d+)\]"""
    r"""|\[(?P<quote>['"])(?P<key>(?:\\.|(?!(?P=quote)).)*)(?P=quote)\]"""
)
_MISSING = object()


class JsonPathError(ValueError):
    """A path that cannot be parsed."""


def compile_path(path: str) -> tuple[Step, ...]:
    """Parse ``path`` into steps; raise :class:`JsonPathError` naming the bad position."""
    if not path.startswith("$"):
        raise JsonPathError(f"JSON path {path!r} must start with '$'")
    steps: list[Step] = []
    pos = 1
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None:
            raise JsonPathError(f"JSON path {path!r}: cannot parse at position {pos}")
        if match["name"] is not None:
            steps.append(match["name"])
        elif match["index"] is not None:
            steps.append(int(match["index"]))
        else:
            steps.append(re.sub(r"\\(.)", r"\1", match["key"]))
        pos = match.end()
    return tuple(steps)


def resolve(document: object, steps: tuple[Step, ...]) -> object:
    """The value at ``steps`` in ``document``; raise ``LookupError`` if any step is absent."""
    node = document
    for step in steps:
        if isinstance(step, str):
            node = node.get(step, _MISSING) if isinstance(node, dict) else _MISSING
        elif isinstance(node, list) and -len(node) <= step < len(node):
            node = node[step]
        else:
            node = _MISSING
        if node is _MISSING:
            raise LookupError(step)
    return node
