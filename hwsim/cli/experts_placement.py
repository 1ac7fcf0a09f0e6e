"""``hwsim experts`` commands about expert placement (registered on the group in :mod:`hwsim.cli.experts`).

* ``hwsim experts place CLUSTER.yaml --strategy eplb -o placement.yaml``: a placement file for
  the deployment's expert-parallel pool, from the expected load of every MoE layer (the
  deployment's routing model, or ``--routing`` a routing model file or a routing trace).
* ``hwsim experts loads CLUSTER.yaml``: per MoE layer, the busiest / mean EP-rank load under
  each strategy side by side (and a placement file), expected or sampled at ``--tokens``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from hwsim.cli.experts import experts
from hwsim.cli.params import catalog_option
from hwsim.errors import SpecError

if TYPE_CHECKING:
    from hwsim.spec.deployment import Pool
    from hwsim.spec.scenario import Scenario
    from hwsim.workload.routing_loads import LayeredPlacement

STRATEGY_NAMES = ("contiguous", "round-robin", "eplb")


@experts.command("place")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--strategy", type=click.Choice(STRATEGY_NAMES), default="eplb", show_default=True,
              help="Placement strategy.")
@click.option("--routing", "routing_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Expected loads from this routing model file ({model: zipf, skew: 1.2}) or routing trace "
                   "(.npz, .parquet or .csv, as routing model 'trace') instead of the deployment's routing.")
@click.option("--redundant", type=click.IntRange(min=0), default=None,
              help="Redundant expert slots per MoE layer  [default: the deployment's experts.redundant]")
@click.option("--pool", "pool_name", default=None, help="The pool to place for (default: the one with ep > 1).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Placement file to write (YAML, atomically).")
@catalog_option
def place(cluster_file: str, strategy: str, routing_file: str | None, redundant: int | None, pool_name: str | None,
          output: str, catalog_dirs: tuple[str, ...]) -> None:
    """Write a placement file for the expert-parallel pool of CLUSTER.yaml.

    Use it with experts: {placement: file, placement_file: FILE, redundant: N} in the cluster file.
    """
    from hwsim.io.placement import dump_placement
    from hwsim.io.scenario import load_scenario
    from hwsim.workload.files import atomic_text_writer
    from hwsim.workload.routing_loads import imbalance, rank_loads

    sc = load_scenario(cluster_file, catalog_dirs)
    pool = _ep_pool(sc, pool_name)
    extra = sc.deployment.experts.redundant if redundant is None else redundant
    layers, loads = _expected_loads(sc, routing_file)
    placement = _place(sc, pool, strategy, layers, loads, extra)
    words = ["hwsim experts place", cluster_file, "--strategy", strategy]
    words += ["--routing", routing_file] if routing_file is not None else []
    words += ["--redundant", str(redundant)] if redundant is not None else []
    source = " ".join(shlex.quote(w) if i else w for i, w in enumerate(words))
    table = _compact(placement, layers).to_table(model=sc.model.name, source=source)
    with atomic_text_writer(output) as fh:
        fh.write(dump_placement(table))
    ratios = [imbalance(rank_loads(w, placement.at(layer))) for layer, w in zip(layers, loads, strict=True)]
    click.echo(f"{strategy}: {len(layers)} MoE layers on {table.ep} EP ranks x {table.slots_per_rank} slots "
               f"({extra} redundant); expected device load max/mean: mean {np.mean(ratios):.3f}, "
               f"worst {np.max(ratios):.3f}")
    click.echo(f"wrote {output}")
    if extra != sc.deployment.experts.redundant:
        click.echo(f"note: set experts.redundant: {extra} in {cluster_file} to use this placement")


@experts.command("loads")
@click.argument("cluster_file", metavar="CLUSTER.yaml", type=click.Path(dir_okay=False))
@click.option("--placement", "placement_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Also show this placement file  [default: the deployment's, when placement is file]")
@click.option("--tokens", type=click.IntRange(min=1), default=None,
              help="Sample steps of this many tokens (exact per-token routing) instead of expected loads.")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Steps sampled per layer with --tokens.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the samples.")
@click.option("--routing", "routing_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Routing model file or routing trace for the expected loads (see 'place').")
@click.option("--pool", "pool_name", default=None, help="The pool to show (default: the one with ep > 1).")
@catalog_option
def loads(cluster_file: str, placement_file: str | None, tokens: int | None, samples: int, seed: int,
          routing_file: str | None, pool_name: str | None, catalog_dirs: tuple[str, ...]) -> None:
    """Per-device expert load (busiest / mean EP rank) per MoE layer for each placement strategy.

    Without --tokens the loads are expected ones (the large-batch limit); with --tokens N each
    value is the mean over --samples steps of N tokens, each token routed exactly.
    """
    from hwsim.io.placement import load_placement
    from hwsim.io.scenario import load_scenario
    from hwsim.workload.routing_loads import LayeredPlacement, imbalance, rank_loads

    sc = load_scenario(cluster_file, catalog_dirs)
    pool = _ep_pool(sc, pool_name)
    moe = sc.model.moe
    assert moe is not None  # _ep_pool checked it
    layers, expected = _expected_loads(sc, routing_file)
    redundant = sc.deployment.experts.redundant
    columns: dict[str, LayeredPlacement] = {s: _place(sc, pool, s, layers, expected, redundant)
                                           for s in STRATEGY_NAMES}
    table = sc.placement
    if placement_file is not None:
        table = load_placement(placement_file, num_experts=moe.num_experts, num_moe_layers=sc.model.num_moe_layers)
    if table is not None:
        if table.ep != pool.parallelism.ep:
            raise SpecError(f"the placement has ep={table.ep}; pool '{pool.name}' runs ep={pool.parallelism.ep}",
                            file=placement_file, path="ep", expected=f"ep: {pool.parallelism.ep}", found=table.ep)
        columns["file"] = LayeredPlacement.from_table(table)
    if tokens is None:
        counts = [expected[i][None] for i in range(len(layers))]
        what = "expected loads"
    else:
        routing = _routing_model(sc, routing_file)
        rng = np.random.default_rng(seed)
        drawn = np.stack([routing.expert_counts(rng, tokens, layers) for _ in range(samples)])  # (S, L, E)
        counts = [drawn[:, i, :] for i in range(len(layers))]
        what = f"mean over {samples} steps of {tokens} tokens"
    rows = [[imbalance(rank_loads(c, p.at(layer))) for p in columns.values()]
            for layer, c in zip(layers, counts, strict=True)]
    _print_table(sc, pool, list(columns), layers, np.array(rows), what, redundant)


# ---------------------------------------------------------------------- helpers


def _ep_pool(sc: Scenario, name: str | None) -> Pool:
    if sc.model.moe is None:
        raise SpecError(f"{sc.model.name} is dense: it has no experts to place", path="deployment.model")
    pools = [p for p in sc.deployment.pools if p.parallelism.ep > 1]
    if name is not None:
        match = [p for p in sc.deployment.pools if p.name == name]
        if not match:
            raise SpecError(f"no pool named '{name}'", path="--pool",
                            expected=" or ".join(p.name for p in sc.deployment.pools), found=name)
        if match[0].parallelism.ep <= 1:
            raise SpecError(f"pool '{name}' runs ep=1: there is nothing to place", path="--pool", found=name)
        return match[0]
    if not pools:
        raise SpecError("no pool runs expert parallelism (ep > 1): every rank holds every expert",
                        path="deployment.pools", expected="a pool with parallelism.ep > 1")
    if len({p.parallelism.ep for p in pools}) > 1:
        raise SpecError("pools run different ep; choose one with --pool", path="--pool",
                        expected=" or ".join(p.name for p in pools))
    return pools[0]


def _expected_loads(sc: Scenario, routing_file: str | None) -> tuple[list[int], np.ndarray]:
    """(every MoE layer, (layers, E) expected picks per token of each expert)."""
    routing = _routing_model(sc, routing_file)
    layers = list(range(sc.model.num_moe_layers))
    return layers, np.stack([np.asarray(routing.inclusion(layer), dtype=float) for layer in layers])


def _routing_model(sc: Scenario, routing_file: str | None) -> Any:
    """The deployment's routing model, a routing model file's, or a routing trace's (``model: trace``)."""
    from hwsim.cli.experts_routing import parse_routing
    from hwsim.spec.deployment import RoutingRef
    from hwsim.workload.routing import make_routing

    moe = sc.model.moe
    assert moe is not None
    ref, path = sc.deployment.experts.routing, "deployment.experts.routing"
    if routing_file is not None:
        path = ""
        if Path(routing_file).suffix.lower() in (".yaml", ".yml", ".json"):
            ref = parse_routing(routing_file)
        else:
            ref = RoutingRef(model="trace", params={"file": str(Path(routing_file).resolve())})
    try:
        return make_routing(ref, moe, path=path)
    except SpecError as err:
        if routing_file is None:
            raise
        raise err.with_context(file=routing_file) from None


