"""``hwsim plan power CLUSTER.yaml TRACE --budget 40kW``: power oversubscription (POLCA-style).

1. Simulate the deployment on the trace uncapped and at each cap level; from each run, sample
   the wall power of one replica of every pool at the same S moments of the trace (the
   scenarios) and measure tokens/s per replica.
2. Solve :func:`hwsim.solvers.power.plan_power`: replicas per (pool, cap) maximising tokens/s
   with the budget exceeded in at most ``--violation`` of the scenarios.
3. Check the plan on S fresh moments (out of sample) and by simulating the chosen caps again
   with another seed (the realised fraction of time above the budget).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from hwsim.cli.params import QuantityParam, catalog_option, patch_option
from hwsim.cli.plan import plan, solver_options
from hwsim.units import Dim


class _CapList(click.ParamType):
    name = "caps"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        from hwsim.errors import UnitError
        from hwsim.units import parse_quantity

        try:
            return tuple(parse_quantity(v.strip(), Dim.POWER) for v in str(value).split(",") if v.strip())
        except UnitError as err:
            self.fail(str(err), param, ctx)


class _Fraction(click.ParamType):
    name = "fraction"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        try:
            f = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            self.fail(f"expected a fraction like '1%' or 0.01, found {text!r}", param, ctx)
        if not 0.0 <= f < 1.0:
            self.fail(f"the fraction must be in [0, 1), found {text!r}", param, ctx)
        return f


@plan.command("power")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.argument("trace_file", metavar="TRACE", type=click.Path(dir_okay=False))
@click.option("--budget", type=QuantityParam(Dim.POWER), default=None,
              help="Power budget (e.g. '40kW'); default: the budget of --domain.")
@click.option("--domain", default=None, help="Power domain of CLUSTER.yaml whose budget (and node count) to use.")
@click.option("--caps", type=_CapList(), default=None,
              help="Cap levels per device besides uncapped, e.g. '600W,500W,400W' (default 85/70/55% of TDP).")
@click.option("--violation", type=_Fraction(), default="1%", show_default=True,
              help="Largest fraction of the time the budget may be exceeded.")
@click.option("--scenarios", type=click.IntRange(10, 5000), default=400, show_default=True,
              help="Sampled moments of the trace (in sample; as many again out of sample).")
@click.option("--max-servers", type=click.IntRange(min=1), default=None,
              help="At most this many servers (default: the domain's nodes with --domain, else unlimited).")
@click.option("--max-requests", type=click.IntRange(min=1), default=None, help="Simulate at most this many requests.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="plan-power", show_default=True)
@solver_options
@catalog_option
@patch_option
def plan_power_command(cluster_file: str, trace_file: str, budget: float | None, domain: str | None,
                       caps: tuple[float, ...] | None, violation: float, scenarios: int, max_servers: int | None,
                       max_requests: int | None, seed: int, out_dir: str, solver: str, time_limit_s: float, gap: float,
                       write_lp: Path | None, catalog_dirs: tuple[str, ...], patch_files: tuple[str, ...]) -> None:
    """Servers and power caps that a power budget holds (oversubscription against TDP provisioning)."""
    import numpy as np

    from hwsim import __version__
    from hwsim.errors import SpecError
    from hwsim.io.scenario import file_sha256, load_scenario
    from hwsim.perf.power import power_coefficients, power_limit_w, wall_power_w
    from hwsim.report import plan_power as rep
    from hwsim.solvers.power import ServerGroup, plan_power

    sc = load_scenario(cluster_file, catalog_dirs, patch_files)
    budget, max_servers = _budget(sc, budget, domain, max_servers)
    pools = sc.deployment.pools
    device = sc.cluster.device_at(pools[0].first_device)
    coeff = power_coefficients(device)
    if caps is None:
        lo = coeff.cap_min_w if coeff.cap_min_w is not None else 0.0
        caps = tuple(sorted({round(max(lo, f * coeff.tdp_w)) for f in (0.85, 0.70, 0.55)}, reverse=True))
    for c in caps:
        power_limit_w(device, c)        # an unsettable cap is an input error before any simulation
    levels: list[float | None] = [None, *caps]

    runs = {c: _simulate(sc, trace_file, seed, max_requests, c) for c in levels}
    base = runs[None]
    t0, t1 = rep.window_s(base)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    times = np.sort(rng.uniform(t0, t1, scenarios))
    fresh = np.sort(rng.uniform(t0, t1, scenarios))
    total_devices = sum(p.devices for p in pools)
    groups, fresh_power, meta, cap_rows = [], [], [], []
    base_tps = rep.output_tokens_per_s(base)
    for level in levels:
        res = runs[level]
        tps = rep.output_tokens_per_s(res)
        for i, pool in enumerate(pools):
            node = sc.cluster.node_of_device(pool.first_device)
            d = pool.parallelism.devices
            share = d / node.device_count
            name = f"{pool.name}@{'uncapped' if level is None else f'{level:.0f}W'}"
            g = ServerGroup(name=name, pool=pool.name, cap_w=level, servers=share,
                            tokens_per_s=tps * d / total_devices,
                            tdp_power_w=wall_power_w(node, coeff.tdp_w) * share,
                            power_w=rep.replica_wall_power_w(res, i, node, times))
            groups.append(g)
            fresh_power.append(rep.replica_wall_power_w(res, i, node, fresh))
            meta.append((i, node))
            cap_rows.append({"group": name, "cap_w": level, "tokens_per_s": g.tokens_per_s,
                             "vs_uncapped": tps / base_tps if base_tps > 0 else math.nan,
                             "tpot_s": rep.mean_tpot_s(res), "mean_w": float(g.power_w.mean()),
                             "p99_w": float(np.quantile(g.power_w, 0.99)), "tdp_w": g.tdp_power_w})
    node0 = sc.cluster.node_of_device(pools[0].first_device)
    result = plan_power(groups, budget_w=budget, violation=violation,
                        pool_replicas={p.name: p.replicas for p in pools}, max_servers=max_servers,
                        node_tdp_w=wall_power_w(node0, coeff.tdp_w), backend=solver, time_limit_s=time_limit_s,
                        gap=gap, write_lp=write_lp)
    from hwsim.solvers.power import violation_fraction

    out_of_sample = violation_fraction(result.counts, np.stack(fresh_power), budget)
    verified, grid, total = _verify(sc, trace_file, seed, max_requests, groups, result.counts, meta, (t0, t1), budget,
                                    {level: rep.output_tokens_per_s(r) for level, r in runs.items()})

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    changes = _patch_changes(cluster_file, sc, groups, result.counts)
    source = f"hwsim plan power {cluster_file} {trace_file} --budget {budget:g}W --violation {violation:g}"
    rep.write_patch(out / "plan.patch.yaml", changes, source)
    tdp_total = sum(c * g.tdp_power_w for c, g in zip(result.counts, groups, strict=True))
    rep.plot_power_plan(out / "power_plan.png", grid, total, budget, tdp_total)
    inputs = {**sc.input_hashes, trace_file: file_sha256(trace_file)}
    rep.write_plan_json(out / "plan.json", {
        "kind": "power-plan", "hwsim_version": __version__, "inputs": inputs, "plan": result.as_dict(),
        "groups": cap_rows, "patch": changes, "caps_w": {g.name: g.cap_w for g in groups},
        "out_of_sample_violation": out_of_sample, "verification": verified,
        "uncapped_tokens_per_s_per_server": sum(g.tokens_per_s for g in groups[:len(pools)]) /
        sum(g.servers for g in groups[:len(pools)]),
        "seed": seed, "max_requests": max_requests})
    per_server = sum(g.tokens_per_s for g in groups[:len(pools)]) / sum(g.servers for g in groups[:len(pools)])
    click.echo(rep.summary_text(result, groups, uncapped_tokens_per_s=per_server, out_of_sample=out_of_sample,
                                verified=verified, cap_rows=cap_rows))
    click.echo(f"wrote plan.json, plan.patch.yaml, power_plan.png to {out}/")
    if not any(result.counts):  # pragma: no cover - min_servers forbids it
        raise SpecError("the plan holds no servers")


def _budget(sc: Any, budget: float | None, domain: str | None, max_servers: int | None) -> tuple[float, int | None]:
    from hwsim.errors import SpecError

    if domain is not None:
        found = [d for d in sc.cluster.power_domains if d.name == domain]
        if not found:
            names = ", ".join(d.name for d in sc.cluster.power_domains) or "none"
            raise SpecError(f"unknown power domain {domain!r}; known: {names}", path="--domain")
        budget = budget if budget is not None else found[0].budget_w
        max_servers = max_servers if max_servers is not None else len(found[0].nodes)
    if budget is None:
        raise SpecError("give --budget (e.g. '40kW') or --domain NAME", path="--budget",
                        expected="a power budget")
    return budget, max_servers


def _simulate(sc: Any, trace_file: str, seed: int, max_requests: int | None, cap: float | None) -> Any:
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate
    from hwsim.workload.importers import detect_format, import_requests

    requests = import_requests(trace_file, detect_format(trace_file))
    return simulate(sc, requests, seed=seed, max_requests=max_requests,
                    imbalance_sampler_factory=imbalance_sampler_factory(sc), power_cap_w=cap)


def _verify(sc: Any, trace_file: str, seed: int, max_requests: int | None, groups: list[Any], counts: tuple[int, ...],
            meta: list[Any], window: tuple[float, float], budget: float,
            planned_tps: dict[float | None, float]) -> tuple[dict[str, float], Any, Any]:
    """Simulate every chosen cap again (seed + 1) and sum the plan's power on a fine time grid;
    throughput scales each group's planned tokens/s by the rerun's over the planning run's."""
    import numpy as np

    from hwsim.report import plan_power as rep

    grid = np.linspace(window[0], window[1], 2000)
    total = np.zeros_like(grid)
    runs: dict[float | None, Any] = {}
    tokens = 0.0
    for g, c, (i, node) in zip(groups, counts, meta, strict=True):
        if c == 0:
            continue
        if g.cap_w not in runs:
            runs[g.cap_w] = _simulate(sc, trace_file, seed + 1, max_requests, g.cap_w)
        res = runs[g.cap_w]
        total += c * rep.replica_wall_power_w(res, i, node, grid)
        tokens += c * g.tokens_per_s * rep.output_tokens_per_s(res) / max(planned_tps[g.cap_w], 1e-12)
    verified = {"violation": float(np.mean(total > budget)), "peak_w": float(total.max()),
                "mean_w": float(total.mean()), "tokens_per_s": tokens, "seed": seed + 1, "points": int(grid.size)}
    return verified, grid, total


def _patch_changes(cluster_file: str, sc: Any, groups: list[Any], counts: tuple[int, ...]) -> dict[str, Any]:
    """Replica count of every pool and, when the cluster file gives ``nodes: {count: N}``, the nodes they
    need (with a fat-tree fabric when the file has none and the plan needs more than one node)."""
    from hwsim.io.source import read_document

    pools = sc.deployment.pools
    changes: dict[str, Any] = {}
    devices = 0
    for i, pool in enumerate(pools):
        n = sum(c for g, c in zip(groups, counts, strict=True) if g.pool == pool.name)
        changes[f"deployment.pools[{i}].replicas"] = n
        devices += n * pool.parallelism.devices
    data = read_document(cluster_file).data
    nodes = data.get("nodes")
    if isinstance(nodes, dict) and "count" in nodes:
        per_node = sc.cluster.node_of_device(0).device_count
        changes["nodes.count"] = count = max(1, math.ceil(devices / per_node))
        if count > 1 and sc.cluster.fabric.topology == "none":   # more servers need a network between them
            if isinstance(data.get("fabric"), dict):
                changes["fabric.topology"] = "fat-tree"
            else:
                changes["fabric"] = {"topology": "fat-tree"}
    return changes
