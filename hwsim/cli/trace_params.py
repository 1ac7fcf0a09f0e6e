"""Option types and helpers of ``hwsim trace``: times, request rates, a counting pass-through."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from hwsim.errors import SpecError, UnitError
from hwsim.units import Dim, format_quantity, parse_quantity
from hwsim.workload.request import Request

__all__ = ["SecondsParam", "RateParam", "Tally"]


class SecondsParam(click.ParamType):
    """A time: bare seconds (``600``) or, when ``bare`` is False, only with a unit (``10min``)."""

    name = "time"

    def __init__(self, *, bare: bool) -> None:
        self.bare = bare

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            seconds = (
                float(text) if self.bare and _is_number(text) else parse_quantity(text, Dim.TIME)
            )
        except UnitError as err:
            raise SpecError(str(err), path=_flag(param)) from None
        if not (math.isfinite(seconds) and seconds >= 0):
            raise SpecError("bad time", path=_flag(param), expected="a time >= 0", found=text)
        return seconds


class RateParam(click.ParamType):
    """A request rate: ``5`` (per second), ``5/s``, ``300/min``, ``5 req/s``, ``18000/h``."""

    name = "rate"
    _RATE = re.compile(
        r"\s*([0-9.eE+-]+)\s*(?:(?:req|requests?|r)?\s*/\s*([a-z]+))?\s*", re.IGNORECASE
    )

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        text = str(value)
        m = self._RATE.fullmatch(text)
        try:
            if m is None or not _is_number(m.group(1)):
                raise UnitError(text)
            rate = float(m.group(1)) / (
                parse_quantity(f"1 {m.group(2)}", Dim.TIME) if m.group(2) else 1.0
            )
        except UnitError:
            raise SpecError(
                "bad rate",
                path=_flag(param),
                expected="requests per second, e.g. 5, '5/s', '300/min' or '5 req/s'",
                found=text,
            ) from None
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
    """The option's long flag (``--duration``), for error paths."""
    return max(param.opts, key=len) if param is not None and param.opts else ""


class Tally:
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
        over = format_quantity(span, Dim.TIME) if span > 0 else "0 s"
        return f"{self.count:,} requests over {over}{rate}"


def output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-o/--output FILE``: the trace to write, atomically."""
    return click.option("-o", "--output", "out", type=click.Path(path_type=Path, dir_okay=False), required=True,
                        help="Trace to write (.jsonl or .json, optionally .gz); written atomically.")(fn)


def format_option(argument: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format``: the format of the trace argument, detected by default."""
    from hwsim.workload.importers import FORMAT_CHOICES

    return click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), default="auto", show_default=True,
                        help=f"Format of {argument}; 'auto' detects it from the first line.")
