"""``hwsim plan`` commands for placement planning (registered on the group in :mod:`hwsim.cli.plan`).

* ``hwsim plan placement CLUSTER.yaml [--routing FILE] [--verify TRACE]``: the placement MILP
  (:mod:`hwsim.solvers.placement`) per MoE layer, compared with contiguous, round-robin and
  EPLB-style placement (max/mean device load, predicted MoE layer time) and, with ``--verify``,
  simulated before and after (throughput, TPOT).

Outputs (in ``--out``): ``placement.yaml`` (a placement file), ``plan.patch.yaml`` (for
``hwsim simulate --patch``), ``plan.json`` (the plan, the solver's gap and time limit, input
hashes, hwsim version) and ``comparison.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from hwsim.cli.params import QuantityParam, catalog_option
from hwsim.cli.plan import plan, solver_options
from hwsim.errors import SpecError
from hwsim.units import Dim

if TYPE_CHECKING:
    from hwsim.spec.deployment import Pool
    from hwsim.spec.scenario import Scenario
    from hwsim.workload.routing_loads import LayeredPlacement

STRATEGIES = ("contiguous", "round-robin", "eplb")


def _verify_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--verify TRACE``, ``--max-requests``, ``--seed``: the simulation check of a plan."""
    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                         help="Seed of --verify.")(f)
        f = click.option("--max-requests", type=click.IntRange(min=1), default=None,
                         help="Requests simulated by --verify.")(f)
        return click.option("--verify", "verify_trace", type=click.Path(dir_okay=False, exists=True),
                            default=None, help=what)(f)
    return wrap


@plan.command("placement")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False, exists=True))
@click.option("--routing", "routing_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Expected loads (and, from a per-token trace, co-activation) from this routing model file or "
                   "routing trace (.npz, .parquet, .csv) instead of the deployment's routing.")
@click.option("--redundant", type=click.IntRange(min=0), default=None,
              help="Replica budget: redundant expert copies per MoE layer  [default: experts.redundant]")
@click.option("--pool", "pool_name", default=None, help="The pool to place for (default: the one with ep > 1).")
@click.option("--method", type=click.Choice(["auto", "milp"]), default="auto", show_default=True,
              help="auto: heuristic with a proven bound, the MILP where the gap is above --gap; milp: every layer.")
@click.option("--batch", "batch_seqs", type=click.IntRange(min=1), default=None,
              help="Decode sequences of the reference step for the predicted MoE time  [default: max_seqs]")
@_verify_options("Simulate this request trace with the cluster's placement and with the plan.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="plan-placement",
              show_default=True, help="Folder for placement.yaml, plan.patch.yaml, plan.json, comparison.csv.")
