"""``hwsim check CLUSTER.yaml [TRACE]``: load and check a scenario without simulating."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from hwsim.cli.params import catalog_option, patch_option
from hwsim.io.scenario import load_scenario
from hwsim.report.describe import describe_cluster, describe_deployment
from hwsim.spec.sharding import weight_share

if TYPE_CHECKING:
    from hwsim.workload.request import Request


@click.command("check")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.argument("trace_file", metavar="[TRACE]", required=False, type=click.Path(dir_okay=False))
@catalog_option
@patch_option
def check(cluster_file: str, trace_file: str | None, catalog_dirs: tuple[str, ...],
          patch_files: tuple[str, ...]) -> None:
    """Check a scenario: hardware, model, deployment (and a trace), then summarise it.

    Runs every validation that simulate runs first (schema, units, sources, topology,
    parallel divisibility, weights fitting in memory) and exits 2 naming the field at fault.
    """
    sc = load_scenario(cluster_file, catalog_dirs, patch_files)
    dep = sc.deployment
    shares = [weight_share(sc.model, p.parallelism, dep.dtypes, dep.experts.redundant) for p in dep.pools]
    lines = describe_cluster(sc.cluster)[:4] + describe_deployment(sc.cluster, dep, shares)
    if trace_file is not None:
        lines += _trace_lines(trace_file, sc.model.max_context_tokens)
    click.echo("\n".join(lines))
    click.echo(f"ok: {cluster_file}")


def _trace_lines(trace_file: str, max_context_tokens: int | None) -> list[str]:
    """Trace statistics, and how many requests exceed the model's context window."""
    from hwsim.report.traces import format_trace_stats
    from hwsim.workload.importers import ImportReport, detect_format, import_requests
    from hwsim.workload.stats import trace_stats

    fmt = detect_format(trace_file)
    report = ImportReport()
    too_long = 0

    def counted(requests: Iterator[Request]) -> Iterator[Request]:
        nonlocal too_long
        for r in requests:
            if max_context_tokens is not None and r.input_tokens + r.output_tokens > max_context_tokens:
                too_long += 1
            yield r

    stats = trace_stats(counted(import_requests(trace_file, fmt, report=report)))
    lines = format_trace_stats(trace_file, fmt, stats, report.skipped_failures).splitlines()
    if too_long:
        lines.append(f"warning: {too_long} requests exceed the model's context window of {max_context_tokens} tokens")
    return lines
