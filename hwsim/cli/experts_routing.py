"""``hwsim experts`` commands about expert routing (registered on the group in :mod:`hwsim.cli.experts`).

* ``hwsim experts sample CLUSTER.yaml | --model NAME [--routing SPEC] --tokens N -o routing.npz``:
  a synthetic routing trace (per-token expert ids) from a routing model;
* ``hwsim experts fit COUNTS.csv [--select k=v,...] [--top-k K] [--pairs PAIRS.csv.gz]``: Zipf
  skew per layer fitted to recorded counts (and co-activation strength from pair counts);
* ``hwsim experts stats routing.npz``: per-layer imbalance, hottest share, token-to-token reuse.

numpy-backed modules are imported inside the commands so that ``hwsim --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hwsim.cli.experts import experts
from hwsim.cli.params import catalog_option
from hwsim.errors import SpecError

if TYPE_CHECKING:
    from hwsim.spec.deployment import RoutingRef

TRACE_SUFFIXES = (".npz", ".parquet", ".csv", ".csv.gz")


def parse_routing(text: str) -> RoutingRef:
    """``--routing``: ``'zipf,skew=1.1,locality.reuse=0.3'``, a YAML/JSON mapping
    (``'{model: zipf, skew: 1.1}'``), a file holding one, or a routing trace file."""
    from hwsim.io.source import parse_text, read_document
    from hwsim.spec.deployment import RoutingRef

    where = "--routing"
    stripped = text.strip()
    path = Path(stripped)
    if stripped.lower().endswith(TRACE_SUFFIXES):
        if not path.is_file():
            raise SpecError("routing trace file not found", path=where, found=text)
        return RoutingRef(model="trace", params={"file": str(path)})
    if stripped.startswith("{"):
        data: Any = parse_text(stripped, where).data
    elif stripped.lower().endswith((".yaml", ".yml", ".json")):
        if not path.is_file():
            raise SpecError("routing model file not found", path=where, found=text)
        data = read_document(path).data
        data = data.get("routing", data) if isinstance(data, dict) and "model" not in data else data
    else:
        name, *pairs = [p.strip() for p in stripped.split(",")]
        data = {"model": name}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise SpecError("routing parameters are key=value", path=where,
                                expected="e.g. 'zipf,skew=1.1' or 'uniform,locality.reuse=0.3'", found=pair)
            node = data
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = parse_text(value, where).data
    if not isinstance(data, dict) or not isinstance(data.get("model"), str):
        raise SpecError("a routing model needs a model name", path=where,
                        expected="'zipf,skew=1.1' or '{model: zipf, skew: 1.1}'", found=text)
    params = {k: v for k, v in data.items() if k != "model"}
    return RoutingRef(model=data["model"], params=params)


def _describe(ref: RoutingRef) -> str:
    params = ", ".join(f"{k}={v}" for k, v in ref.params.items())
    return f"{ref.model}({params})" if params else ref.model


# ---------------------------------------------------------------- sample


@experts.command("sample")
@click.argument("cluster_file", metavar="[CLUSTER.yaml]", required=False, type=click.Path(dir_okay=False))
@click.option("--model", "model_name", default=None, help="A catalog model (instead of CLUSTER.yaml).")
@click.option("--routing", "routing_text", default=None,
              help="Routing model: 'zipf,skew=1.1', 'uniform,locality.reuse=0.3', '{model: mixture, ...}', "
                   "a YAML file or a routing trace  [default: the deployment's, or uniform]")
@click.option("--tokens", type=click.IntRange(min=1), required=True, help="Tokens to sample.")
@click.option("--sequence-tokens", type=click.IntRange(min=1), default=None,
              help="Tokens per sequence (the last one shorter)  [default: one sequence]")
@click.option("--layers", type=click.IntRange(min=1), default=None,
              help="MoE layers per token  [default: the model's MoE layers]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the draws.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="Routing trace to write: .npz or .parquet (atomically).")
@catalog_option
def sample(cluster_file: str | None, model_name: str | None, routing_text: str | None, tokens: int,
           sequence_tokens: int | None, layers: int | None, seed: int, output: str,
           catalog_dirs: tuple[str, ...]) -> None:
    """Sample a routing trace (per-token expert ids) from a routing model.

    \b
    Examples:
      hwsim experts sample examples/dgx-h100-deepseek-v3/cluster.yaml --tokens 4096 -o routing.npz
      hwsim experts sample --model olmoe-1b-7b --routing 'zipf,skew=1.1,locality.reuse=0.3' \\
          --tokens 100000 --sequence-tokens 2048 -o olmoe.npz
    """
    import numpy as np

    from hwsim.spec.deployment import RoutingRef
    from hwsim.workload.routing import make_routing
    from hwsim.workload.routing_stream import token_trace
    from hwsim.workload.routing_summary import routing_trace_stats
    from hwsim.workload.routing_trace import write_routing_trace

    if (cluster_file is None) == (model_name is None):
        raise SpecError("give a cluster file or --model (one of them)", path="--model",
                        expected="hwsim experts sample CLUSTER.yaml ... or --model NAME ...")
    if cluster_file is not None:
        from hwsim.io.scenario import load_scenario

        scenario = load_scenario(cluster_file, catalog_dirs)
        model = scenario.model
        ref = scenario.deployment.experts.routing
        where = "deployment.experts.routing"
    else:
        from hwsim.io.load import load_model

        model = load_model(str(model_name), catalog_dirs)
        ref = RoutingRef()
        where = "--routing"
    if routing_text is not None:
        ref, where = parse_routing(routing_text), "--routing"
    if model.moe is None:
        raise SpecError(f"{model.name} is dense: it has no experts to route", path="model")
    routing = make_routing(ref, model.moe, path=where)
    n_layers = layers if layers is not None else model.num_moe_layers
    trace = token_trace(routing, np.random.default_rng(seed), tokens, n_layers, sequence_tokens=sequence_tokens)
    write_routing_trace(output, trace)
    stats = routing_trace_stats(trace)
    reuse = stats.mean_reuse
    click.echo(f"sampled {tokens:,} tokens x {n_layers} MoE layers x top-{trace.top_k} of {model.moe.num_experts} "
               f"experts ({len(trace.sequence_starts):,} sequences) from {_describe(ref)} on {model.name}")
    click.echo(f"  expert load max/mean {stats.mean_imbalance:.2f} (mean over layers), hottest share "
               f"{max(s.hottest_share for s in stats.per_layer):.1%}"
               + (f", reuse {reuse:.1%}" if reuse is not None else ""))
    click.echo(f"wrote {output}")


# ---------------------------------------------------------------- fit


@experts.command("fit")
@click.argument("counts_file", metavar="COUNTS.csv", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--select", "select_text", default=None,
              help="Keep rows with these column values, e.g. model=olmoe,domain=arxiv,selection=topk.")
@click.option("--top-k", type=click.IntRange(min=1), default=None,
              help="Experts per token of the counted model (top-1 rows use 1).")
@click.option("--experts", "num_experts", type=click.IntRange(min=2), default=None,
              help="Experts of the model  [default: the largest expert id + 1]")
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Cross-layer pair counts (layer_from, layer_to, expert_from, expert_to, count): also fit "
                   "the co-activation strength.")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of a table.")
def fit(counts_file: Path, select_text: str | None, top_k: int | None, num_experts: int | None,
        pairs_file: Path | None, as_json: bool) -> None:
    """Fit a Zipf skew per layer to recorded expert counts (CSV: layer, expert, count, and any
    key columns such as model, domain, selection).

    \b
    Example:
      hwsim experts fit ../shared/data/olmoe-routing-counts/expert_counts.csv \\
          --select model=olmoe,selection=topk --top-k 8 --experts 64
    """
    from hwsim.workload.routing_fit import fit_coactivation, fit_count_table, read_pair_groups
    from hwsim.workload.routing_trace import parse_select

    select = parse_select(select_text)
    rows = fit_count_table(counts_file, top_k=top_k, select=select, experts=num_experts)
    pairs = []
    if pairs_file is not None:
        for key, layer_pairs in sorted(read_pair_groups(pairs_file, select).items()):
            for (lf, lt), matrix in sorted(layer_pairs.items()):
                result, _ = fit_coactivation(matrix)
                pairs.append({**dict(key), "layer_from": lf, "layer_to": lt, "strength": result.strength,
                              "tv_independent": result.tv_independent, "pairs": result.pairs})
    if as_json:
        click.echo(json.dumps({"file": str(counts_file), "select": select, "fits": [r.to_dict() for r in rows],
                               "coactivation": pairs}, indent=2))
        return
    keys = [k for k, _ in rows[0].key] if rows else []
    head = "  ".join(f"{k:<10}" for k in keys)
    click.echo(f"{head}  layer   skew  ls-slope     TV  max err  hottest (recorded/fitted)")
    for r in rows:
        f = r.fit
        cols = "  ".join(f"{v:<10}" for _, v in r.key)
        click.echo(f"{cols}  {r.layer:>5}  {f.skew:5.3f}  {f.ls_skew:8.3f}  {f.tv:5.3f}  {f.max_share_error:7.4f}  "
                   f"{f.hottest_share:6.1%} / {f.fitted_hottest_share:6.1%}")
    if pairs:
        click.echo("\nco-activation (rank-by-rank pairs):")
        for p in pairs:
            cols = "  ".join(f"{v:<10}" for k, v in p.items() if k not in ("layer_from", "layer_to", "strength",
                                                                            "tv_independent", "pairs"))
            click.echo(f"{cols}  {p['layer_from']:>2} -> {p['layer_to']:<2}  strength {p['strength']:.3f}  "
                       f"TV from independent {p['tv_independent']:.3f}")


# ---------------------------------------------------------------- stats


@experts.command("stats")
@click.argument("trace_file", metavar="ROUTING.npz", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ep", type=click.IntRange(min=1), default=None,
              help="Also the busiest / mean expert-parallel rank over this many ranks (contiguous placement).")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print JSON instead of a table.")
def stats(trace_file: Path, ep: int | None, as_json: bool) -> None:
    """Per-layer statistics of a routing trace (.npz or .parquet ids): expert-load imbalance
    (busiest / mean), the hottest expert's share, and reuse between consecutive tokens.

    \b
    Example:
      hwsim experts stats routing.npz --ep 8
    """
    from hwsim.workload.routing_summary import routing_trace_stats
    from hwsim.workload.routing_trace import read_routing_trace

    trace = read_routing_trace(trace_file)
    if ep is not None and ep > trace.experts:
        raise SpecError(f"--ep {ep} exceeds the trace's {trace.experts} experts", path="--ep",
                        expected=f"at most {trace.experts}", found=ep)
    result = routing_trace_stats(trace, ranks=ep)
    if as_json:
        click.echo(json.dumps({"file": str(trace_file), **result.to_dict()}, indent=2))
        return
    click.echo(f"{trace_file}: {result.tokens:,} tokens in {result.sequences:,} sequences, {result.layers} MoE "
               f"layers, top-{result.top_k} of {result.experts} experts"
               + (f", {result.zero_share:.1%} zero-expert picks" if result.zero_share else ""))
    click.echo(f"{'layer':>5}  {'max/mean':>8}" + (f"  {'rank max/mean':>13}" if ep else "")
               + f"  {'hottest':>7}  {'reuse':>6}")
    for s in result.per_layer:
        reuse = f"{s.reuse:6.1%}" if s.reuse is not None else f"{'-':>6}"
        rank = f"  {s.rank_imbalance:13.3f}" if s.rank_imbalance is not None else ""
        click.echo(f"{s.layer:>5}  {s.imbalance:8.3f}{rank}  {s.hottest_share:7.1%}  {reuse}")
    mean_reuse = result.mean_reuse
    click.echo(f"mean   {result.mean_imbalance:8.3f}" + ("" if mean_reuse is None else f"  reuse {mean_reuse:.1%}"))
