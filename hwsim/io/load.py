"""Load files into specs: parse, check the schema (stage 1), build and check meaning (stage 2).

Every problem surfaces as one :class:`~hwsim.errors.SpecError` naming the file, the line
where known, and the field path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io import catalog
from hwsim.io.fields import Fields
from hwsim.io.source import Document, read_document
from hwsim.io.validate import check_schema


class Context:
    """What a builder needs besides its own mapping: where to find referenced entries.

    Specs loaded through one context are cached by file, so a device shared by many nodes
    is built once.
    """

    def __init__(self, extra: Sequence[str | Path] = ()) -> None:
        self.extra = tuple(extra)
        self._cache: dict[tuple[str, Path], Any] = {}

    def reference(self, kind: str, ref: Any, *, doc: Document, path: str) -> Any:
        """Build the entry a field refers to: a catalog name, a file path, or an inline mapping."""
        if isinstance(ref, dict):
            return self.build(kind, ref, doc=doc, prefix=path)
        if not isinstance(ref, str):
            raise doc.error(SpecError(f"expected a {kind} name, file or mapping", path=path, found=ref))
        try:
            file = catalog.resolve(kind, ref, base_dir=Path(doc.file).parent, extra=self.extra, path=path)
        except SpecError as err:
            raise doc.error(err) from None
        return self.load_file(kind, file)

    def load_file(self, kind: str, file: Path) -> Any:
        key = (kind, Path(file).resolve())
        if key not in self._cache:
            doc = read_document(file)
            self._cache[key] = self.build(kind, doc.data, doc=doc, prefix="")
        return self._cache[key]

    def build(self, kind: str, data: Any, *, doc: Document, prefix: str) -> Any:
        """Validate ``data`` (found at ``prefix`` inside ``doc``) and build its spec."""
        if not isinstance(data, dict):
            raise doc.error(SpecError(f"expected a {kind} mapping", path=prefix, found=data))
        body = dict(data)
        declared = body.get("kind", kind)
        if declared != kind:
            raise doc.error(SpecError(f"expected a {kind} file", path=_join(prefix, "kind"),
                                      expected=f"kind: {kind}", found=declared))
        body.setdefault("kind", kind)
        body.setdefault("version", 1)
        try:
            check_schema(body, kind)
        except SpecError as err:
            raise doc.error(err, prefix) from None
        try:
            return BUILDERS[kind](Fields(body, prefix), self, doc)
        except SpecError as err:
            if err.file is not None:
                raise
            raise doc.error(err) from None


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix and path else (prefix or path)


Builder = Callable[[Fields, Context, Document], Any]
BUILDERS: dict[str, Builder] = {}


def builder(kind: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        BUILDERS[kind] = fn
        return fn

    return deco


def _ensure_builders() -> None:
    # Builders register themselves on import; import them lazily to keep import order simple.
    from hwsim.io import build_cluster, build_hardware, build_model  # noqa: F401


def load(kind: str, ref: str | Path, extra: Sequence[str | Path] = ()) -> Any:
    """Load a ``kind`` spec from a file path or a catalog name."""
    _ensure_builders()
    ctx = Context(extra)
    text = str(ref)
    if Path(text).exists() or catalog.looks_like_path(text):
        return ctx.load_file(kind, Path(text))
    return ctx.load_file(kind, catalog.find(kind, text, ctx.extra))


def load_device(ref: str | Path, extra: Sequence[str | Path] = ()) -> Any:
    return load("device", ref, extra)


def load_node(ref: str | Path, extra: Sequence[str | Path] = ()) -> Any:
    return load("node", ref, extra)


def load_cluster(ref: str | Path, extra: Sequence[str | Path] = ()) -> Any:
    return load("cluster", ref, extra)


def load_model(ref: str | Path, extra: Sequence[str | Path] = ()) -> Any:
    return load("model", ref, extra)
