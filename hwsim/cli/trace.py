"""``hwsim trace``: import public traces, generate synthetic ones, summarise any of them.

Thin: parses options, calls :mod:`hwsim.workload`, prints. numpy-backed modules are imported
inside the commands so that ``hwsim --help`` stays fast.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from hwsim.cli import HwsimGroup
from hwsim.errors import SpecError, UnitError
from hwsim.units import Dim, format_quantity, parse_quantity
from hwsim.workload.importers import FORMAT_CHOICES, ImportReport, detect_format, import_requests
from hwsim.workload.trace import Request, write_requests

__all__ = ["trace"]


class SecondsParam(click.ParamType):
    """A time: bare seconds (``600``) or, when ``bare`` is False, only with a unit (``10min``)."""

    name = "time"

    def __init__(self, *, bare: bool) -> None:
        self.bare = bare

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            seconds = float(text) if self.bare and _is_number(text) else parse_quantity(text, Dim.TIME)
        except UnitError as err:
            raise SpecError(str(err), path=_flag(param)) from None
        if not (math.isfinite(seconds) and seconds >= 0):
            raise SpecError("bad time", path=_flag(param), expected="a time >= 0", found=text)
        return seconds


class RateParam(click.ParamType):
    """A request rate: ``5`` (per second), ``5/s``, ``300/min``, ``5 req/s``, ``18000/h``."""

    name = "rate"
    _RATE = re.compile(r"\s*([0-9.eE+-]+)\s*(?:(?:req|requests?|r)?\s*/\s*([a-z]+))?\s*", re.IGNORECASE)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value)
        m = self._RATE.fullmatch(text)
        try:
            if m is None or not _is_number(m.group(1)):
                raise UnitError(text)
            rate = float(m.group(1)) / (parse_quantity(f"1 {m.group(2)}", Dim.TIME) if m.group(2) else 1.0)
        except UnitError:
            raise SpecError("bad rate", path=_flag(param), expected="requests per second, e.g. 5, '5/s', "
                            "'300/min' or '5 req/s'", found=text) from None
        if not (math.isfinite(rate) and rate > 0):
            raise SpecError("bad rate", path=_flag(param), expected="a rate > 0", found=text)
        return rate


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _flag(param: click.Parameter | None) -> str:
    return f"--{param.name.replace('_', '-')}" if param is not None and param.name else ""


@click.group(cls=HwsimGroup)
def trace() -> None:
    """Request traces: import public ones, generate synthetic ones, summarise them.

    The hwsim trace format is JSON Lines (one request per line) or JSON; see docs/traces.md.
    """


# ---------------------------------------------------------------- import


@trace.command("import")
@click.argument("src", type=click.Path(path_type=Path, dir_okay=False))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Trace to write (.jsonl or .json, optionally .gz); written atomically.")
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="auto", show_default=True,
              help="Format of SRC; 'auto' detects it from the first line.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Keep at most this many requests.")
@click.option("--start-s", type=SecondsParam(bare=True), default=0.0, show_default=True,
              help="Skip requests arriving before this time (seconds from the first row, or e.g. '5min'); "
              "kept times are shifted so that it becomes 0.")
@click.option("--duration-s", type=SecondsParam(bare=True), default=None,
              help="Keep requests arriving within this long after --start-s (seconds, or e.g. '10min').")
@click.option("--drop-invalid", is_flag=True, default=False, show_default=True,
              help="Skip rows with 0 input or 0 output tokens (and report how many) instead of failing.")
def import_(src: Path, out: Path, fmt: str, limit: int | None, start_s: float, duration_s: float | None,
            drop_invalid: bool) -> None:
    """Convert the trace SRC (Azure, Mooncake, BurstGPT, Vidur or hwsim) to the hwsim format.

    \b
    Example:
      hwsim trace import AzureLLMInferenceTrace_conv.csv -o azure-conv-10min.jsonl --duration-s 600
    """
    name = detect_format(src) if fmt == "auto" else fmt
    report = ImportReport()
    requests = import_requests(src, name, drop_invalid=drop_invalid, start_s=start_s, duration_s=duration_s,
                               limit=limit, report=report)
    tally = _Tally(requests)
    write_requests(out, tally)
    click.echo(f"imported {tally.describe()} from {src} ({name}) to {out}")
    notes = []
    if report.skipped_failures:
        notes.append(f"skipped {report.skipped_failures:,} failed requests (0 response tokens)")
    if report.dropped_invalid:
        notes.append(f"dropped {report.dropped_invalid:,} rows with 0 tokens "
                     f"(the first on line {report.first_dropped_line})")
    for note in notes:
        click.echo(f"  {note}")


class _Tally:
    """Pass requests through, counting them and remembering the first and last arrival."""

    def __init__(self, requests: Iterable[Request]) -> None:
        self._requests = requests
        self.count = 0
        self.first_s = self.last_s = 0.0

    def __iter__(self) -> Iterator[Request]:
        for request in self._requests:
            if self.count == 0:
                self.first_s = request.arrival_s
            self.last_s = request.arrival_s
            self.count += 1
            yield request

    def describe(self) -> str:
        span = self.last_s - self.first_s
        rate = f", {(self.count - 1) / span:.3g} req/s" if self.count > 1 and span > 0 else ""
        return f"{self.count:,} requests over {format_quantity(span, Dim.TIME)}{rate}"