@solver_options
@catalog_option
def placement(cluster_file: str, routing_file: str | None, redundant: int | None, pool_name: str | None,
              method: str, batch_seqs: int | None, verify_trace: str | None, max_requests: int | None, seed: int,
              out_dir: str, solver: str, time_limit_s: float, gap: float, write_lp: Path | None,
              catalog_dirs: tuple[str, ...]) -> None:
    """Plan which experts (and replicas) each device holds, per MoE layer, to minimise the
    busiest device's expected MoE load; compare with contiguous, round-robin and EPLB."""
    from hwsim import __version__
    from hwsim.cli.experts_placement import _compact, _ep_pool, _expected_loads, _place
    from hwsim.io.placement import dump_placement
    from hwsim.io.plan_files import dump_patch
    from hwsim.io.scenario import file_sha256, load_scenario
    from hwsim.perf.collectives import Collectives
    from hwsim.perf.plan import PoolGroups
    from hwsim.report.plan_placement import ComparisonRow, comparison_text, write_comparison_csv
    from hwsim.solvers.placement import plan_placement
    from hwsim.workload.files import atomic_text_writer
    from hwsim.workload.routing_loads import imbalance, rank_loads

    sc = load_scenario(cluster_file, catalog_dirs)
    pool = _ep_pool(sc, pool_name)
    moe = sc.model.moe
    assert moe is not None
    extra = sc.deployment.experts.redundant if redundant is None else redundant
    layers, loads = _expected_loads(sc, routing_file)
    coact = _coactivation(routing_file, moe.num_experts, len(layers))
    rank_node = Collectives(sc.cluster).rank_nodes(PoolGroups.of(sc.cluster, pool).ep)
    result = plan_placement(loads, pool.parallelism.ep, extra, layers=layers, rank_node=np.asarray(rank_node),
                            coact=coact, method=method, backend=solver, time_limit_s=time_limit_s, gap=gap,
                            write_lp=write_lp)
    planned = result.placement()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = ["hwsim plan placement", cluster_file] + (["--routing", routing_file] if routing_file else [])
    words += ["--redundant", str(redundant)] if redundant is not None else []
    source = " ".join(shlex.quote(w) if i else w for i, w in enumerate(words))
    table = _compact(planned, layers).to_table(model=sc.model.name, source=source)
    placement_path = out / "placement.yaml"
    with atomic_text_writer(placement_path) as fh:
        fh.write(dump_placement(table))
    rel = os.path.relpath(placement_path.resolve(), Path(cluster_file).resolve().parent)
    changes = {"deployment.experts.placement": "file", "deployment.experts.placement_file": rel,
               "deployment.experts.redundant": extra}
    with atomic_text_writer(out / "plan.patch.yaml") as fh:
        fh.write(dump_patch(changes, source=source, header="expert placement planned by hwsim plan placement"))

    columns: dict[str, LayeredPlacement] = {s: _place(sc, pool, s, layers, loads, extra) for s in STRATEGIES}
    columns["plan"] = planned
    step = _moe_step(sc, pool, extra, batch_seqs)
    rows = []
    for name, lp in columns.items():
        ratios = np.array([imbalance(rank_loads(w, lp.at(layer))) for layer, w in zip(layers, loads, strict=True)])
        rows.append(ComparisonRow(name=name, max_over_mean=float(ratios.mean()),
                                  worst_max_over_mean=float(ratios.max()), moe_layer_s=step(float(ratios.mean()))))
    write_comparison_csv(out / "comparison.csv", rows)

    inputs = dict(sc.input_hashes)
    if routing_file is not None:
        inputs[routing_file] = file_sha256(routing_file)
    verified = None
    if verify_trace is not None:
        inputs[verify_trace] = file_sha256(verify_trace)
        verified = _verify(cluster_file, (("cluster", ()), ("plan", (str(out / "plan.patch.yaml"),))),
                           verify_trace, catalog_dirs, seed, max_requests)
    doc: dict[str, Any] = {"kind": "placement-plan", "hwsim_version": __version__, "source": source,
                           "inputs": inputs, "pool": pool.name, "method": method, "solver": solver,
                           "plan": result.as_dict(), "wall_s": result.wall_s,
                           "comparison": [dataclasses.asdict(r) for r in rows], "verification": verified}
    with atomic_text_writer(out / "plan.json") as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, default=_json_default) + "\n")

    milp_layers = sum(p.method == "milp" for p in result.layers)
    click.echo(f"{sc.model.name}, pool '{pool.name}': {len(layers)} MoE layers x {moe.num_experts} experts on "
               f"{result.ranks} devices x {result.slots_per_rank} slots ({extra} redundant)")
    click.echo(f"solver {solver}, time limit {time_limit_s:g} s, gap limit {gap:.2%}: proven gap {result.gap:.2%} "
               f"(worst layer), {milp_layers} layers improved by the MILP, {result.wall_s:.2f} s")
    if result.cross_node_after is not None:
        click.echo(f"co-activations crossing nodes: {result.cross_node_before:.1%} -> {result.cross_node_after:.1%}")
    click.echo(comparison_text(rows))
    if verified is not None:
        from hwsim.report.plan_placement import verification_text
        click.echo(verification_text(verified))
    click.echo(f"wrote {out}/placement.yaml, plan.patch.yaml, plan.json, comparison.csv "
               f"(use: hwsim simulate {cluster_file} TRACE --patch {out}/plan.patch.yaml)")


# ---------------------------------------------------------------------- helpers


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _coactivation(routing_file: str | None, num_experts: int, num_layers: int) -> np.ndarray | None:
    """Consecutive-layer co-activation counts from a per-token routing trace covering every
    MoE layer (``None`` otherwise: histograms and routing models have no token identity)."""
    if routing_file is None or Path(routing_file).suffix.lower() not in (".npz", ".parquet"):
        return None
    from hwsim.solvers.placement import coactivation
    from hwsim.workload.routing_trace import read_routing_trace

    try:
        trace = read_routing_trace(routing_file)
    except (SpecError, ValueError, KeyError):
        return None
    if trace.num_layers != num_layers or not np.array_equal(trace.layer_indices, np.arange(num_layers)):
        return None
    return coactivation(trace.ids, num_experts)