def _place(sc: Scenario, pool: Pool, strategy: str, layers: list[int], loads: np.ndarray,
           redundant: int) -> LayeredPlacement:
    from hwsim.perf.collectives import Collectives
    from hwsim.perf.plan import PoolGroups
    from hwsim.workload.placement import place_layers

    moe = sc.model.moe
    assert moe is not None
    rank_node = None
    if strategy == "eplb":
        rank_node = Collectives(sc.cluster).rank_nodes(PoolGroups.of(sc.cluster, pool).ep)
    try:
        return place_layers(strategy, loads, layers, pool.parallelism.ep, redundant=redundant, rank_node=rank_node,
                            num_groups=moe.num_expert_groups)
    except ValueError as err:
        raise SpecError(str(err), path="deployment.experts.redundant", found=redundant) from None


def _compact(placement: LayeredPlacement, layers: list[int]) -> LayeredPlacement:
    """Every layer explicit, or one default when all layers share the same slots."""
    from hwsim.workload.routing_loads import LayeredPlacement

    each = {layer: placement.at(layer) for layer in layers}
    first = each[layers[0]]
    assert first.slots is not None
    if all(p.slots is not None and np.array_equal(p.slots, first.slots) for p in each.values()):
        return LayeredPlacement(default=first)
    return LayeredPlacement(layers=each)


def _print_table(sc: Scenario, pool: Pool, names: list[str], layers: list[int], rows: np.ndarray, what: str,
                 redundant: int) -> None:
    click.echo(f"{sc.model.name}, pool '{pool.name}': {pool.parallelism.ep} EP ranks, {redundant} redundant experts; "
               f"busiest / mean EP-rank load per MoE layer ({what})")
    width = max(11, *(len(n) + 2 for n in names))
    click.echo("layer".rjust(6) + "".join(n.rjust(width) for n in names))
    for layer, row in zip(layers, rows, strict=True):
        click.echo(f"{layer:>6}" + "".join(f"{x:{width}.3f}" for x in row))
    click.echo("mean".rjust(6) + "".join(f"{x:{width}.3f}" for x in rows.mean(axis=0)))
    click.echo("worst".rjust(6) + "".join(f"{x:{width}.3f}" for x in rows.max(axis=0)))
