"""``hwsim check CLUSTER.yaml [TRACE]``: load and check a scenario without simulating."""

from __future__ import annotations

import click

from hwsim.cli.params import catalog_option
from hwsim.io.scenario import load_scenario
from hwsim.report.describe import describe_cluster, describe_deployment
from hwsim.spec.sharding import weight_share


@click.command("check")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.argument("trace_file", metavar="[TRACE]", required=False, type=click.Path(dir_okay=False))
@catalog_option
def check(cluster_file: str, trace_file: str | None, catalog_dirs: tuple[str, ...]) -> None:
    """Check a scenario: hardware, model, deployment (and a trace), then summarise it.

    Runs every validation that simulate runs first (schema, units, sources, topology,
    parallel divisibility, weights fitting in memory) and exits 2 naming the field at fault.
    """
    sc = load_scenario(cluster_file, catalog_dirs)
    dep = sc.deployment
    shares = [weight_share(sc.model, p.parallelism, dep.dtypes, dep.experts.redundant) for p in dep.pools]
    lines = describe_cluster(sc.cluster)[:4] + describe_deployment(sc.cluster, sc.model, dep, shares)
    if trace_file is not None:
        from hwsim.workload.stats import format_stats, trace_stats
        from hwsim.workload.trace import iter_requests

        lines.append(f"trace {trace_file}:")
        lines += ["  " + x for x in format_stats(trace_stats(iter_requests(trace_file))).splitlines()]
    click.echo("\n".join(lines))
    click.echo(f"ok: {cluster_file}")
