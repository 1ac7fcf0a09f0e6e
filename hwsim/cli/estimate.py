"""``hwsim estimate CLUSTER.yaml``: closed-form steady state, no simulation."""

from __future__ import annotations

import json

import click

from hwsim.cli.params import catalog_option, patch_option
from hwsim.errors import InfeasibleError, SpecError


@click.command("estimate")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--input", "input_tokens", type=click.IntRange(min=1), default=None,
              help="Input tokens per request  [default: 1024, or the trace's mean]")
@click.option("--output", "output_tokens", type=click.IntRange(min=1), default=None,
              help="Output tokens per request  [default: 256, or the trace's mean]")
@click.option("--batch", type=click.IntRange(min=1), default=None,
              help="Running sequences per replica  [default: the scheduler's max_seqs, capped by the KV cache]")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Closed-loop clients (each sends its next request when the last finishes), as "
                   "trtllm-bench --concurrency: caps the running batch and gives per-user tok/s by Little's law.")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False), default=None,
              help="Take the mean input/output lengths from this trace and compare its rate with capacity.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False), default=None,
              help="Write the estimate as JSON (atomically).")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False), default=None,
              help="Draw a roofline of the first pool's step operators to this PNG.")
@catalog_option
@patch_option
def estimate(cluster_file: str, input_tokens: int | None, output_tokens: int | None, batch: int | None,
             concurrency: int | None, trace_file: str | None, json_file: str | None, plot_file: str | None,
             catalog_dirs: tuple[str, ...], patch_files: tuple[str, ...]) -> None:
    """Steady-state throughput, TTFT/TPOT, memory, power and USD per million tokens.

    Uses the cost model only (no simulation): a replica keeps its batch of sequences running
    at their mean context; see the README for the assumptions.
    """
    from hwsim.io.scenario import load_scenario
    from hwsim.perf.estimate import estimate as run_estimate
    from hwsim.report import estimate as report
    from hwsim.workload.routing import offload_inclusion

    sc = load_scenario(cluster_file, catalog_dirs, patch_files)
    rate = None
    if trace_file is not None:
        stats = _trace_means(trace_file)
        input_tokens = input_tokens or max(1, round(stats.input_tokens.mean))
        output_tokens = output_tokens or max(1, round(stats.output_tokens.mean))
        rate = stats.mean_rate_per_s
    inp, out = input_tokens or 1024, output_tokens or 256
    try:
        est = run_estimate(sc.cluster, sc.model, sc.deployment, input_tokens=inp, output_tokens=out, batch=batch,
                           concurrency=concurrency,
                           expert_inclusion=offload_inclusion(sc.deployment, sc.model))
    except InfeasibleError as err:
        raise SpecError(str(err), file=cluster_file, path="deployment") from None
    lines = report.summary_lines(est)
    lines.append("busiest operators of the first pool's step:")
    lines += report.breakdown_table(est.pools[0].step)
    traffic = _first_pool_traffic(sc, est)
    if traffic:
        lines.append("busiest links in that step:")
        lines += report.link_lines(traffic, est.pools[0].step_s)
    if rate is not None:
        load = rate / est.requests_per_s if est.requests_per_s > 0 else float("inf")
        verdict = "keeps up" if load < 1 else "cannot keep up (queues grow)"
        lines.append(f"trace {trace_file}: {rate:.2f} req/s = {load:.0%} of capacity: the deployment {verdict}")
    click.echo("\n".join(lines))
    if json_file is not None:
        from hwsim.workload.files import atomic_text_writer

        with atomic_text_writer(json_file) as fh:
            json.dump(report.to_dict(est, sc.input_hashes), fh, indent=2, sort_keys=True)
            fh.write("\n")
        click.echo(f"wrote {json_file}")
    if plot_file is not None:
        pool = est.pools[0]
        device = pool.device
        dt = sc.deployment.dtypes
        native = tuple(d for d in (dt.weights, dt.expert_weights) if d in device.compute_flop_per_s)
        report.roofline_plot(pool.step, device, (dt.activations, *native), plot_file)
        click.echo(f"wrote {plot_file}")


def _trace_means(trace_file: str):  # type: ignore[no-untyped-def]
    from hwsim.workload.importers import detect_format, import_requests
    from hwsim.workload.stats import trace_stats

    stats = trace_stats(import_requests(trace_file, detect_format(trace_file)))
    if stats.count == 0 or stats.input_tokens is None or stats.output_tokens is None:
        raise SpecError("the trace has no requests", file=trace_file)
    return stats


def _first_pool_traffic(sc, est):  # type: ignore[no-untyped-def]
    """Per-link bytes of the first pool's steady step (decode sequences at mean context)."""
    from hwsim.perf.batch import Batch
    from hwsim.perf.step import link_traffic

    pool = sc.deployment.pools[0]
    p = est.pools[0]
    batch = Batch.decode(p.batch, est.input_tokens + est.output_tokens // 2) if pool.role != "prefill" else \
        Batch.prefill(max(1, pool.scheduler.max_batched_tokens // est.input_tokens), est.input_tokens)
    return link_traffic(p.cost, batch)
