"""Field-path patches: change values of a parsed YAML document before it is built.

A field path names one value of a document the way error messages do:
``deployment.pools[0].parallelism.ep`` is the key ``ep`` of the mapping ``parallelism`` of
the first item of the list ``pools`` of the mapping ``deployment``. A patch maps paths to new
values; :func:`apply_patch` returns a patched deep copy and never touches its input.

Rules (the same for sweeps, ``--set`` style overrides and solver plans):

* every step before the last must exist: a key present in its mapping, or an index within its
  list; a path that leaves the document raises a :class:`~hwsim.errors.SpecError` naming the
  path and listing what exists at that place (with a "did you mean" hint);
* the last key may be new, so that optional fields absent from the base file can be set; stage-1
  validation (the JSON Schema) then rejects keys the format does not know;
* a list index must exist (a patch never grows a list); the value replaces the whole subtree
  at the path, so a mapping value sets several related fields at once.

Keys holding a ``.`` or ``[`` cannot be addressed; hwsim's formats have none.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.source import Document
from hwsim.registry import suggest

__all__ = ["parse_path", "format_path", "check_path", "apply_patch", "patch_document", "read_patch", "read_patch_file"]

Step = str | int
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]|(\.)")
_HINT = "keys joined by '.' with list indices in brackets, e.g. 'deployment.pools[0].parallelism.ep'"


def parse_path(path: str) -> tuple[Step, ...]:
    """Split a field path into keys (``str``) and list indices (``int``).

    >>> parse_path("deployment.pools[0].parallelism.ep")
    ('deployment', 'pools', 0, 'parallelism', 'ep')
    >>> parse_path("nodes[1]")
    ('nodes', 1)
    """
    steps: list[Step] = []
    pos, expect_key = 0, True
    text = path.strip() if isinstance(path, str) else ""
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        key, index, dot = m.groups()
        if key is not None:
            if not expect_key:
                break
            steps.append(key.strip())
            expect_key = False
        elif index is not None:
            if expect_key:
                break
            steps.append(int(index))
        elif dot is not None:
            if expect_key:
                break
            expect_key = True
        pos = m.end()
    if not text or pos != len(text) or expect_key or not steps:
        raise SpecError("malformed field path", path=str(path), expected=_HINT, found=path)
    return tuple(steps)


def format_path(steps: Iterable[Step]) -> str:
    """The inverse of :func:`parse_path`.

    >>> format_path(("deployment", "pools", 0, "devices"))
    'deployment.pools[0].devices'
    """
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "nothing" if value is None else type(value).__name__


def _step_into(node: Any, step: Step, done: tuple[Step, ...], full: str, *, last: bool) -> Any:
    """The child of ``node`` at ``step``; a SpecError saying what exists there when missing."""
    where = format_path(done) or "the top level"
    here = format_path((*done, step))
    if isinstance(node, Mapping):
        if isinstance(step, int):
            raise SpecError(f"{where} is a mapping, not a list: it has no item [{step}]", path=full,
                            expected=f"one of its keys: {', '.join(map(str, node)) or '(none)'}", found=here)
        if step in node or last:
            return node.get(step)
        keys = [str(k) for k in node]
        raise SpecError(f"no field '{step}' at {where}{suggest(step, keys)}", path=full,
                        expected=f"one of {', '.join(keys)}" if keys else "a key of an empty mapping",
                        found=here)
    if isinstance(node, list):
        if not isinstance(step, int):
            raise SpecError(f"{where} is a list of {len(node)} items, not a mapping: it has no field '{step}'",
                            path=full, expected=f"an index [0]..[{len(node) - 1}]" if node else "a non-empty list",
                            found=here)
        if step >= len(node):
            raise SpecError(f"index [{step}] out of range: {where} has {len(node)} item(s)", path=full,
                            expected=f"an index [0]..[{len(node) - 1}]" if node else "a non-empty list",
                            found=here)
        return node[step]
    raise SpecError(f"{where} is {_kind(node)} ({node!r}), not a mapping or list: nothing inside it to set",
                    path=full, expected=f"a path ending at {where} or before", found=here)


def check_path(data: Any, path: str) -> tuple[Step, ...]:
    """Check that ``path`` can be set in ``data``; return its steps.

    >>> check_path({"nodes": {"system": "DGX-H100", "count": 4}}, "nodes.count")
    ('nodes', 'count')
    >>> check_path({"nodes": {"system": "DGX-H100"}}, "node.count")
    Traceback (most recent call last):
    ...
    hwsim.errors.SpecError: node.count: no field 'node' at the top level (did you mean 'nodes'?)
      expected one of nodes; found 'node'
    """
    steps = parse_path(path)
    node = data
    for i, step in enumerate(steps):
        node = _step_into(node, step, steps[:i], path, last=i == len(steps) - 1)
    return steps


def apply_patch(data: Any, patch: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Any:
    """A deep copy of ``data`` with each ``path: value`` of ``patch`` set, in order.

    Later paths may reach inside values set by earlier ones.

    >>> base = {"deployment": {"pools": [{"parallelism": {"tp": 1, "ep": 8}}]}}
    >>> apply_patch(base, {"deployment.pools[0].parallelism.ep": 16})
    {'deployment': {'pools': [{'parallelism': {'tp': 1, 'ep': 16}}]}}
    >>> base["deployment"]["pools"][0]["parallelism"]["ep"]
    8
    """
    items = patch.items() if isinstance(patch, Mapping) else patch
    out = copy.deepcopy(data)
    for path, value in items:
        steps = check_path(out, path)
        parent = out
        for step in steps[:-1]:
            parent = parent[step]
        parent[steps[-1]] = copy.deepcopy(value)
    return out


def patch_document(doc: Document, patch: Mapping[str, Any] | Iterable[tuple[str, Any]],
                   source: Document | None = None) -> Document:
    """``doc`` with ``patch`` applied. Errors in values the patch set point at ``source`` (the
    patch file: its ``set:`` line for that path) when given; others at the base file's lines."""
    items = list(patch.items() if isinstance(patch, Mapping) else patch)
    out = replace(doc, data=apply_patch(doc.data, items))
    if source is None:
        return out
    origins = tuple((format_path(parse_path(path)), source.file, source.line_of(f"set.{path}"))
                    for path, _ in items)
    return replace(out, origins=doc.origins + origins)


