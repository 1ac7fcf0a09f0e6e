"""Row readers of public trace formats: Azure 2023 CSV, Mooncake JSONL, BurstGPT CSV, Vidur CSV.

Each reader turns a text stream into :class:`SourceRow` tuples (times in the format's own
unit, token counts checked to be integers >= 0) and raises located SpecErrors for malformed
rows; :mod:`hwsim.workload.importers` turns rows into requests. The native hwsim format has no
row reader (``rows=None``): it is read by :func:`hwsim.workload.trace.iter_requests`.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from hwsim.errors import SpecError
from hwsim.registry import suggest
from hwsim.workload.jsonstream import iter_jsonl_records
from hwsim.workload.request import DEFAULT_BLOCK_TOKENS

__all__ = [
    "SourceRow",
    "Importer",
    "BUILTIN_IMPORTERS",
    "azure_timestamp_ns",
    "read_csv_columns",
    "parse_tokens",
]


class SourceRow(NamedTuple):
    """One data row of a source trace."""

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
    rows: Callable[[TextIO, str], Iterator[SourceRow]] | None  #: None for the native format
    block_tokens: int = DEFAULT_BLOCK_TOKENS


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
    if not (math.isfinite(value) and value >= 0):
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
        raise ValueError(f"not a timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        days = dt.date(year, month, day).toordinal() - _EPOCH_DAY
    except ValueError:
        raise ValueError(f"not a timestamp: {text!r} (no such date)") from None
    if hour > 23 or minute > 59 or second > 60:
        raise ValueError(f"not a timestamp: {text!r} (no such time of day)")
    zone = m.group(8) or "Z"
    sign = -1 if zone.startswith("-") else 1
    offset_s = 0 if zone == "Z" else sign * (int(zone[1:3]) * 3600 + int(zone[-2:]) * 60)
    total_s = days * 86400 + hour * 3600 + minute * 60 + second - offset_s
    return total_s * 10**9 + int((m.group(7) or "").ljust(9, "0"))


def _azure_rows(fh: TextIO, file: str) -> Iterator[SourceRow]:
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
        yield SourceRow(
            line,
            ns,
            parse_tokens(ctx, file=file, line=line, column="ContextTokens"),
            parse_tokens(gen, file=file, line=line, column="GeneratedTokens"),
        )


_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")


def _mooncake_rows(fh: TextIO, file: str) -> Iterator[SourceRow]:
    for record in iter_jsonl_records(fh, file):
        yield _mooncake_row(record.data, record.line, file)


def _mooncake_row(data: Any, line: int, file: str) -> SourceRow:
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
    if type(ms) not in (int, float) or not (math.isfinite(ms) and ms >= 0):
        raise SpecError(
            "bad timestamp", file=file, line=line, path="timestamp",
            expected="milliseconds, a number >= 0", found=ms,
        )  # fmt: skip
    hashes = data.get("hash_ids", [])
    if not isinstance(hashes, list) or any(type(h) is not int for h in hashes):
        raise SpecError(
            "bad hash_ids", file=file, line=line, path="hash_ids",
            expected="a list of integers", found=hashes,
        )  # fmt: skip
    return SourceRow(
        line,
        ms,
        parse_tokens(data["input_length"], file=file, line=line, column="input_length"),
        parse_tokens(data["output_length"], file=file, line=line, column="output_length"),
        tuple(hashes),
    )


_BURSTGPT_COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Log Type")


def _burstgpt_rows(fh: TextIO, file: str) -> Iterator[SourceRow]:
    for line, (stamp, model, req, resp, log_type) in read_csv_columns(fh, file, _BURSTGPT_COLUMNS):
        outputs = parse_tokens(resp, file=file, line=line, column="Response tokens")
        yield SourceRow(
            line,
            _seconds(stamp, file=file, line=line, column="Timestamp"),
            parse_tokens(req, file=file, line=line, column="Request tokens"),
            outputs,
            tenant=f"{model}/{log_type}" if model or log_type else None,
            failed=outputs == 0,
        )


_VIDUR_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


def _vidur_rows(fh: TextIO, file: str) -> Iterator[SourceRow]:
    for line, (stamp, prefill, decode) in read_csv_columns(fh, file, _VIDUR_COLUMNS):
        yield SourceRow(
            line,
            _seconds(stamp, file=file, line=line, column="arrived_at"),
            parse_tokens(prefill, file=file, line=line, column="num_prefill_tokens"),
            parse_tokens(decode, file=file, line=line, column="num_decode_tokens"),
        )


BUILTIN_IMPORTERS = (
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
)
