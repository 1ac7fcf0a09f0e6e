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


@click.group(cls=HwsimGroup)
def trace() -> None:
    """Request traces: import public ones, generate synthetic ones, summarise them.

    The hwsim trace format is JSON Lines (one request per line) or JSON; see docs/traces.md.
    """


# ---------------------------------------------------------------- import


@trace.command("import")
@click.argument("src", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Trace to write (.jsonl or .json, optionally .gz); written atomically.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="Format of SRC; 'auto' detects it from the first line.",
)
@click.option(
    "--limit", type=click.IntRange(min=0), default=None, help="Keep at most this many requests."
)
@click.option(
    "--start-s",
    type=SecondsParam(bare=True),
    default=0.0,
    show_default=True,
    help="Skip requests arriving before this time (seconds from the first row, or e.g. '5min'); "
    "kept times are shifted so that it becomes 0.",
)
@click.option(
    "--duration-s",
    type=SecondsParam(bare=True),
    default=None,
    help="Keep requests arriving within this long after --start-s (seconds, or e.g. '10min').",
)
@click.option(
    "--drop-invalid",
    is_flag=True,
    default=False,
    show_default=True,
    help="Skip rows with 0 input or 0 output tokens (and report how many) instead of failing.",
)
def import_(
    src: Path,
    out: Path,
    fmt: str,
    limit: int | None,
    start_s: float,
    duration_s: float | None,
    drop_invalid: bool,
) -> None:
    """Convert the trace SRC (Azure, Mooncake, BurstGPT, Vidur or hwsim) to the hwsim format.

    \b
    Example:
      hwsim trace import AzureLLMInferenceTrace_conv.csv -o azure-conv-10min.jsonl --duration-s 600
    """
    name = detect_format(src) if fmt == "auto" else fmt
    report = ImportReport()
    requests = import_requests(
        src,
        name,
        drop_invalid=drop_invalid,
        start_s=start_s,
        duration_s=duration_s,
        limit=limit,
        report=report,
    )
    tally = _Tally(requests)
    write_requests(out, tally)
    click.echo(f"imported {tally.describe()} from {src} ({name}) to {out}")
    notes = []
    if report.skipped_failures:
        notes.append(f"skipped {report.skipped_failures:,} failed requests (0 response tokens)")
    if report.dropped_invalid:
        notes.append(
            f"dropped {report.dropped_invalid:,} rows with 0 tokens "
            f"(the first on line {report.first_dropped_line})"
        )
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
        over = format_quantity(span, Dim.TIME) if span > 0 else "0 s"
        return f"{self.count:,} requests over {over}{rate}"


# ---------------------------------------------------------------- generate

_ARRIVAL_OPTIONS = {
    "cv": ("gamma",),
    "period": ("diurnal",),
    "peak_to_trough": ("diurnal",),
    "peak_at": ("diurnal",),
}
_LOGNORMAL_OPTIONS = (
    "input_median",
    "input_sigma",
    "output_median",
    "output_sigma",
    "max_input",
    "max_output",
)