def read_patch(path: str | Path) -> tuple[dict[str, Any], Document]:
    """:func:`read_patch_file`'s mapping and the parsed patch file (for locating errors)."""
    from hwsim.io.source import read_document

    doc = read_document(path)
    return _changes(doc), doc


def read_patch_file(path: str | Path) -> dict[str, Any]:
    """The ``set:`` mapping of a patch file (what the planners write, ``hwsim simulate --patch``)::

        kind: patch
        source: "hwsim plan placement ..."     # optional: what wrote it
        set:
          deployment.experts.placement: file
          deployment.experts.placement_file: placement.yaml

    Paths are checked when the patch is applied to a document; relative file names inside
    values are read relative to the patched cluster file, as if written there.
    """
    return read_patch(path)[0]


def _changes(doc: Document) -> dict[str, Any]:
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError("a patch file is a mapping with 'kind: patch' and 'set:'", file=doc.file,
                        expected="kind: patch, set: {field.path: value}", found=_kind(data))
    if data.get("kind") != "patch":
        raise doc.error(SpecError("not a patch file", path="kind", expected="patch", found=data.get("kind")))
    unknown = sorted(set(data) - {"kind", "version", "source", "set"})
    if unknown:
        raise doc.error(SpecError(f"unknown key '{unknown[0]}'{suggest(unknown[0], ('set', 'source'))}",
                                  path=unknown[0], expected="kind, version, source, set"))
    changes = data.get("set")
    if not isinstance(changes, dict) or not changes:
        raise doc.error(SpecError("a patch needs a non-empty 'set:' mapping of field paths to values",
                                  path="set", expected="{field.path: value}", found=_kind(changes)))
    for key in changes:
        if not isinstance(key, str) or not parse_path(key):
            raise doc.error(SpecError("a patch key must be a field path", path=f"set.{key}", expected=_HINT, found=key))
    return dict(changes)
