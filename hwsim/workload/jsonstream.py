"""Stream the records of a JSON Lines or JSON trace file, one at a time, with their lines.

Two containers hold request records (see :mod:`hwsim.workload.trace` for the records):

* JSON Lines: one JSON object per line; blank lines are skipped.
* JSON: a top-level array of objects, or an object
  ``{"version": 1, "block_tokens": 512, "requests": [...]}``.

JSON files are decoded incrementally with :meth:`json.JSONDecoder.raw_decode` over a buffer
filled in chunks, so memory stays flat in the number of requests. The price of streaming is
one ordering rule: in the object form, ``block_tokens`` (which sets the default for every
request) must come before ``requests``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NamedTuple, TextIO

from hwsim.errors import SpecError
from hwsim.registry import suggest

__all__ = ["RawRecord", "iter_jsonl_records", "iter_json_records", "HEADER_FIELDS"]

#: Keys of the JSON object form, in the order the writer emits them.
HEADER_FIELDS = ("version", "block_tokens", "requests")
_WHITESPACE = " \t\r\n"
_CHUNK_CHARS = 1 << 16
_MAX_RECORD_CHARS = 1 << 26  # no request record is anywhere near 64 Mi characters


class RawRecord(NamedTuple):
    """One undecoded request record and where it came from."""

    position: int  #: 0-based position among the file's records
    path: str  #: field path of the record: ``""`` (JSONL), ``"[3]"`` or ``"requests[3]"``
    line: int  #: 1-based line where the record starts
    data: Any  #: the decoded JSON value (validated by the caller)
    block_tokens: int | None  #: file-level default block size, if the file sets one


def iter_jsonl_records(fh: TextIO, file: str) -> Iterator[RawRecord]:
    """Yield the records of a JSON Lines stream, skipping blank lines."""
    index = 0
    for line, text in enumerate(fh, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(
                f"malformed JSON: {err.msg} at column {err.colno}",
                file=file,
                line=line,
                expected="one JSON object per line",
                found=text.strip(),
            ) from None
        yield RawRecord(index, "", line, data, None)
        index += 1


def iter_json_records(fh: TextIO, file: str) -> Iterator[RawRecord]:
    """Yield the records of a JSON trace (array or ``{"version": 1, "requests": [...]}``)."""
    scan = _Scanner(fh, file)
    first = scan.peek()
    if first == "[":
        yield from _array(scan, "", None)
    elif first == "{":
        yield from _header_object(scan)
    else:
        raise scan.error(
            "not a JSON trace",
            expected="'[' (an array of requests) or '{' (an object with 'requests')",
            found=first if first is not None else "an empty file",
        )
    if scan.peek() is not None:
        raise scan.error(
            "extra data after the JSON value (is this a JSON Lines file? name it .jsonl)",
            expected="the end of the file",
            found=scan.snippet(),
        )


def _array(scan: _Scanner, prefix: str, block_tokens: int | None) -> Iterator[RawRecord]:
    scan.expect("[", f"'[' to open {prefix or 'the request array'}")
    if scan.peek() == "]":
        scan.advance()
        return
    index = 0
    while True:
        path = f"{prefix}[{index}]"
        data, line = scan.value(path)
        yield RawRecord(index, path, line, data, block_tokens)
        index += 1
        nxt = scan.peek()
        if nxt == ",":
            scan.advance()
        elif nxt == "]":
            scan.advance()
            return
        else:
            raise scan.error(
                f"malformed JSON after {path}",
                expected="',' or ']'",
                found=scan.snippet() if nxt is not None else "the end of the file",
            )


def _header_object(scan: _Scanner) -> Iterator[RawRecord]:
    scan.expect("{", "'{'")
    seen: set[str] = set()
    block_tokens: int | None = None
    while scan.peek() != "}" or seen:
        key, _ = scan.value("the top-level object")
        if not isinstance(key, str):
            raise scan.error("malformed JSON: expected a key", expected="a quoted key", found=key)
        if key in seen:
            raise scan.error(
                f"duplicate field '{key}'", expected="each top-level key once", found=key
            )
        scan.expect(":", f"':' after the key '{key}'")
        if key == "requests":
            yield from _array(scan, "requests", block_tokens)
        else:
            value, line = scan.value(key)
            block_tokens = (
                _header_value(key, value, seen, file=scan.file, line=line) or block_tokens
            )
        seen.add(key)
        if scan.peek() != ",":
            break
        scan.advance()
    scan.expect("}", "',' or '}'")
    for key in ("version", "requests"):
        if key not in seen:
            raise SpecError(
                f"missing required field '{key}'",
                file=scan.file,
                path=key,
                expected="an object with 'version': 1 and 'requests': [...]",
            )


def _header_value(key: str, value: Any, seen: set[str], *, file: str, line: int) -> int | None:
    """Check one top-level key other than ``requests``; return the block size if it is one."""
    if key == "version":
        if type(value) is not int or value != 1:
            raise SpecError(
                "unsupported trace version",
                file=file,
                line=line,
                path=key,
                expected="1",
                found=value,
            )
        return None
    if key == "block_tokens":
        if "requests" in seen:
            raise SpecError(
                "'block_tokens' must come before 'requests' (the file is read as a stream)",
                file=file,
                line=line,
                path=key,
            )
        if type(value) is not int or value < 1:
            raise SpecError(
                "bad block size",
                file=file,
                line=line,
                path=key,
                expected="an integer number of tokens >= 1",
                found=value,
            )
        return value
    raise SpecError(
        f"unknown field '{key}'{suggest(key, HEADER_FIELDS)}",
        file=file,
        line=line,
        path=key,
        expected="one of " + ", ".join(HEADER_FIELDS),
        found=key,
    )


class _Scanner:
    """A forward-only cursor over a text stream, decoding one JSON value at a time."""

    def __init__(self, fh: TextIO, file: str) -> None:
        self.file = file
        self._fh = fh
        self._decoder = json.JSONDecoder()
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._buf_line = 1  # line of self._buf[0]
        self._mark = (0, 1)  # (position, line) counted so far, to number lines incrementally

    def line_at(self, pos: int) -> int:
        mark_pos, mark_line = self._mark
        if pos < mark_pos:
            mark_pos, mark_line = 0, self._buf_line
        line = mark_line + self._buf.count("\n", mark_pos, pos)
        self._mark = (pos, line)
        return line

    def _fill(self, at_least: int = _CHUNK_CHARS) -> bool:
        """Drop consumed text and read more; False at the end of the stream."""
        if self._eof:
            return False
        if self._pos:
            self._buf_line = self.line_at(self._pos)
            self._buf, self._pos, self._mark = self._buf[self._pos :], 0, (0, self._buf_line)
        data = self._fh.read(max(at_least, _CHUNK_CHARS))
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def peek(self) -> str | None:
        """Skip whitespace; return the next character without consuming it (None at the end)."""
        while True:
            buf, pos = self._buf, self._pos
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            self._pos = pos
            if pos < len(buf):
                return buf[pos]
            if not self._fill():
                return None

    def advance(self) -> None:
        self._pos += 1

    def expect(self, char: str, what: str) -> None:
        got = self.peek()
        if got != char:
            raise self.error(
                "malformed JSON",
                expected=what,
                found=self.snippet() if got else "the end of the file",
            )
        self.advance()

    def value(self, path: str) -> tuple[Any, int]:
        """Decode the JSON value at the cursor; return it and the line where it starts."""
        if self.peek() is None:
            raise self.error(f"unexpected end of file at {path}", expected="a JSON value")
        while True:
            try:
                data, end = self._decoder.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                if self._more():
                    continue
                raise self._decode_error(path) from None
            if end < len(self._buf) or not self._more():  # a number may go on in the next chunk
                line = self.line_at(self._pos)
                self._pos = end
                return data, line

    def _decode_error(self, path: str) -> SpecError:
        """The located error for the value at the cursor (decoded again: the buffer may have
        moved since the first attempt)."""
        try:
            self._decoder.raw_decode(self._buf, self._pos)
        except json.JSONDecodeError as err:
            return SpecError(
                f"malformed JSON at {path}: {err.msg}", file=self.file, line=self.line_at(err.pos)
            )
        raise AssertionError("the value decoded on the second attempt")  # pragma: no cover

    def _more(self) -> bool:
        pending = len(self._buf) - self._pos
        if pending > _MAX_RECORD_CHARS:
            raise self.error("a JSON value longer than 64 Mi characters; is the file malformed?")
        return self._fill(at_least=pending)

    def snippet(self) -> str:
        return self._buf[self._pos : self._pos + 20]

    def error(self, message: str, *, expected: str | None = None, found: Any = None) -> SpecError:
        return SpecError(
            message, file=self.file, line=self.line_at(self._pos), expected=expected, found=found
        )
