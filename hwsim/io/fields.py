"""Stage 2 helpers: read schema-checked mappings into SI floats with located errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from hwsim.errors import SpecError, UnitError, join_path
from hwsim.spec.hardware import Source
from hwsim.units import Dim, parse_fraction, parse_quantity

_MISSING = object()
T = TypeVar("T")


class Fields:
    """A mapping from a file plus its path, with typed accessors.

    Every accessor raises :class:`SpecError` carrying this mapping's path; the loader adds
    the file and line.
    """

    def __init__(self, data: dict[str, Any] | None, path: str = "") -> None:
        self.data = data or {}
        self.path = path

    def at(self, key: str | int) -> str:
        return f"{self.path}[{key}]" if isinstance(key, int) else join_path(self.path, key)

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value

    def require(self, key: str) -> Any:
        if not self.has(key):
            raise SpecError(f"missing required field '{key}'", path=self.at(key), expected="a value")
        return self.data[key]

    def quantity(self, key: str, dim: Dim, default: Any = _MISSING, *, positive: bool = False) -> Any:
        """SI float of ``key`` parsed as ``dim``; ``default`` when absent (required if none).

        With ``positive``, zero and negative values are rejected at this field's path.
        """
        if not self.has(key):
            if default is _MISSING:
                return self.quantity(key, dim, self.require(key), positive=positive)
            return default
        value = self.quantity_of(self.data[key], dim, key)
        if positive and value <= 0:
            raise SpecError(f"{key} must be > 0", path=self.at(key), expected=f"a positive {dim.value}",
                            found=self.data[key])
        if value < 0:
            raise SpecError(f"{key} must be >= 0", path=self.at(key), expected=f"a non-negative {dim.value}",
                            found=self.data[key])
        return value

    def quantity_of(self, value: Any, dim: Dim, key: str | int) -> float:
        try:
            return parse_quantity(value, dim)
        except UnitError as err:
            raise SpecError(str(err), path=self.at(key)) from None

    def fraction(self, key: str, default: Any = _MISSING) -> Any:
        if not self.has(key):
            return default if default is not _MISSING else self.require(key)
        try:
            return parse_fraction(self.data[key])
        except UnitError as err:
            raise SpecError(str(err), path=self.at(key)) from None

    def sub(self, key: str) -> Fields:
        value = self.get(key, {})
        return Fields(value, self.at(key))

    def items(self, key: str) -> Iterator[tuple[int, Any, str]]:
        """(index, item, path) for each element of the list ``key``."""
        for i, item in enumerate(self.get(key, [])):
            yield i, item, f"{self.at(key)}[{i}]"

    def source(self, key: str = "source") -> Source | None:
        return source_of(self.get(key), self.at(key))


def source_of(value: Any, path: str) -> Source | None:
    """A ``source:`` field: a string, or ``{text, url}``."""
    if value is None:
        return None
    if isinstance(value, str):
        return Source(text=value)
    if isinstance(value, dict):
        return Source(text=str(value.get("text", "")), url=value.get("url"))
    raise SpecError("a source must be text or {text, url}", path=path, found=value)


def sources_of(f: Fields) -> dict[str, Source]:
    """A file's ``sources:`` mapping (section name -> citation)."""
    out: dict[str, Source] = {}
    for key, value in f.get("sources", {}).items():
        src = source_of(value, f.at(f"sources.{key}"))
        if src is not None:
            out[key] = src
    return out


def build(path: str, factory: Callable[..., T], **kwargs: Any) -> T:
    """Call a spec constructor, turning its ValueError into a SpecError at ``path``."""
    try:
        return factory(**kwargs)
    except ValueError as err:
        raise SpecError(str(err), path=path) from None
