"""A small typed registry: a duplicate is an error, an unknown name lists the choices."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from hwsim.errors import SpecError

T = TypeVar("T")


def suggest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" (did you mean '{lowered[close[0]]}'?)" if close else ""


def unknown_name_error(what: str, name: str, choices: list[str] | tuple[str, ...], path: str = "") -> SpecError:
    """The error for a name that is not among ``choices``."""
    known = ", ".join(sorted(choices)) or "none"
    return SpecError(f"unknown {what} '{name}'; known: {known}{suggest(name, choices)}", path=path)


class Registry(Generic[T]):
    """Named entries of one kind (schedulers, routers, routing models, ...).

    >>> r: Registry[int] = Registry("answer")
    >>> r.add("x", 42)
    >>> r.get("x")
    42
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.what} '{name}' is already registered")
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(entry: T) -> T:
            self.add(name, entry)
            return entry

        return deco

    def get(self, name: str, path: str = "") -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name_error(self.what, name, self.names(), path) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
