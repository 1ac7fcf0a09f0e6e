"""Import public request traces (Azure, Mooncake, BurstGPT, Vidur) as a stream of Requests.

=============  ===========================================  ====================================
format         columns / keys                               time
=============  ===========================================  ====================================
``azure``      CSV ``TIMESTAMP,ContextTokens,GeneratedTokens``  wall clock ``2023-11-16
                                                            18:15:46.6805900`` (100 ns steps)
``mooncake``   JSONL ``timestamp, input_length,               milliseconds
               output_length, hash_ids`` (512-token blocks)
``burstgpt``   CSV ``Timestamp,Model,Request tokens,          seconds; rows with 0 response
               Response tokens,Total tokens,Log Type``      tokens are failed requests: skipped
                                                            and counted
``vidur``      CSV ``arrived_at,num_prefill_tokens,           seconds
               num_decode_tokens``
``hwsim``      the native trace (``.jsonl`` / ``.json``)      seconds, kept as they are
=============  ===========================================  ====================================

Arrival times are measured from the first data row of the source (the native format keeps its
own origin). Extra columns are ignored. The request id is the 0-based data row of the source.
A row with 0 input or 0 output tokens (other than a BurstGPT failure) is an error naming its
line, unless ``drop_invalid=True``, which skips it and counts it in the :class:`ImportReport`.
Compressed sources (``.gz``) are read as they stream.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hwsim.errors import SpecError
from hwsim.registry import Registry
from hwsim.workload.files import open_text, read_errors, strip_gz
from hwsim.workload.formats import BUILTIN_IMPORTERS, Importer, SourceRow
from hwsim.workload.trace import Request, TraceFormat, iter_requests, trace_format, window

__all__ = [
    "IMPORTERS",
    "FORMAT_CHOICES",
    "Importer",
    "ImportReport",
    "import_requests",
    "detect_format",
]


@dataclass(slots=True)
class ImportReport:
    """Counts filled in while an import streams (read them once it is exhausted)."""

    rows: int = 0  #: data rows read from the source
    imported: int = 0  #: requests yielded (after the time window and the limit)
    skipped_failures: int = 0  #: BurstGPT rows with 0 response tokens (failed requests)
    dropped_invalid: int = 0  #: rows with 0 input or output tokens dropped by ``drop_invalid``
    first_dropped_line: int | None = None  #: line of the first dropped row


#: Trace formats by name (``azure``, ``burstgpt``, ``hwsim``, ``mooncake``, ``vidur``).
IMPORTERS: Registry[Importer] = Registry("trace format")
for _importer in BUILTIN_IMPORTERS:
    IMPORTERS.add(_importer.name, _importer)

#: What ``--format`` accepts.
FORMAT_CHOICES = ("auto", *IMPORTERS.names())


# ---------------------------------------------------------------- detection


def detect_format(path: str | Path) -> str:
    """Name of the importer for ``path``, from its suffix and its first non-empty line.

    Raises
    ------
    SpecError
        When no format matches; the message lists the choices.
    """
    if strip_gz(path).suffix.lower() == ".json":
        return "hwsim"
    first = _first_line(path)
    if first.startswith("{"):
        keys = _json_keys(first)
        if keys is None or "arrival_s" in keys:  # None: the start of a multi-line JSON object
            return "hwsim"
        if set(IMPORTERS.get("mooncake").columns) <= keys:
            return "mooncake"
    elif first.startswith("["):
        return "hwsim"
    else:
        header = {name.strip().lstrip("\ufeff") for name in next(csv.reader([first]), [])}
        for name in ("azure", "burstgpt", "vidur"):
            if set(IMPORTERS.get(name).columns) <= header:
                return name
    raise SpecError(
        "cannot detect the trace format from the first line",
        file=str(path),
        line=1,
        expected="a format among " + ", ".join(IMPORTERS.names()) + " (pass --format to choose)",
        found=first[:80] or "an empty file",
    )


def _first_line(path: str | Path) -> str:
    with open_text(path) as fh, read_errors(path):
        return next((text.strip() for text in fh if text.strip()), "")


def _json_keys(line: str) -> set[str] | None:
    """Keys of the JSON object on ``line``; None when the line is not a whole object."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    return set(data) if isinstance(data, dict) else None


