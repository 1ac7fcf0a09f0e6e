"""The hwsim error tree.

User problems are exceptions, never ``assert``: the CLI catches :class:`HwsimError`,
prints its message without a traceback and exits with :attr:`HwsimError.exit_code`.
"""

from __future__ import annotations

from typing import Any


class HwsimError(Exception):
    """Base class of every error hwsim raises on purpose."""

    exit_code = 2


class UnitError(HwsimError, ValueError):
    """A quantity string could not be parsed, or has the wrong dimension."""


class SpecError(HwsimError):
    """Bad input: a file, a field or a flag is malformed or makes no sense.

    Parameters
    ----------
    message:
        What went wrong, in a sentence.
    file:
        The file the bad value came from, if any.
    path:
        The field's path inside that file, e.g. ``devices[0].memory[1].bandwidth``.
    expected, found:
        What was expected, and what was found instead.
    line:
        The 1-based line in ``file`` where known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        path: str = "",
        expected: str | None = None,
        found: Any = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.path = path
        self.expected = expected
        self.found = found
        self.line = line
        super().__init__(str(self))

    def with_context(self, *, file: str | None = None, prefix: str = "", line: int | None = None) -> SpecError:
        """Return a copy located in ``file`` with ``prefix`` prepended to the path."""
        path = join_path(prefix, self.path) if prefix else self.path
        return SpecError(
            self.message,
            file=self.file or file,
            path=path,
            expected=self.expected,
            found=self.found,
            line=self.line if self.line is not None else line,
        )

    def __str__(self) -> str:
        where = self.file or ""
        if where and self.line is not None:
            where += f":{self.line}"
        head = ": ".join(x for x in (where, self.path) if x)
        lines = [f"{head}: {self.message}" if head else self.message]
        if self.expected is not None:
            found = "" if self.found is None else f"; found {_short(self.found)}"
            lines.append(f"  expected {self.expected}{found}")
        return "\n".join(lines)


class InfeasibleError(HwsimError):
    """The input is valid but cannot run as asked (e.g. the model does not fit in memory)."""


class SolverError(HwsimError):
    """A solver failed or ran out of time without a usable answer."""

    exit_code = 1


def join_path(prefix: str, path: str) -> str:
    """Join two field paths: ``join_path('nodes[0]', 'device') == 'nodes[0].device'``."""
    if not prefix:
        return path
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
