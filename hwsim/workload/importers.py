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
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from hwsim.errors import SpecError
from hwsim.registry import Registry, suggest
from hwsim.workload.files import open_text, read_errors, strip_gz
from hwsim.workload.trace import DEFAULT_BLOCK_TOKENS, Request, iter_requests, window

__all__ = [
    "IMPORTERS",
    "FORMAT_CHOICES",
    "Importer",
    "ImportReport",
    "import_requests",
    "detect_format",
    "azure_timestamp_ns",
    "read_csv_columns",
    "parse_tokens",
]


@dataclass(slots=True)
class ImportReport:
    """Counts filled in while an import streams (read them once it is exhausted)."""

    rows: int = 0  #: data rows read from the source
    imported: int = 0  #: requests yielded (after the time window and the limit)
    skipped_failures: int = 0  #: BurstGPT rows with 0 response tokens (failed requests)
    dropped_invalid: int = 0  #: rows with 0 input or output tokens dropped by ``drop_invalid``
    first_dropped_line: int | None = None  #: line of the first dropped row


class _Row(NamedTuple):
    line: int
    time: int | float  # in the format's own unit (see Importer.ticks_per_s)
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = ()
    tenant: str | None = None
    failed: bool = False  # a failed request recorded by the source (BurstGPT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Importer:
    """A source format: how to recognise it and how to read its rows."""

    name: str
    description: str
    columns: tuple[str, ...]  #: required CSV columns or JSON keys
    ticks_per_s: float  #: source time units per second
    rows: Callable[[TextIO, str], Iterator[_Row]] | None  #: None for the native format
    block_tokens: int = DEFAULT_BLOCK_TOKENS


IMPORTERS: Registry[Importer] = Registry("trace format")


# ---------------------------------------------------------------- shared parsing