def _moe_step(sc: Scenario, pool: Pool, redundant: int, batch_seqs: int | None) -> Any:
    """``imbalance -> MoE time of one layer`` in a decode step of the pool (one replica)."""
    from hwsim.perf.batch import Batch
    from hwsim.perf.step import StepCost

    experts = dataclasses.replace(sc.deployment.experts, redundant=redundant)
    deployment = dataclasses.replace(sc.deployment, experts=experts)
    seqs = batch_seqs or pool.scheduler.max_seqs
    batch = Batch.decode(seqs, 1024)
    layers = max(1, sc.model.num_moe_layers)

    def moe_time(factor: float) -> float:
        cost = StepCost(sc.cluster, sc.model, deployment, pool, imbalance=factor)(batch)
        return sum(op.cost.time_s * op.count for op in cost.ops if op.group == "moe") / layers

    return moe_time


def _verify(cluster_file: str, variants: tuple[tuple[str, tuple[str, ...]], ...], trace: str,
            catalog_dirs: tuple[str, ...], seed: int, max_requests: int | None) -> dict[str, dict[str, Any]]:
    """Simulate the trace once per ``(name, patch files)`` variant of the cluster file; per
    variant: output tokens/s, TPOT p50/p90, finished requests and, with an expert cache, the
    hit rate."""
    from hwsim import __version__
    from hwsim.io.scenario import load_scenario
    from hwsim.report.summary import summarize
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate
    from hwsim.workload.importers import detect_format, import_requests

    requests = list(import_requests(trace, detect_format(trace)))
    out = {}
    for name, patches in variants:
        sc = load_scenario(cluster_file, catalog_dirs, patches)
        result = simulate(sc, requests, seed=seed, max_requests=max_requests,
                          imbalance_sampler_factory=imbalance_sampler_factory(sc))
        s = summarize(result, version=__version__)
        out[name] = {"output_tokens_per_s": s["throughput"]["output_tokens_per_s"],
                     "tpot_p50_s": s["latency"]["tpot_s"]["p50"], "tpot_p90_s": s["latency"]["tpot_s"]["p90"],
                     "finished": s["requests"].get("finished")}
        if "offload" in s:
            out[name]["hit_rate"] = s["offload"].get("hit_rate")
    return out


# ---------------------------------------------------------------------- tiering


@plan.command("tiering")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False, exists=True))
@click.option("--routing", "routing_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Access frequencies from this routing model file or routing trace instead of the deployment's "
                   "routing (a trace also becomes the simulated routing in the patch).")
@click.option("--pool", "pool_name", default=None, help="The pool to plan for (default: the first).")
@click.option("--dram", "dram_bytes", type=QuantityParam(Dim.BYTES), default=None,
              help="Host DRAM for experts per device  [default: the node's DRAM over its devices]")
@_verify_options("Simulate this request trace with the plan (static tiers) and with an LRU expert cache.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="plan-tiering",
              show_default=True, help="Folder for plan.json, plan.patch.yaml and lru.patch.yaml.")