@trace.command("generate")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Trace to write (.jsonl or .json, optionally .gz); written atomically.",
)
@click.option(
    "--arrival",
    type=click.Choice(["poisson", "gamma", "diurnal"]),
    default="poisson",
    show_default=True,
    help="Arrival process.",
)
@click.option(
    "--rate",
    type=RateParam(),
    default="1/s",
    show_default=True,
    help="Mean arrival rate: requests per second, or e.g. '300/min'.",
)
@click.option(
    "--cv",
    type=float,
    default=2.0,
    show_default=True,
    help="gamma: coefficient of variation of inter-arrival times (1 = Poisson, > 1 bursty).",
)
@click.option(
    "--period",
    type=SecondsParam(bare=False),
    default="24h",
    show_default=True,
    help="diurnal: period of the rate's swing.",
)
@click.option(
    "--peak-to-trough",
    type=float,
    default=3.0,
    show_default=True,
    help="diurnal: ratio of the peak rate to the trough rate (>= 1).",
)
@click.option(
    "--peak-at",
    type=SecondsParam(bare=False),
    default=None,
    help="diurnal: time of the first peak  [default: half a period, so the trace starts in the trough]",
)
@click.option(
    "--lengths",
    default="lognormal",
    show_default=True,
    help="'lognormal', or a FILE of lengths drawn jointly (any importable trace, or a CSV with "
    "input_tokens,output_tokens or num_prefill_tokens,num_decode_tokens columns).",
)
@click.option(
    "--input-median",
    type=float,
    default=1024.0,
    show_default=True,
    help="lognormal: median input tokens.",
)
@click.option(
    "--input-sigma",
    type=float,
    default=1.0,
    show_default=True,
    help="lognormal: sigma of log input tokens.",
)
@click.option(
    "--output-median",
    type=float,
    default=128.0,
    show_default=True,
    help="lognormal: median output tokens.",
)
@click.option(
    "--output-sigma",
    type=float,
    default=1.0,
    show_default=True,
    help="lognormal: sigma of log output tokens.",
)
@click.option(
    "--max-input",
    type=int,
    default=32768,
    show_default=True,
    help="lognormal: largest input length.",
)
@click.option(
    "--max-output",
    type=int,
    default=4096,
    show_default=True,
    help="lognormal: largest output length.",
)
@click.option(
    "--duration",
    "duration_s",
    type=SecondsParam(bare=False),
    default=None,
    help="Stop before this time, with a unit (e.g. '10min').",
)
@click.option(
    "--count", type=click.IntRange(min=0), default=None, help="Stop after this many requests."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the random generator."
)
@click.option("--tenant", default=None, help="Tenant written on every request.")
@click.option(
    "--drop-invalid",
    is_flag=True,
    default=False,
    show_default=True,
    help="Skip rows with 0 tokens in the --lengths FILE instead of failing.",
)
@click.pass_context
def generate(
    ctx: click.Context,
    out: Path,
    seed: int,
    duration_s: float | None,
    count: int | None,
    tenant: str | None,
    **options: Any,
) -> None:
    """Generate a synthetic trace from an arrival process and a length model.

    \b
    Examples:
      hwsim trace generate -o poisson.jsonl --rate 5/s --duration 10min --seed 0
      hwsim trace generate -o bursty.jsonl --arrival gamma --rate 5 --cv 3 --count 20000
      hwsim trace generate -o day.jsonl --arrival diurnal --rate 2/s --period 1h --duration 2h \\
          --lengths ../shared/data/sharegpt-lengths-sarathi/sharegpt_8k_filtered_stats_llama2_tokenizer.csv
    """
    from hwsim.workload.generate import generate_requests

    if duration_s is None and count is None:
        raise SpecError(
            "say when to stop", path="--duration", expected="--duration (e.g. '10min') or --count"
        )
    _check_relevant(ctx, options)
    arrivals, lengths = _arrivals(options), _lengths(options)
    requests = generate_requests(
        arrivals, lengths, seed=seed, duration_s=duration_s, count=count, tenant=tenant
    )
    tally = _Tally(requests)
    write_requests(out, tally)
    click.echo(
        f"generated {tally.describe()} ({options['arrival']} arrivals, seed {seed}) to {out}"
    )


