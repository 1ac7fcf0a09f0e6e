"""``hwsim experts`` commands about expert caches (registered on the group in :mod:`hwsim.cli.experts`).

* ``hwsim experts cache-curve ROUTING.npz --sizes 8,16,32,64``: hit rate against cache size per
  replacement policy, replayed over a recorded routing trace;
* ``hwsim experts cache-curve --model NAME --routing SPEC --tokens N --sizes 1k,2k,4k``: the
  same over a synthetic trace drawn from a routing model.

numpy-backed modules are imported inside the command so that ``hwsim --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.cli.experts import experts
from hwsim.cli.params import catalog_option
from hwsim.errors import SpecError

DEFAULT_POLICIES = "lru,lfu,static,belady,segment"


def parse_sizes(text: str, top_k: int) -> tuple[int, ...]:
    """``--sizes``: ``'8,16,32'`` experts, or multiples of the top-k ``'1k,2k,1.5k'`` (mixed
    allowed); sorted, duplicates dropped."""
    sizes: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        try:
            if part.lower().endswith("k"):
                value = float(part[:-1]) * top_k
                size = round(value)
                if abs(value - size) > 1e-9:
                    raise SpecError(f"{part} x top-{top_k} is not a whole number of experts",
                                    path="--sizes", expected="a multiple giving whole experts",
                                    found=part)
            else:
                size = int(part)
        except ValueError:
            raise SpecError("a cache size is a number of experts or a multiple of the top-k",
                            path="--sizes", expected="e.g. '8,16,32' or '1k,2k,4k'",
                            found=part or text) from None
        if size < 0:
            raise SpecError("a cache size cannot be negative", path="--sizes", found=part)
        sizes.add(size)
    return tuple(sorted(sizes))


def parse_policies(text: str) -> tuple[str, ...]:
    """``--policies``: comma-separated names from the replay policies, in the order given."""
    from hwsim.perf.expert_cache import REPLAY_POLICIES

    out: list[str] = []
    for name in (p.strip().lower() for p in text.split(",")):
        if name not in REPLAY_POLICIES:
            raise SpecError(f"unknown cache policy '{name}'", path="--policies",
                            expected="some of " + ", ".join(REPLAY_POLICIES), found=name)
        if name not in out:
            out.append(name)
    return tuple(out)


@experts.command("cache-curve")
@click.argument("routing_file", metavar="[ROUTING.npz]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sizes", "sizes_text", required=True,
              help="Cache sizes: experts ('8,16,32,64') or multiples of the top-k ('1k,2k,4k').")
@click.option("--policies", "policies_text", default=DEFAULT_POLICIES, show_default=True,
              help="Some of lru, lfu, fifo, static, window, belady, segment.")
@click.option("--scope", type=click.Choice(["layer", "device"]), default="layer", show_default=True,
              help="A cache per MoE layer, or one shared by every layer of the device.")
@click.option("--tokens-per-step", type=click.IntRange(min=1), default=1, show_default=True,
              help="Tokens per engine step (1: batch-1 decode); a step fetches a missed expert once.")
@click.option("--window", type=click.IntRange(min=1), default=4, show_default=True,
              help="Steps the window policy remembers.")
@click.option("--segment-tokens", type=click.IntRange(min=1), default=16, show_default=True,
              help="Segment length of the segment-cache bound (SCH).")
@click.option("--warm", is_flag=True, help="Start with the most popular experts resident (else empty).")
@click.option("--warmup-tokens", type=click.IntRange(min=0), default=0, show_default=True,
              help="Leading tokens only counted for popularity (static, --warm), not replayed; "
                   "0: popularity from the whole trace (an oracle).")
@click.option("--layers", type=click.IntRange(min=1), default=None,
              help="MoE layers: the first N recorded ones of a file, or N sampled  [default: all]")
@click.option("--model", "model_name", default=None, help="Catalog model of a synthetic trace.")
@click.option("--routing", "routing_text", default=None,
              help="Routing model of a synthetic trace: 'zipf,skew=1.1,locality.reuse=0.3', ...  "
                   "[default: uniform]")
@click.option("--tokens", type=click.IntRange(min=1), default=None, help="Tokens of a synthetic trace.")
@click.option("--sequence-tokens", type=click.IntRange(min=1), default=None,
              help="Tokens per sequence of a synthetic trace  [default: one sequence]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of a synthetic trace.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for cache_curve.csv (and cache_curve.png with --plot).")
@click.option("--plot", is_flag=True, help="Also draw cache_curve.png (needs -o).")
@catalog_option
def cache_curve_cmd(routing_file: Path | None, sizes_text: str, policies_text: str, scope: str,
                    tokens_per_step: int, window: int, segment_tokens: int, warm: bool,
                    warmup_tokens: int, layers: int | None, model_name: str | None,
                    routing_text: str | None, tokens: int | None, sequence_tokens: int | None,
                    seed: int, out_dir: Path | None, plot: bool, catalog_dirs: tuple[str, ...]) -> None:
    """Expert-cache hit rate against cache size, per replacement policy.

    Replays a routing trace (per-token expert ids) through an expert cache of each size and
    policy: LRU, LFU, FIFO, static-hot, a sliding window of recent steps, Belady's optimum
    (an upper bound) and the segment-cache bound (SCH) of "Not All Models Suit Expert
    Offloading" (Liang et al., 2025). A missed expert is fetched once per step.

    \b
    Examples:
      hwsim experts cache-curve routing.npz --sizes 1k,2k,3k,4k -o out/ --plot
      hwsim experts cache-curve --model olmoe-1b-7b --routing 'zipf,skew=0.4,locality.reuse=0.3' \\
          --tokens 100000 --sequence-tokens 2048 --sizes 8,16,24,32 --policies lru,belady
    """
    import numpy as np

    from hwsim.perf.expert_cache import cache_curve

    if plot and out_dir is None:
        raise SpecError("--plot writes cache_curve.png into the -o folder; give -o DIR", path="--plot")
    policies = parse_policies(policies_text)
    trace, where = _load_trace(routing_file, model_name, routing_text, tokens, sequence_tokens,
                               layers, seed, catalog_dirs)
    ids = trace.ids if layers is None or routing_file is None else trace.ids[:, :layers]
    sizes = parse_sizes(sizes_text, trace.top_k)
    if warmup_tokens >= trace.tokens:
        raise SpecError(f"the trace has {trace.tokens:,} tokens: nothing left after the warm-up",
                        path="--warmup-tokens", expected=f"fewer than {trace.tokens:,}",
                        found=warmup_tokens)
    curve = cache_curve(np.ascontiguousarray(ids), trace.experts, sizes, policies, scope=scope,
                        tokens_per_step=tokens_per_step, window=window,
                        segment_tokens=segment_tokens, warm=warm, warmup_tokens=warmup_tokens,
                        sequence_starts=trace.sequence_starts)
    from hwsim.report.cache_curve import curve_table, plot_curve, write_curve_csv

    per = "per MoE layer" if scope == "layer" else "per device (all layers)"
    click.echo(f"{where}: {curve.tokens:,} tokens x {curve.layers} MoE layers x top-{curve.top_k} "
               f"of {curve.experts} experts")
    click.echo(f"expert cache {per}, {tokens_per_step} token(s) per step, "
               f"{'warm' if warm else 'empty'} start"
               + (f", popularity from the first {warmup_tokens:,} tokens" if warmup_tokens
                  else ", popularity from the whole trace"))
    click.echo("")
    click.echo(curve_table(curve))
    if out_dir is not None:
        written = [write_curve_csv(curve, out_dir / "cache_curve.csv")]
        if plot:
            written.append(plot_curve(curve, out_dir / "cache_curve.png", title=where))
        for path in written:
            click.echo(f"wrote {path}")


def _load_trace(routing_file: Path | None, model_name: str | None, routing_text: str | None,
                tokens: int | None, sequence_tokens: int | None, layers: int | None, seed: int,
                catalog_dirs: tuple[str, ...]):                          # -> (RoutingTrace, str)
    """The routing trace to replay: read from a file, or drawn from a routing model."""
    if routing_file is not None:
        if model_name is not None or routing_text is not None or tokens is not None:
            raise SpecError("give a routing trace file or --model/--routing/--tokens, not both",
                            path="ROUTING", found=str(routing_file))
        from hwsim.workload.routing_trace import read_routing_trace

        trace = read_routing_trace(routing_file)
        if layers is not None and layers > trace.num_layers:
            raise SpecError(f"the trace records {trace.num_layers} MoE layers", path="--layers",
                            expected=f"at most {trace.num_layers}", found=layers)
        if trace.tokens == 0:
            raise SpecError("the routing trace holds no tokens", file=str(routing_file))
        return trace, routing_file.name
    if model_name is None or tokens is None:
        raise SpecError("give a routing trace file, or --model and --tokens for a synthetic trace",
                        path="ROUTING", expected="hwsim experts cache-curve ROUTING.npz ... or "
                        "--model NAME --routing SPEC --tokens N ...")
    import numpy as np

    from hwsim.cli.experts_routing import parse_routing
    from hwsim.io.load import load_model
    from hwsim.spec.deployment import RoutingRef
    from hwsim.workload.routing import make_routing
    from hwsim.workload.routing_stream import token_trace

    model = load_model(model_name, catalog_dirs)
    if model.moe is None:
        raise SpecError(f"{model.name} is dense: it has no experts to cache", path="--model")
    ref = parse_routing(routing_text) if routing_text is not None else RoutingRef()
    routing = make_routing(ref, model.moe, path="--routing")
    n_layers = layers if layers is not None else model.num_moe_layers
    trace = token_trace(routing, np.random.default_rng(seed), tokens, n_layers,
                        sequence_tokens=sequence_tokens)
    if routing_text is not None and routing_text.strip().lower().endswith((".yaml", ".yml", ".json")):
        return trace, f"{model.name}, routing {Path(routing_text.strip()).name}"
    params = ",".join(_flat(ref.params))
    return trace, f"{model.name}, {ref.model}{'(' + params + ')' if params else ''} routing"


def _flat(params: dict, prefix: str = "") -> list[str]:
    """``{'skew': 1.1, 'locality': {'reuse': 0.3}}`` -> ``['skew=1.1', 'locality.reuse=0.3']``."""
    out: list[str] = []
    for key, value in params.items():
        if isinstance(value, dict):
            out += _flat(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={value}")
    return out