def read_csv_columns(
    fh: TextIO, file: str, columns: tuple[str, ...]
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, [value of each of columns])`` for each non-empty CSV data row."""
    reader = csv.reader(fh)
    try:
        header = next(reader, None)
        if header is None:
            raise SpecError(
                "empty file", file=file, line=1, expected="a CSV header: " + ",".join(columns)
            )
        names = [name.strip().lstrip("\ufeff") for name in header]
        for col in columns:
            if col not in names:
                raise SpecError(
                    f"missing column '{col}'{suggest(col, names)}",
                    file=file,
                    line=1,
                    expected="columns " + ",".join(columns),
                    found=",".join(names),
                )
        where = [names.index(col) for col in columns]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(names):
                raise SpecError(
                    "short row",
                    file=file,
                    line=reader.line_num,
                    expected=f"{len(names)} columns",
                    found=",".join(row),
                )
            yield reader.line_num, [row[i].strip() for i in where]
    except csv.Error as err:
        raise SpecError(f"malformed CSV: {err}", file=file, line=reader.line_num) from None


def parse_tokens(text: Any, *, file: str, line: int, column: str) -> int:
    """A non-negative integer token count from a CSV cell or JSON value (``'12.0'`` is 12)."""
    value: Any = text
    if isinstance(text, str):
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = text
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or value < 0:
        raise SpecError(
            f"bad token count in '{column}'",
            file=file,
            line=line,
            path=column,
            expected="an integer >= 0",
            found=text,
        )
    return value


def _seconds(text: str, *, file: str, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise SpecError(
            f"bad time in '{column}'",
            file=file,
            line=line,
            path=column,
            expected="a number of seconds >= 0",
            found=text,
        )
    return value


# ---------------------------------------------------------------- the formats

_AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_AZURE_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\s*(Z|[+-]\d\d:?\d\d)?"
)
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()


def azure_timestamp_ns(text: str) -> int:
    """Nanoseconds since 1970-01-01 of an Azure timestamp such as ``2023-11-16 18:15:46.6805900``.

    Exact (integer arithmetic, up to 9 fractional digits); a ``Z`` or ``+hh:mm`` suffix is
    honoured, no suffix is read as UTC. Raises ValueError when ``text`` is not such a time.
    """
    m = _AZURE_TIME.fullmatch(text.strip())
    if m is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(text)
    days = dt.date(year, month, day).toordinal() - _EPOCH_DAY
    zone = m.group(8) or "Z"
    offset_s = (
        0
        if zone == "Z"
        else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60)
    )
    total_s = days * 86400 + hour * 3600 + minute * 60 + second - offset_s
    return total_s * 10**9 + int((m.group(7) or "").ljust(9, "0"))


def _azure_rows(fh: TextIO, file: str) -> Iterator[_Row]:
    for line, (stamp, ctx, gen) in read_csv_columns(fh, file, _AZURE_COLUMNS):
        try:
            ns = azure_timestamp_ns(stamp)
        except ValueError:
            raise SpecError(
                "bad timestamp in 'TIMESTAMP'",
                file=file,
                line=line,
                path="TIMESTAMP",
                expected="a time such as '2023-11-16 18:15:46.6805900'",
                found=stamp,
            ) from None
        yield _Row(
            line,
            ns,
            parse_tokens(ctx, file=file, line=line, column="ContextTokens"),
            parse_tokens(gen, file=file, line=line, column="GeneratedTokens"),
        )


_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")


def _mooncake_rows(fh: TextIO, file: str) -> Iterator[_Row]:
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
        if not isinstance(data, dict):
            raise SpecError("a request must be a JSON object", file=file, line=line, found=data)
        for key in _MOONCAKE_KEYS:
            if key not in data:
                raise SpecError(
                    f"missing field '{key}'{suggest(key, list(data))}",
                    file=file,
                    line=line,
                    path=key,
                    expected="keys " + ", ".join(_MOONCAKE_KEYS),
                    found=", ".join(data),
                )
        ms = data["timestamp"]
        if type(ms) not in (int, float) or not ms >= 0:
            raise SpecError(
                "bad timestamp",
                file=file,
                line=line,
                path="timestamp",
                expected="milliseconds, a number >= 0",
                found=ms,
            )
        hashes = data.get("hash_ids", [])
        if not isinstance(hashes, list) or any(type(h) is not int for h in hashes):
            raise SpecError(
                "bad hash_ids",
                file=file,
                line=line,
                path="hash_ids",
                expected="a list of integers",
                found=hashes,
            )
        yield _Row(
            line,
            ms,
            parse_tokens(data["input_length"], file=file, line=line, column="input_length"),
            parse_tokens(data["output_length"], file=file, line=line, column="output_length"),
            tuple(hashes),
        )


_BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Log Type")


def _burstgpt_rows(fh: TextIO, file: str) -> Iterator[_Row]:
    for line, (stamp, model, req, resp, log_type) in read_csv_columns(fh, file, _BURSTGPT_COLUMNS):
        outputs = parse_tokens(resp, file=file, line=line, column="Response tokens")
        yield _Row(
            line,
            _seconds(stamp, file=file, line=line, column="Timestamp"),
            parse_tokens(req, file=file, line=line, column="Request tokens"),
            outputs,
            tenant=f"{model}/{log_type}" if model or log_type else None,
            failed=outputs == 0,
        )


_VIDUR_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


def _vidur_rows(fh: TextIO, file: str) -> Iterator[_Row]:
    for line, (stamp, prefill, decode) in read_csv_columns(fh, file, _VIDUR_COLUMNS):
        yield _Row(
            line,
            _seconds(stamp, file=file, line=line, column="arrived_at"),
            parse_tokens(prefill, file=file, line=line, column="num_prefill_tokens"),
            parse_tokens(decode, file=file, line=line, column="num_decode_tokens"),
        )


for _importer in (
    Importer(
        name="azure",
        description="Azure LLM inference trace 2023 (CSV)",
        columns=_AZURE_COLUMNS,
        ticks_per_s=1e9,
        rows=_azure_rows,
    ),
    Importer(
        name="mooncake",
        description="Mooncake FAST'25 trace (JSONL, ms, 512-token hash blocks)",
        columns=_MOONCAKE_KEYS,
        ticks_per_s=1e3,
        rows=_mooncake_rows,
    ),
    Importer(
        name="burstgpt",
        description="BurstGPT trace (CSV, seconds)",
        columns=_BURSTGPT_COLUMNS,
        ticks_per_s=1.0,
        rows=_burstgpt_rows,
    ),
    Importer(
        name="vidur",
        description="Vidur trace-replay CSV (seconds)",
        columns=_VIDUR_COLUMNS,
        ticks_per_s=1.0,
        rows=_vidur_rows,
    ),
    Importer(
        name="hwsim",
        description="hwsim trace (JSONL or JSON)",
        columns=("arrival_s",),
        ticks_per_s=1.0,
        rows=None,
    ),
):
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
    with open_text(path) as fh, read_errors(path):
        first = next((text.strip() for text in fh if text.strip()), "")
    if first.startswith("["):
        return "hwsim"
    if first.startswith("{"):
        try:
            keys = set(json.loads(first))
        except (json.JSONDecodeError, TypeError):
            keys = set()
        if "arrival_s" in keys:
            return "hwsim"
        if set(_MOONCAKE_KEYS) <= keys:
            return "mooncake"
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
        source: Iterator[Request] = _counted(iter_requests(path), report)
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


def _invalid(row: _Row, file: str, drop_invalid: bool, report: ImportReport) -> None:
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


def _request(row: _Row, index: int, arrival_s: float, block_tokens: int, file: str) -> Request:
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