def _native_format(path: str | Path) -> TraceFormat:
    """JSON Lines or JSON for an hwsim trace: by suffix, else by its first line."""
    try:
        return trace_format(path)
    except SpecError:
        keys = _json_keys(_first_line(path))
        return "jsonl" if keys is not None and "requests" not in keys else "json"


# ---------------------------------------------------------------- importing


def import_requests(
    path: str | Path,
    fmt: str = "auto",
    *,
    drop_invalid: bool = False,
    start_s: float = 0.0,
    duration_s: float | None = None,
    limit: int | None = None,
    report: ImportReport | None = None,
) -> Iterator[Request]:
    """Stream the requests of a trace in any known format (see the module docstring).

    Parameters
    ----------
    path:
        The source file (``.gz`` is decompressed on the fly).
    fmt:
        A name in :data:`IMPORTERS` or ``'auto'`` (detect it with :func:`detect_format`).
    drop_invalid:
        Skip rows with 0 input or 0 output tokens (counting them in ``report``) instead of
        raising an error that names the first one's line.
    start_s, duration_s, limit:
        Keep requests arriving in ``[start_s, start_s + duration_s)`` (times shifted so that
        ``start_s`` becomes 0), at most ``limit`` of them; reading stops there.
    report:
        Filled in with counts as the stream is consumed.

    Raises
    ------
    SpecError
        For an unknown format, a malformed row, decreasing times or an invalid row.
    """
    importer = IMPORTERS.get(detect_format(path) if fmt == "auto" else fmt, path="--format")
    report = report if report is not None else ImportReport()
    if importer.rows is None:
        source: Iterator[Request] = _counted(iter_requests(path, fmt=_native_format(path)), report)
    else:
        source = _import_rows(path, importer, drop_invalid=drop_invalid, report=report)
    return _counted_out(window(source, start_s=start_s, duration_s=duration_s, limit=limit), report)


def _counted(requests: Iterator[Request], report: ImportReport) -> Iterator[Request]:
    for request in requests:
        report.rows += 1
        yield request


def _counted_out(requests: Iterator[Request], report: ImportReport) -> Iterator[Request]:
    for request in requests:
        report.imported += 1
        yield request


def _import_rows(
    path: str | Path, importer: Importer, *, drop_invalid: bool, report: ImportReport
) -> Iterator[Request]:
    assert importer.rows is not None
    file = str(path)
    with open_text(path) as fh, read_errors(path):
        origin: int | float | None = None
        previous: int | float | None = None
        for index, row in enumerate(importer.rows(fh, file)):
            report.rows += 1
            origin = row.time if origin is None else origin
            if previous is not None and row.time < previous:
                raise SpecError(
                    f"times decrease at row {index} (the {importer.name} importer needs them sorted)",
                    file=file,
                    line=row.line,
                    expected=f">= {previous!r}",
                    found=row.time,
                )
            previous = row.time
            if row.failed:
                report.skipped_failures += 1
                continue
            if row.input_tokens == 0 or row.output_tokens == 0:
                _invalid(row, file, drop_invalid, report)
                continue
            yield _request(
                row, index, (row.time - origin) / importer.ticks_per_s, importer.block_tokens, file
            )


def _invalid(row: SourceRow, file: str, drop_invalid: bool, report: ImportReport) -> None:
    if not drop_invalid:
        raise SpecError(
            "a request with 0 tokens (pass --drop-invalid to skip such rows)",
            file=file,
            line=row.line,
            expected="input and output tokens >= 1",
            found=f"{row.input_tokens} input, {row.output_tokens} output tokens",
        )
    report.dropped_invalid += 1
    if report.first_dropped_line is None:
        report.first_dropped_line = row.line


def _request(row: SourceRow, index: int, arrival_s: float, block_tokens: int, file: str) -> Request:
    try:
        return Request(
            request_id=index,
            arrival_s=arrival_s,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            prefix_blocks=row.prefix_blocks,
            block_tokens=block_tokens,
            tenant=row.tenant,
        )
    except ValueError as err:
        raise SpecError(str(err), file=file, line=row.line) from None