def _check_relevant(ctx: click.Context, options: dict[str, Any]) -> None:
    """Refuse options given on the command line that the chosen models would ignore."""
    given = {
        name for name in options if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    for name, arrivals in _ARRIVAL_OPTIONS.items():
        if name in given and options["arrival"] not in arrivals:
            raise SpecError(
                f"only used with --arrival {' or '.join(arrivals)}, not with --arrival "
                f"{options['arrival']}",
                path=f"--{name.replace('_', '-')}",
            )
    if options["lengths"] != "lognormal":
        for name in _LOGNORMAL_OPTIONS:
            if name in given:
                raise SpecError(
                    "only used with --lengths lognormal, not with a lengths file",
                    path=f"--{name.replace('_', '-')}",
                )
    elif "drop_invalid" in given:
        raise SpecError("only used with a --lengths FILE", path="--drop-invalid")


def _arrivals(options: dict[str, Any]) -> Any:
    from hwsim.workload.generate import DiurnalArrivals, GammaArrivals, PoissonArrivals

    kind, rate = options["arrival"], options["rate"]
    try:
        if kind == "gamma":
            return GammaArrivals(rate_per_s=rate, cv=options["cv"])
        if kind == "diurnal":
            return DiurnalArrivals(
                rate_per_s=rate,
                period_s=options["period"],
                peak_to_trough=options["peak_to_trough"],
                peak_at_s=options["peak_at"],
            )
        return PoissonArrivals(rate_per_s=rate)
    except ValueError as err:
        raise SpecError(f"bad {kind} arrival process: {err}", path="--arrival") from None


def _lengths(options: dict[str, Any]) -> Any:
    from hwsim.workload.generate import EmpiricalLengths, LognormalLengths

    if options["lengths"] != "lognormal":
        return EmpiricalLengths.from_file(options["lengths"], drop_invalid=options["drop_invalid"])
    try:
        return LognormalLengths(
            input_median=options["input_median"],
            input_sigma=options["input_sigma"],
            output_median=options["output_median"],
            output_sigma=options["output_sigma"],
            max_input_tokens=options["max_input"],
            max_output_tokens=options["max_output"],
        )
    except ValueError as err:
        raise SpecError(f"bad lognormal lengths: {err}", path="--lengths") from None


# ---------------------------------------------------------------- stats


@trace.command("stats")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMAT_CHOICES),
    default="auto",
    show_default=True,
    help="Format of PATH; 'auto' detects it.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    show_default=True,
    help="Print machine-readable JSON instead of a table.",
)
def stats(path: Path, fmt: str, as_json: bool) -> None:
    """Summarise the trace at PATH: rate, burstiness, token lengths, prefix reuse.

    \b
    Example:
      hwsim trace stats workloads/traces/azure-conv-10min.jsonl
    """
    from hwsim.workload.stats import trace_stats

    name = detect_format(path) if fmt == "auto" else fmt
    report = ImportReport()
    summary = trace_stats(import_requests(path, name, report=report))
    if as_json:
        data = {
            "file": str(path),
            "format": name,
            **summary.to_dict(),
            "skipped_failures": report.skipped_failures,
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(_stats_table(str(path), name, summary, report))


def _stats_table(path: str, fmt: str, s: Any, report: ImportReport) -> str:
    def num(x: float, digits: int = 3) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"

    lines = [
        f"trace              {path} ({fmt})",
        f"requests           {s.count:,}"
        + (f" (skipped {report.skipped_failures:,} failed)" if report.skipped_failures else ""),
        f"span               {format_quantity(s.span_s, Dim.TIME) if s.count > 1 else '-'}",
        f"mean rate          {num(s.mean_rate_per_s)} req/s",
        f"inter-arrival CV   {num(s.interarrival_cv)}",
        f"per-second counts  CV {num(s.per_second_cv)}, peak {s.peak_per_second}",
        f"{'':18} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'min':>9} {'max':>9}",
    ]
    for label, t in (("input tokens", s.input_tokens), ("output tokens", s.output_tokens)):
        if t is not None:
            cells = (t.mean, t.p50, t.p90, t.p99, t.min, t.max)
            lines.append(f"{label:18} " + " ".join(f"{c:>9,.0f}" for c in cells))
    if s.prefix_reuse_fraction is not None:
        lines.append(
            f"prefix blocks      {s.prefix_blocks:,} ({s.prefix_reuse_fraction:.1%} reused)"
        )
    return "\n".join(lines)
