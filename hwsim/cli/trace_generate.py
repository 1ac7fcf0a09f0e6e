"""``hwsim trace generate``: a synthetic trace from an arrival process and a length model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from hwsim.cli.trace_params import RateParam, SecondsParam, Tally, output_option
from hwsim.errors import SpecError
from hwsim.workload.trace import write_requests

__all__ = ["generate"]


_ARRIVAL_OPTIONS = {
    "rate": ("poisson", "gamma", "diurnal"),
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


@click.command("generate")
@output_option
@click.option(
    "--arrival",
    type=click.Choice(["poisson", "gamma", "diurnal", "offline"]),
    default="poisson",
    show_default=True,
    help="Arrival process ('offline': every request at time 0, as trtllm-bench throughput or "
    "MLPerf offline; needs --count).",
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
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Seed of the random generator.",
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
      hwsim trace generate -o offline.jsonl --arrival offline --count 3000 \\
          --input-median 1000 --input-sigma 0 --output-median 1000 --output-sigma 0
      hwsim trace generate -o day.jsonl --arrival diurnal --rate 2/s --period 1h --duration 2h \\
          --lengths ../shared/data/sharegpt-lengths-sarathi/sharegpt_8k_filtered_stats_llama2_tokenizer.csv
    """
    from hwsim.workload.generate import generate_requests

    if options["arrival"] == "offline" and (count is None or duration_s is not None):
        raise SpecError(
            "offline arrivals all come at time 0: say how many",
            path="--duration" if duration_s is not None else "--count",
            expected="--count N (and no --duration)",
        )
    if duration_s is None and count is None:
        raise SpecError(
            "say when to stop", path="--duration", expected="--duration (e.g. '10min') or --count"
        )
    if tenant is not None and not tenant.strip():
        raise SpecError("empty tenant name", path="--tenant", expected="a non-empty name")
    _check_relevant(ctx, options)
    arrivals, lengths = _arrivals(options), _lengths(options)
    requests = generate_requests(
        arrivals, lengths, seed=seed, duration_s=duration_s, count=count, tenant=tenant
    )
    tally = Tally(requests)
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
    from hwsim.workload.generate import (
        DiurnalArrivals,
        GammaArrivals,
        OfflineArrivals,
        PoissonArrivals,
    )

    kind, rate = options["arrival"], options["rate"]
    if kind == "offline":
        return OfflineArrivals()
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