@solver_options
@catalog_option
def tiering(cluster_file: str, routing_file: str | None, pool_name: str | None, dram_bytes: float | None,
            verify_trace: str | None, max_requests: int | None, seed: int, out_dir: str, solver: str,
            time_limit_s: float, gap: float, write_lp: Path | None, catalog_dirs: tuple[str, ...]) -> None:
    """Plan which experts of a device live in HBM, host DRAM or flash (a knapsack over access
    frequencies and tier costs) to minimise the expected expert-fetch time per token.

    The deployment needs experts.offload (its HBM budget sets the HBM tier).
    """
    from hwsim import __version__
    from hwsim.cli.experts_placement import _expected_loads
    from hwsim.io.plan_files import dump_patch
    from hwsim.io.scenario import file_sha256, load_scenario
    from hwsim.perf.memory import footprint
    from hwsim.perf.offload import OffloadCost
    from hwsim.solvers.tiering import TIERS, expected_fetch_s, plan_tiering
    from hwsim.workload.files import atomic_text_writer

    sc = load_scenario(cluster_file, catalog_dirs)
    if sc.model.moe is None:
        raise SpecError(f"{sc.model.name} is dense: it has no experts to tier", path="deployment.model")
    off = sc.deployment.experts.offload
    if off is None:
        raise SpecError("tiering plans need an expert cache in the deployment", path="deployment.experts.offload",
                        expected="e.g. offload: {hbm_bytes: 18 GiB, scope: device, policy: lru}", found=None)
    pools = sc.deployment.pools
    pool = pools[0] if pool_name is None else next((p for p in pools if p.name == pool_name), None)
    if pool is None:
        raise SpecError(f"no pool named '{pool_name}'", path="--pool", expected=" or ".join(p.name for p in pools))
    cost = OffloadCost(sc.cluster, sc.model, sc.deployment, pool)
    size = cost.shape.bytes
    layers, loads = _expected_loads(sc, routing_file)
    local = np.flatnonzero(cost.rank_of_expert == 0)            # the experts of EP rank 0's device
    freq = loads[:, local]
    cached = footprint(sc.model, sc.deployment, pool, cost.device).cached_experts or 0
    node = cost.node
    if dram_bytes is None:
        dram_bytes = node.dram.capacity_bytes / node.device_count if node.dram is not None else 0.0
    flash_bytes = sum(st.capacity_bytes for st in node.storage) / node.device_count
    dram_s = cost.fetch_one_s
    flash_s = max(dram_s, float(cost.flash_s(np.array([size]))[0])) if cost.storage is not None else math.inf
    if math.isinf(flash_s):
        flash_s, flash_bytes = dram_s * 1e3, 0.0
    capacity = (cached * size, float(dram_bytes), float(flash_bytes))
    result = plan_tiering(freq, size, capacity, (0.0, dram_s, flash_s), backend=solver, time_limit_s=time_limit_s,
                          gap=min(gap, 1e-4), write_lp=write_lp, name="tiering_device_0")
    counts = result.counts()
    # the simulator's static policy pins the most popular experts by the routing's popularity over
    # the device's layers (scope device): the HBM set of the plan when all experts are one size
    backing = "flash" if counts["flash"] else "dram"
    changes: dict[str, Any] = {"deployment.experts.offload.policy": "static",
                               "deployment.experts.offload.scope": "device",
                               "deployment.experts.offload.backing": backing}
    if routing_file is not None and Path(routing_file).suffix.lower() not in (".yaml", ".yml", ".json"):
        rel = os.path.relpath(Path(routing_file).resolve(), Path(cluster_file).resolve().parent)
        changes["deployment.experts.routing"] = {"model": "trace", "file": rel}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = "hwsim plan tiering " + " ".join(shlex.quote(w) for w in [cluster_file] +
                                               (["--routing", routing_file] if routing_file else []))
    with atomic_text_writer(out / "plan.patch.yaml") as fh:
        fh.write(dump_patch(changes, source=source, header="expert memory tiers planned by hwsim plan tiering"))
    with atomic_text_writer(out / "lru.patch.yaml") as fh:
        fh.write(dump_patch({**changes, "deployment.experts.offload.policy": "lru"}, source=source,
                            header="the same tiers run as an LRU expert cache (the baseline of the plan)"))
    lru_like = np.where(result.tier == 0, 0, 1 if backing == "dram" else 2)
    inputs = dict(sc.input_hashes)
    if routing_file is not None:
        inputs[routing_file] = file_sha256(routing_file)
    verified = None
    if verify_trace is not None:
        inputs[verify_trace] = file_sha256(verify_trace)
        verified = _verify(cluster_file, (("lru", (str(out / "lru.patch.yaml"),)),
                                          ("plan", (str(out / "plan.patch.yaml"),))),
                           verify_trace, catalog_dirs, seed, max_requests)
    doc = {"kind": "tiering-plan", "hwsim_version": __version__, "source": source, "inputs": inputs,
           "pool": pool.name, "expert_bytes": size, "device_experts": int(freq.size), "plan": result.as_dict(),
           "simulated_backing": backing, "simulated_fetch_s_per_token": expected_fetch_s(freq, lru_like,
                                                                                         result.cost_s),
           "verification": verified}
    with atomic_text_writer(out / "plan.json") as fh:
        fh.write(json.dumps(doc, indent=1, sort_keys=True, allow_nan=False, default=_json_default) + "\n")
    click.echo(f"{sc.model.name}, pool '{pool.name}': {freq.size} experts on EP rank 0's device "
               f"({len(layers)} MoE layers), {size / 1e6:.1f} MB each")
    click.echo(f"solver {solver}, time limit {time_limit_s:g} s: {result.report.describe()}")
    click.echo("tiers: " + ", ".join(f"{t} {counts[t]} experts (cost {c * 1e3:.3g} ms per fetch)"
                                     for t, c in zip(TIERS, result.cost_s, strict=True)))
    click.echo(f"expected fetch time per token {result.objective * 1e3:.4g} ms")
    if verified is not None:
        from hwsim.report.plan_placement import verification_text
        click.echo(verification_text(verified))
    click.echo(f"wrote {out}/plan.json, plan.patch.yaml, lru.patch.yaml")

