"""Read YAML/JSON files into plain data, remembering the line of every field path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hwsim.errors import SpecError, join_path

# The C loader is several times faster; fall back where libyaml is missing.
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Document:
    """Parsed file content plus the 1-based line of each field path."""

    data: Any
    file: str
    lines: dict[str, int] = field(default_factory=dict)
    origins: tuple[tuple[str, str, int | None], ...] = ()
    """``(field path, file, line)`` of values set by patch files: an error at or below such a
    path points at the patch file's line that set it (the last patch wins)."""

    def origin_of(self, path: str) -> tuple[str, int | None] | None:
        """``(file, line)`` of the patch that set ``path`` or one of its ancestors, if any."""
        for where, file, line in reversed(self.origins):
            if path == where or path.startswith((where + ".", where + "[")):
                return file, line
        return None

    def line_of(self, path: str) -> int | None:
        """Line of ``path`` or of its closest ancestor that has one."""
        p = path
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            cut = max(p.rfind("."), p.rfind("["))
            p = p[:cut] if cut > 0 else ""

    def error(self, err: SpecError, prefix: str = "") -> SpecError:
        """Locate ``err`` (whose path is relative to ``prefix``) in this document."""
        full = join_path(prefix, err.path)
        patched = self.origin_of(full)
        if patched is not None:
            return err.with_context(file=patched[0], prefix=prefix, line=patched[1])
        located = err.with_context(file=self.file, prefix=prefix, line=self.line_of(full))
        inner = [(w, f, n) for w, f, n in self.origins if full and w.startswith((full + ".", full + "["))]
        if not inner:
            return located
        # the error is about a block in which a patch changed a value: say where that came from
        sets = "; ".join(f"{w} set by {f}" + (f":{n}" if n is not None else "") for w, f, n in inner)
        return SpecError(f"{located.message} ({sets})", file=located.file, path=located.path,
                         expected=located.expected, found=located.found, line=located.line)


def _walk(node: yaml.Node, path: str, lines: dict[str, int], file: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            sub = join_path(path, str(key.value))
            if str(key.value) in seen:
                raise SpecError(f"duplicate key '{key.value}' (YAML keeps only the last one)", file=file,
                                path=sub, line=key.start_mark.line + 1)
            seen.add(str(key.value))
            lines[sub] = key.start_mark.line + 1
            _walk(value, sub, lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{path}[{i}]", lines, file)


def parse_text(text: str, file: str) -> Document:
    """Parse YAML (JSON is YAML) text; malformed input becomes a located SpecError."""
    try:
        node = yaml.compose(text, Loader=YAML_LOADER)
        data = yaml.load(text, Loader=YAML_LOADER) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise SpecError(f"malformed YAML: {err.problem or err}", file=file, line=line) from None
    except yaml.YAMLError as err:
        raise SpecError(f"malformed YAML: {err}", file=file) from None
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines, file)
    return Document(data=data, file=file, lines=lines)


def read_document(path: str | Path) -> Document:
    """Read and parse a YAML or JSON file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=str(p)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read file: {err}", file=str(p)) from None
    return parse_text(text, str(p))
