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
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Literal, TextIO

from hwsim.errors import SpecError, join_path
from hwsim.workload.files import atomic_text_writer, open_text, read_errors, strip_gz
from hwsim.workload.jsonstream import RawRecord, iter_json_records, iter_jsonl_records
from hwsim.workload.records import (
    RECORD_FIELDS,
    REQUIRED_FIELDS,
    request_from_record,
    request_to_record,
)
from hwsim.workload.request import DEFAULT_BLOCK_TOKENS, Request

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

TRACE_VERSION = 1
TraceFormat = Literal["jsonl", "json"]
_SUFFIXES: dict[str, TraceFormat] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


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
        return request_from_record(raw.data, default_id=raw.position, block_tokens=raw.block_tokens)
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
