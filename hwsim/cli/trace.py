"""``hwsim trace``: import public traces, generate synthetic ones, summarise any of them.

Thin: parses options, calls :mod:`hwsim.workload`, prints. numpy-backed modules are imported
inside the commands so that ``hwsim --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hwsim.cli import HwsimGroup
from hwsim.cli.trace_generate import generate
from hwsim.cli.trace_params import SecondsParam, Tally, format_option, output_option
from hwsim.report.traces import format_trace_stats
from hwsim.workload.importers import ImportReport, detect_format, import_requests
from hwsim.workload.trace import write_requests

if TYPE_CHECKING:
    pass

__all__ = ["trace"]


@click.group(cls=HwsimGroup)
def trace() -> None:
    """Request traces: import public ones, generate synthetic ones, summarise them.

    The hwsim trace format is JSON Lines (one request per line) or JSON; see docs/traces.md.
    """


# ---------------------------------------------------------------- import


@trace.command("import")
@click.argument("src", type=click.Path(path_type=Path, dir_okay=False))
@output_option
@format_option("SRC")
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
    tally = Tally(requests)
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


trace.add_command(generate)


# ---------------------------------------------------------------- stats


@trace.command("stats")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@format_option("PATH")
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
    click.echo(format_trace_stats(str(path), name, summary, report.skipped_failures))
