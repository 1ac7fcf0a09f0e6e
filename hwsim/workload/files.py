"""File plumbing for traces: open text (optionally gzip-compressed), write atomically.

Every operating-system problem (a missing file, a folder where a file was expected, bytes
that are not UTF-8, a broken gzip stream) becomes a :class:`~hwsim.errors.SpecError` naming
the file, so that callers never show a traceback for bad input.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO, TextIO

from hwsim.errors import SpecError

__all__ = ["open_text", "read_errors", "atomic_text_writer", "atomic_path", "is_gzip", "strip_gz"]

#: Permissions of files written by :func:`atomic_text_writer` (``mkstemp`` makes 0600).
FILE_MODE = 0o644


def is_gzip(path: str | Path) -> bool:
    """Whether ``path`` names a gzip-compressed file (by its ``.gz`` suffix)."""
    return Path(path).suffix.lower() == ".gz"


def strip_gz(path: str | Path) -> Path:
    """``trace.jsonl.gz`` -> ``trace.jsonl``; other names unchanged."""
    p = Path(path)
    return p.with_suffix("") if is_gzip(p) else p


def open_text(path: str | Path) -> TextIO:
    """Open ``path`` for reading as UTF-8 text, decompressing ``.gz`` files on the fly.

    Raises
    ------
    SpecError
        When the file does not exist or cannot be opened.
    """
    p = Path(path)
    try:
        if is_gzip(p):
            return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
        return open(p, encoding="utf-8", newline="")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        raise SpecError("file not found", file=str(p)) from None
    except IsADirectoryError:
        raise SpecError("is a folder, expected a file", file=str(p)) from None
    except OSError as err:
        raise SpecError(f"cannot read the file: {err.strerror or err}", file=str(p)) from None


@contextmanager
def read_errors(path: str | Path) -> Iterator[None]:
    """Turn errors raised while reading ``path`` (encoding, gzip, I/O) into SpecErrors."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise SpecError(
            "the file is not UTF-8 text",
            file=str(path),
            expected="UTF-8 text",
            found=err.object[err.start : err.start + 8],
        ) from None
    except (gzip.BadGzipFile, EOFError) as err:
        raise SpecError(f"broken gzip stream: {err}", file=str(path)) from None
    except OSError as err:
        raise SpecError(f"cannot read the file: {err.strerror or err}", file=str(path)) from None


@contextmanager
def atomic_text_writer(path: str | Path) -> Iterator[TextIO]:
    """Write UTF-8 text to ``path`` atomically.

    The text goes to a temporary file in the same folder, which replaces ``path`` with
    :func:`os.replace` only once everything was written and synced; on any error the temporary
    file is removed and ``path`` is left as it was. Missing parent folders are created. A
    ``.gz`` suffix compresses the output (with a zero timestamp, so equal inputs give
    byte-identical files).
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as err:
        raise SpecError(f"cannot write the file: {err.strerror or err}", file=str(p)) from None
    try:
        with ExitStack() as stack:
            raw = stack.enter_context(os.fdopen(fd, "wb"))
            binary: BinaryIO | gzip.GzipFile = raw
            if is_gzip(p):
                binary = stack.enter_context(
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
                )
            text = io.TextIOWrapper(binary, encoding="utf-8", newline="\n")
            stack.callback(_detach_quietly, text)  # closes before gzip and raw (LIFO)
            yield text
            text.detach()  # flushes
            if binary is not raw:
                binary.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, p)
    except BaseException as err:
        _unlink_quietly(tmp)
        if isinstance(err, OSError):
            raise SpecError(f"cannot write the file: {err.strerror or err}", file=str(p)) from None
        raise


def _detach_quietly(text: io.TextIOWrapper) -> None:
    # Detach so that the wrapper never closes (or flushes into) the already closed binary file.
    with suppress(ValueError):  # already detached
        text.detach()


def _unlink_quietly(path: str) -> None:
    with suppress(OSError):  # already gone
        os.unlink(path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a binary writer; it replaces ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was. Missing parent
    folders are created. Operating-system errors become SpecErrors naming the file.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise SpecError(f"cannot write the file: {err.strerror or err}", file=str(p)) from None
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, p)
    except BaseException as err:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise SpecError(f"cannot write the file: {err.strerror or err}", file=str(p)) from None
        raise
