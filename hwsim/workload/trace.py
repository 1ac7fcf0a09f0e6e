"""Requests and the hwsim request-trace format (JSON Lines or JSON), read and written as streams.

A trace is a sequence of requests in non-decreasing arrival order. On disk each request is
one JSON object (a *record*)::

    {"id": 0, "arrival_s": 0.0, "input_tokens": 1024, "output_tokens": 211, "prefix_blocks": [0, 17, 18]}

========================  ==========  ========================================================
field                     required    meaning
========================  ==========  ========================================================
``arrival_s``             yes         arrival time in seconds from the start of the trace;
                                      a number >= 0, never smaller than the previous request's
``input_tokens``          yes         prompt length in tokens, an integer >= 1
``output_tokens``         yes         tokens to generate, an integer >= 1
``id``                    no          an integer >= 0; defaults to the record's 0-based index
``prefix_blocks``         no          hashes (integers) of the prompt's consecutive
                                      ``block_tokens``-sized blocks, first block first; equal
                                      hashes mean a reusable KV-cache prefix; at most
                                      ceil(input_tokens / block_tokens) of them
``block_tokens``          no          tokens per prefix block, an integer >= 1; defaults to the
                                      file's ``block_tokens`` or 512 (Mooncake's block size)
``tenant``                no          a non-empty string naming who sent the request, or null
``priority``              no          an integer; larger is more urgent; default 0
========================  ==========  ========================================================

Containers: ``*.jsonl`` (one record per line) or ``*.json`` (a top-level array of records, or
``{"version": 1, "block_tokens": 512, "requests": [...]}``); either may be gzip-compressed
(``*.jsonl.gz``). A JSON Schema for one record ships as ``hwsim/io/schemas/v1/trace.json``.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TextIO

from hwsim.errors import SpecError, join_path
from hwsim.registry import suggest
from hwsim.workload.files import atomic_text_writer, open_text, read_errors, strip_gz
from hwsim.workload.jsonstream import RawRecord, iter_json_records, iter_jsonl_records

__all__ = [
    "DEFAULT_BLOCK_TOKENS",
    "RECORD_FIELDS",
    "REQUIRED_FIELDS",
    "Request",
    "TraceFormat",
    "iter_requests",
    "read_requests",
    "write_requests",
    "request_from_record",
    "request_to_record",
    "trace_format",
    "window",
]

#: Tokens per prefix block unless a file or record says otherwise (Mooncake's block size).
DEFAULT_BLOCK_TOKENS = 512
TRACE_VERSION = 1
RECORD_FIELDS = (
    "id",
    "arrival_s",
    "input_tokens",
    "output_tokens",
    "prefix_blocks",
    "block_tokens",
    "tenant",
    "priority",
)
REQUIRED_FIELDS = ("arrival_s", "input_tokens", "output_tokens")
TraceFormat = Literal["jsonl", "json"]
_SUFFIXES: dict[str, TraceFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One inference request of a trace.

    Parameters
    ----------
    request_id:
        Identifier, an integer >= 0 (unique within a trace by convention; not checked).
    arrival_s:
        Arrival time in seconds from the start of the trace, finite and >= 0.
    input_tokens, output_tokens:
        Prompt length and number of tokens to generate, integers >= 1.
    prefix_blocks:
        Hashes of the prompt's consecutive ``block_tokens``-sized blocks; equal hashes mark
        KV-cache blocks that an earlier request may have left behind. At most
        ``ceil(input_tokens / block_tokens)`` of them. Empty when unknown.
    block_tokens:
        Tokens per prefix block, >= 1 (default 512).
    tenant:
        Who sent the request (a non-empty string), or None.
    priority:
        Scheduling priority; larger is more urgent; default 0.

    Raises
    ------
    ValueError
        When a field is out of range (readers turn this into a located SpecError first).
    """

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = ()
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    tenant: str | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        for name in ("request_id", "input_tokens", "output_tokens", "block_tokens", "priority"):
            object.__setattr__(self, name, _as_int(getattr(self, name), name))
        object.__setattr__(self, "arrival_s", float(self.arrival_s))
        object.__setattr__(
            self, "prefix_blocks", tuple(_as_int(b, "prefix_blocks") for b in self.prefix_blocks)
        )
        if self.request_id < 0:
            raise ValueError(f"request_id must be >= 0, got {self.request_id}")
        if not math.isfinite(self.arrival_s) or self.arrival_s < 0:
            raise ValueError(f"arrival_s must be finite and >= 0, got {self.arrival_s!r}")
        for name in ("input_tokens", "output_tokens", "block_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.prefix_blocks) > self.num_prompt_blocks:
            raise ValueError(
                f"{len(self.prefix_blocks)} prefix blocks of {self.block_tokens} tokens are more than a "
                f"{self.input_tokens}-token prompt holds ({self.num_prompt_blocks})"
            )
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant):
            raise ValueError(f"tenant must be a non-empty string or None, got {self.tenant!r}")

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def num_prompt_blocks(self) -> int:
        """Blocks of ``block_tokens`` the prompt spans (the last one may be partial)."""
        return -(-self.input_tokens // self.block_tokens)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


# ---------------------------------------------------------------- records <-> requests


def request_from_record(data: Any, *, default_id: int, block_tokens: int | None = None) -> Request:
    """Build a :class:`Request` from one decoded JSON record, checking every field.

    Raises
    ------
    SpecError
        With ``path`` set to the offending field relative to the record.
    """
    if not isinstance(data, dict):
        raise SpecError(
            "a request must be a JSON object",
            expected="an object such as "
            '{"arrival_s": 0.0, "input_tokens": 128, "output_tokens": 16}',
            found=data,
        )
    for key in data:
        if key not in RECORD_FIELDS:
            raise SpecError(
                f"unknown field '{key}'{suggest(key, RECORD_FIELDS)}",
                path=key,
                expected="one of " + ", ".join(RECORD_FIELDS),
                found=key,
            )
    for key in REQUIRED_FIELDS:
        if key not in data:
            raise SpecError(f"missing required field '{key}'", path=key, expected=_EXPECTED[key])
    bt = _int_field(data, "block_tokens", block_tokens or DEFAULT_BLOCK_TOKENS, minimum=1)
    inputs = _int_field(data, "input_tokens", None, minimum=1)
    blocks = _prefix_blocks(data.get("prefix_blocks", []), -(-inputs // bt))
    tenant = data.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise SpecError("bad tenant", path="tenant", expected=_EXPECTED["tenant"], found=tenant)
    return Request(
        request_id=_int_field(data, "id", default_id, minimum=0),
        arrival_s=_arrival(data["arrival_s"]),
        input_tokens=inputs,
        output_tokens=_int_field(data, "output_tokens", None, minimum=1),
        prefix_blocks=blocks,
        block_tokens=bt,
        tenant=tenant,
        priority=_int_field(data, "priority", 0, minimum=None),
    )


_EXPECTED = {
    "id": "an integer >= 0",
    "arrival_s": "a time in seconds, a number >= 0",
    "input_tokens": "an integer number of tokens >= 1",
    "output_tokens": "an integer number of tokens >= 1",
    "block_tokens": "an integer number of tokens >= 1",
    "priority": "an integer",
    "tenant": "a non-empty string or null",
}


def _int_field(data: dict[str, Any], key: str, default: int | None, *, minimum: int | None) -> int:
    value = data.get(key, default)
    if type(value) is not int or (minimum is not None and value < minimum):
        raise SpecError(
            f"bad {key.replace('_', ' ')}", path=key, expected=_EXPECTED[key], found=value
        )
    return value


def _arrival(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise SpecError(
            "bad arrival time", path="arrival_s", expected=_EXPECTED["arrival_s"], found=value
        )
    return float(value)


def _prefix_blocks(value: Any, max_blocks: int) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise SpecError(
            "bad prefix blocks",
            path="prefix_blocks",
            expected="a list of integer hashes",
            found=value,
        )
    for i, h in enumerate(value):
        if type(h) is not int:
            raise SpecError(
                "bad prefix block hash", path=f"prefix_blocks[{i}]", expected="an integer", found=h
            )
    if len(value) > max_blocks:
        raise SpecError(
            "more prefix blocks than the prompt holds",
            path="prefix_blocks",
            expected=f"at most ceil(input_tokens / block_tokens) = {max_blocks} blocks",
            found=f"{len(value)} blocks",
        )
    return tuple(value)


def request_to_record(
    request: Request, *, block_tokens: int = DEFAULT_BLOCK_TOKENS
) -> dict[str, Any]:
    """The JSON record of ``request``; optional fields are written only when not default."""
    record: dict[str, Any] = {
        "id": request.request_id,
        "arrival_s": request.arrival_s,
        "input_tokens": request.input_tokens,
        "output_tokens": request.output_tokens,
    }
    if request.prefix_blocks:
        record["prefix_blocks"] = list(request.prefix_blocks)
    if request.block_tokens != block_tokens:
        record["block_tokens"] = request.block_tokens
    if request.tenant is not None:
        record["tenant"] = request.tenant
    if request.priority != 0:
        record["priority"] = request.priority
    return record


# ---------------------------------------------------------------- reading


def trace_format(path: str | Path) -> TraceFormat:
    """``'jsonl'`` or ``'json'`` from the file name (``.jsonl``, ``.ndjson``, ``.json``, ``+.gz``)."""
    suffix = strip_gz(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise SpecError(
            "cannot tell the trace format from the file name",
            file=str(path),
            expected="a name ending in .jsonl or .json (optionally followed by .gz)",
            found=Path(path).name,
        )
    return _SUFFIXES[suffix]


def iter_requests(path: str | Path, *, fmt: TraceFormat | None = None) -> Iterator[Request]:
    """Yield the requests of an hwsim trace file one at a time (memory flat in its length).

    Parameters
    ----------
    path:
        A ``.jsonl`` or ``.json`` trace, optionally ``.gz``-compressed.
    fmt:
        ``'jsonl'`` or ``'json'``; by default from the file name.

    Raises
    ------
    SpecError
        For malformed JSON, missing, unknown or bad fields, and decreasing arrival times, with
        the file, the 1-based line and the field path (``requests[17].input_tokens``).
    """
    kind = fmt or trace_format(path)
    return _iter_requests(path, kind)


def _iter_requests(path: str | Path, kind: TraceFormat) -> Iterator[Request]:
    file = str(path)
    with open_text(path) as fh, read_errors(path):
        previous: Request | None = None
        for raw in _records(fh, file, kind):
            request = _located(raw, file)
            if previous is not None and request.arrival_s < previous.arrival_s:
                raise SpecError(
                    "arrival times must not decrease",
                    file=file,
                    line=raw.line,
                    path=join_path(raw.path, "arrival_s"),
                    expected=f"arrival_s >= {previous.arrival_s!r} (the previous request's)",
                    found=request.arrival_s,
                )
            previous = request
            yield request


def _records(fh: TextIO, file: str, kind: TraceFormat) -> Iterator[RawRecord]:
    return iter_jsonl_records(fh, file) if kind == "jsonl" else iter_json_records(fh, file)


def _located(raw: RawRecord, file: str) -> Request:
    try:
        return request_from_record(raw.data, default_id=raw.index, block_tokens=raw.block_tokens)
    except SpecError as err:
        raise err.with_context(file=file, prefix=raw.path, line=raw.line) from None


def read_requests(path: str | Path, *, fmt: TraceFormat | None = None) -> list[Request]:
    """All requests of a trace file as a list (see :func:`iter_requests`)."""
    return list(iter_requests(path, fmt=fmt))


def window(
    requests: Iterable[Request],
    *,
    start_s: float = 0.0,
    duration_s: float | None = None,
    limit: int | None = None,
) -> Iterator[Request]:
    """Requests arriving in ``[start_s, start_s + duration_s)``, shifted by ``-start_s``.

    Stops reading at the first request past the window (arrivals never decrease) and after
    ``limit`` requests.
    """
    if (
        start_s < 0
        or (duration_s is not None and duration_s < 0)
        or (limit is not None and limit < 0)
    ):
        raise SpecError(
            "bad window",
            expected="start_s >= 0, duration_s >= 0 and limit >= 0",
            found=f"start_s={start_s}, duration_s={duration_s}, limit={limit}",
        )
    end_s = None if duration_s is None else start_s + duration_s

    def inside() -> Iterator[Request]:
        for request in requests:
            if end_s is not None and request.arrival_s >= end_s:
                return
            if request.arrival_s >= start_s:
                yield (
                    request
                    if start_s == 0
                    else replace(request, arrival_s=request.arrival_s - start_s)
                )

    return islice(inside(), limit)


# ---------------------------------------------------------------- writing


def write_requests(
    path: str | Path, requests: Iterable[Request], *, fmt: TraceFormat | None = None
) -> int:
    """Write ``requests`` as an hwsim trace, atomically; return how many were written.

    The format follows the suffix (``.jsonl`` or ``.json``, optionally ``.gz``) unless ``fmt``
    is given. ``requests`` may be any iterable, including a generator: it is consumed once and
    never held in memory. The file appears complete or not at all.

    Raises
    ------
    SpecError
        When arrival times decrease (the file is then left untouched) or the file cannot be
        written.
    """
    kind = fmt or trace_format(path)
    with atomic_text_writer(path) as fh:
        if kind == "jsonl":
            return _write_lines(fh, requests, str(path))
        fh.write(
            f'{{"version": {TRACE_VERSION}, "block_tokens": {DEFAULT_BLOCK_TOKENS}, "requests": ['
        )
        count = _write_lines(fh, requests, str(path), sep=",", indent="\n  ", prefix="requests")
        fh.write("\n]}\n" if count else "]}\n")
        return count


def _write_lines(
    fh: TextIO,
    requests: Iterable[Request],
    file: str,
    *,
    sep: str = "",
    indent: str = "",
    prefix: str = "",
) -> int:
    """Write one record per line (JSONL) or per array item (``sep=","``); return the count."""
    previous = -math.inf
    count = 0
    for request in requests:
        if request.arrival_s < previous:
            raise SpecError(
                "cannot write a trace whose arrival times decrease",
                file=file,
                path=join_path(prefix, f"[{count}].arrival_s"),
                expected=f"arrival_s >= {previous!r}",
                found=request.arrival_s,
            )
        previous = request.arrival_s
        text = json.dumps(request_to_record(request), allow_nan=False)
        if indent:  # an item of a JSON array
            fh.write(f"{sep if count else ''}{indent}{text}")
        else:
            fh.write(text + "\n")
        count += 1
    return count
