"""``hwsim plan parallelism``: choose pools, parallelism, batch caps and dtypes for a trace under SLOs.

io (cluster, trace) -> solvers (enumerate + cost candidates, ILP) -> sim (verify the best
plans through their patch files) -> report (Pareto CSV and plots, plan JSON, summary).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from hwsim.cli.params import SloParam, catalog_option
from hwsim.cli.plan import plan, solver_options
from hwsim.errors import HwsimError, SpecError

__all__ = ["parallelism", "parse_usd_per_h"]

_USD = re.compile(r"^\s*\$?\s*([0-9]*\.?[0-9]+(?:[eE][+-]?\d+)?)\s*(?:USD|\$)?\s*(?:/\s*(h|hr|hour|s|min))?\s*$")


def parse_usd_per_h(text: str) -> float:
    """``'300 USD/h'`` -> 300.0; also ``USD/s`` and ``USD/min`` (converted to per hour)."""
    m = _USD.match(str(text))
    if m is None:
        raise click.BadParameter(f"expected a price rate such as '300 USD/h'; found {text!r}")
    value = float(m.group(1))
    unit = m.group(2) or "h"
    return value * {"h": 1.0, "hr": 1.0, "hour": 1.0, "min": 60.0, "s": 3600.0}[unit]


@plan.command("parallelism")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False, exists=True))
@click.argument("trace_file", metavar="TRACE", type=click.Path(dir_okay=False, exists=True))
@click.option("--slo", type=SloParam(), required=True, help="SLOs every plan must meet, e.g. 'ttft=2s,tpot=100ms'.")
@click.option("--devices", type=click.IntRange(min=1), default=None,
              help="Use at most this many devices (default: every device of the cluster).")
@click.option("--budget", "budget", default=None, help="Spend at most this much, e.g. '300 USD/h'.")
@click.option("--objective", type=click.Choice(["goodput", "usd"]), default="goodput", show_default=True,
              help="goodput: most output tokens/s (up to the trace's rate); usd: cheapest plan serving the rate.")
@click.option("--verify-top", type=click.IntRange(min=0), default=5, show_default=True,
              help="Simulate this many best distinct plans (0: none).")
@click.option("--max-requests", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Requests of the trace replayed by each verification.")
@click.option("--rate-scale", type=click.FloatRange(min=1e-6), default=1.0, show_default=True,
              help="Multiply the trace's arrival rate (arrival times divided by this).")
@click.option("--utilization", type=click.FloatRange(0.05, 1.0), default=0.8, show_default=True,
              help="Load each replica to at most this share of its steady-state rate (headroom for queueing).")
@click.option("--unified-only", is_flag=True, help="Do not consider disaggregated prefill/decode pools.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--no-plots", is_flag=True, help="Skip the PNGs.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="out/plan-parallelism",
              show_default=True, help="Folder for plan.json, plan.patch.yaml, pareto.csv and the plots.")
@solver_options
@catalog_option
def parallelism(cluster_file: str, trace_file: str, slo: dict[str, float], devices: int | None, budget: str | None,
                objective: str, verify_top: int, max_requests: int, rate_scale: float, utilization: float, unified_only: bool, seed: int,
                no_plots: bool, out_dir: str, solver: str, time_limit_s: float, gap: float, write_lp: Path | None,
                catalog_dirs: tuple[str, ...]) -> None:
    """Plan pools and parallelism for serving TRACE on CLUSTER.yaml under --slo.

    Enumerates replica configurations (TP, attention-DP, EP, PP, unified or disaggregated
    prefill/decode, batch caps, dtypes) per device type, costs them with the cost model, and
    allocates the devices by ILP; simulates the best plans; writes the Pareto front.
    """
    import time

    from hwsim import __version__
    from hwsim.io.plan_files import dump_patch
    from hwsim.io.scenario import file_sha256, load_scenario
    from hwsim.report.plan_parallelism import (
        plan_summary_text,
        plot_pareto,
        plot_usd,
        verification_row,
        write_pareto_csv,
        write_plan_json,
    )
    from hwsim.solvers.parallelism import (
        Demand,
        EnumerationSpace,
        Slo,
        device_types,
        enumerate_candidates,
        pareto_front,
        plan_parallelism,
    )
    from hwsim.workload.files import atomic_text_writer
    from hwsim.workload.importers import detect_format, import_requests
    from hwsim.workload.stats import trace_stats

    if devices is not None and budget is not None:
        raise click.UsageError("give at most one of --devices and --budget")
    if "ttft" not in slo or "tpot" not in slo:
        raise click.BadParameter("give both ttft and tpot, e.g. 'ttft=2s,tpot=100ms'", param_hint="--slo")
    usd_per_h = parse_usd_per_h(budget) if budget is not None else None
    t0 = time.perf_counter()
    sc = load_scenario(cluster_file, catalog_dirs)
    requests = list(import_requests(trace_file, detect_format(trace_file)))
    if rate_scale != 1.0:
        requests = [replace(r, arrival_s=r.arrival_s / rate_scale) for r in requests]
    stats = trace_stats(requests)
    rate = stats.mean_rate_per_s
    if stats.count < 2 or stats.input_tokens is None or stats.output_tokens is None or not 0 < rate < float("inf"):
        raise SpecError("the trace needs at least two requests spread over time to give an arrival rate",
                        file=trace_file, expected="a trace with a positive mean rate", found=f"{stats.count} requests")
    demand = Demand(input_tokens=max(1, round(stats.input_tokens.mean)),
                    output_tokens=max(1, round(stats.output_tokens.mean)), requests_per_s=rate)
    first = sc.deployment.pools[0].scheduler
    mbt = max(first.max_batched_tokens, demand.input_tokens)
    chunk = first.chunked_prefill_tokens or min(4096, mbt)
    cands = enumerate_candidates(sc.cluster, sc.model, sc.deployment, demand,
                                 Slo(ttft_s=slo["ttft"], tpot_s=slo["tpot"]),
                                 space=EnumerationSpace(disaggregated=not unified_only),
                                 max_batched_tokens=mbt, chunked_prefill=chunk)
    t_cost = time.perf_counter() - t0
    types = device_types(sc.cluster)
    out = Path(out_dir)
    plans = plan_parallelism(cands, types, demand, objective=objective, devices=devices, usd_per_h=usd_per_h, utilization=utilization,
                             top=max(1, verify_top), backend=solver, time_limit_s=time_limit_s, gap=gap,
                             write_lp=str(write_lp) if write_lp else None)
    t_solve = time.perf_counter() - t0 - t_cost
    front = pareto_front(cands)
    command = "hwsim plan parallelism " + " ".join(shlex.quote(a) for a in sys.argv[3:]) if len(sys.argv) > 3 \
        else f"hwsim plan parallelism {cluster_file} {trace_file}"
    act = sc.deployment.dtypes.activations
    patch_paths = []
    for p in plans:
        target = out / "plans" / f"plan-{p.rank}.patch.yaml"
        header = f"plan #{p.rank} ({objective}): {p.describe()}"
        with atomic_text_writer(target) as fh:
            fh.write(dump_patch(p.patch_set(act, chunk), source=command, header=header))
        patch_paths.append(target)

    rows: list[dict[str, Any]] = []
    if verify_top:
        from hwsim.report.summary import summarize
        from hwsim.sim.routing import imbalance_sampler_factory
        from hwsim.sim.run import simulate

        for p, patch in zip(plans[:verify_top], patch_paths, strict=False):
            gap_note = p.layout_gap(types)
            if gap_note is not None:
                rows.append(verification_row(p, None, gap_note))
                continue
            try:
                vsc = load_scenario(cluster_file, catalog_dirs, patches=[patch])
                result = simulate(vsc, requests, seed=seed, max_requests=max_requests,
                                  imbalance_sampler_factory=imbalance_sampler_factory(vsc))
            except HwsimError as err:
                rows.append(verification_row(p, None, str(err).splitlines()[0]))
                continue
            summary = summarize(result, slo_ttft_s=slo["ttft"], slo_tpot_s=slo["tpot"], version=__version__)
            rows.append(verification_row(p, summary))
    chosen = _recommended(rows)
    best = next(p for p in plans if p.rank == chosen)
    with atomic_text_writer(out / "plan.patch.yaml") as fh:
        fh.write(patch_paths[chosen - 1].read_text())
    t_total = time.perf_counter() - t0

    write_pareto_csv(out / "pareto.csv", cands, front)
    if not no_plots:
        plot_pareto(out / "pareto.png", cands, front, [pp.candidate.index for pp in best.pools])
        plot_usd(out / "pareto-usd.png", cands, slo["tpot"])
    inputs = {**sc.input_hashes, trace_file: file_sha256(trace_file)}
    write_plan_json(out / "plan.json", {
        "hwsim_version": __version__, "command": command, "inputs": inputs, "objective": objective,
        "slo": {"ttft_s": slo["ttft"], "tpot_s": slo["tpot"]}, "devices": devices, "budget_usd_per_h": usd_per_h,
        "rate_scale": rate_scale, "utilization": utilization,
        "demand": {"input_tokens": demand.input_tokens, "output_tokens": demand.output_tokens,
                   "requests_per_s": demand.requests_per_s},
        "candidates": len(cands), "candidates_meeting_slo": sum(c.meets_slo for c in cands),
        "pareto_front": sorted(front), "plans": [p.as_dict() for p in plans], "verification": rows,
        "recommended": chosen,
        "patch": best.patch_set(act, chunk),
        "timing_s": {"costing": t_cost, "solving": t_solve, "total": t_total}})
    click.echo(f"demand: {demand.requests_per_s:.3g} requests/s, mean {demand.input_tokens} input and "
               f"{demand.output_tokens} output tokens ({stats.count} requests)")
    click.echo(plan_summary_text(plans, rows, candidates=len(cands), meeting=sum(c.meets_slo for c in cands),
                                 front=len(front)))
    if rows:
        click.echo(f"recommended: plan #{chosen} (" + ("the ILP's best; " if chosen == 1 else "")
                   + "the most simulated goodput under the SLOs)")
    click.echo(f"costing {t_cost:.1f} s, solving {t_solve:.1f} s, total {t_total:.1f} s")
    click.echo(f"wrote {out}/plan.json, plan.patch.yaml, pareto.csv" + ("" if no_plots else ", pareto.png, pareto-usd.png")
               + f"; apply with: hwsim simulate {cluster_file} {trace_file} --patch {out}/plan.patch.yaml")


def _recommended(rows: list[dict[str, Any]]) -> int:
    """The rank of the plan to recommend: the most simulated goodput (requests/s meeting the
    SLOs; a plan within 1% of the best keeps its better ILP rank); the ILP's best when nothing
    was simulated."""
    import math

    sims: list[tuple[int, float]] = []
    for r in rows:
        g = r.get("simulated_goodput_requests_per_s")
        if isinstance(g, float | int) and math.isfinite(g):
            sims.append((int(r["rank"]), float(g)))
    if not sims:
        return 1
    top = max(g for _, g in sims)
    return min(k for k, g in sims if g >= top * 0.99)
