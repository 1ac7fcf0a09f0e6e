"""Simulator benchmark: replay the full one-hour Azure conversation trace on DeepSeek-V3.

Run: python benchmarks/bench_simulator.py [--shared ../shared/data] [--max-requests N]
    [--routing-trace routing.npz] [--large-batch [--on-demand]]
Target (issues "Serving simulator" and "MoE depth"): at least 200x real time on one core for
19,366 requests on DeepSeek-V3, 32x H100, EP32, with the deployment's Zipf routing or with
trace-driven routing (``--routing-trace``: an ids trace, e.g. from ``hwsim experts sample``,
replayed token by token); report events per second, wall time and peak memory.

``--large-batch`` replays instead an offline run whose batch holds over a thousand sequences
per step: the TensorRT-LLM perf-overview Qwen3-235B 128/2048 row on 8x H100 (3,000 requests
queued at time 0, KV reserved to completion, trtllm-bench's limits), where the per-sequence work
of each step (scheduling, token bookkeeping) dominates. ``--on-demand`` runs it with vLLM-style
on-demand KV instead (blocks as sequences grow, preemption when none is free).
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--max-requests", type=int, default=None)
    parser.add_argument("--trace-memory", action="store_true", help="measure peak Python memory (slower)")
    parser.add_argument("--large-batch", action="store_true",
                        help="replay the Qwen3-235B perf-overview offline run (batch > 1,000) instead")
    parser.add_argument("--on-demand", action="store_true", help="--large-batch with on-demand KV")
    parser.add_argument("--routing-trace", type=Path, default=None,
                        help="replay this routing trace (npz ids) instead of the deployment's routing model")
    args = parser.parse_args()
    if args.large_batch:
        large_batch(on_demand=args.on_demand)
        return

    from hwsim.io.scenario import load_scenario
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate
    from hwsim.workload.importers import import_requests

    sc = load_scenario(REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml")
    if args.routing_trace is not None:
        from dataclasses import replace

        from hwsim.spec.deployment import RoutingRef

        ref = RoutingRef(model="trace", params={"file": str(args.routing_trace.resolve()), "mode": "ids"})
        sc = replace(sc, deployment=replace(sc.deployment, experts=replace(sc.deployment.experts, routing=ref)))
        print(f"routing: trace {args.routing_trace}")
    trace = args.shared / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
    if args.trace_memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    res = simulate(sc, import_requests(trace), seed=0, max_requests=args.max_requests,
                   imbalance_sampler_factory=imbalance_sampler_factory(sc))  # as the CLI does
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if args.trace_memory else None
    n = len(res.requests["request_id"])
    finished = int((res.requests["status"] == 0).sum())
    print(f"requests {n} ({finished} finished), steps {len(res.steps['start_s'])}, events {res.events}")
    print(f"simulated {res.sim_time_s:,.0f} s in {wall:,.1f} s wall: {res.sim_time_s / wall:,.0f}x real time, "
          f"{res.events / wall:,.0f} events/s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:,.0f} MiB" + (f", peak traced Python memory {peak / 1e6:,.1f} MB" if peak else ""))


def large_batch(*, on_demand: bool = False) -> None:
    from dataclasses import replace

    from hwsim.io.scenario import load_scenario
    from hwsim.sim.routing import imbalance_sampler_factory
    from hwsim.sim.run import simulate
    from hwsim.validate.trtllm_bench import with_bench_limits
    from hwsim.workload.request import Request

    sc = load_scenario(REPO / "validation" / "scenarios" / "trtllm-perf-overview-qwen3-235b-h100.yaml")
    sc = with_bench_limits(sc, input_tokens=128, output_tokens=2048)
    if on_demand:
        pools = tuple(replace(p, scheduler=replace(p.scheduler, kv_reservation="on-demand"))
                      for p in sc.deployment.pools)
        sc = replace(sc, deployment=replace(sc.deployment, pools=pools))
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=128, output_tokens=2048) for i in range(3000)]
    t0 = time.perf_counter()
    res = simulate(sc, reqs, seed=0, imbalance_sampler_factory=imbalance_sampler_factory(sc))
    wall = time.perf_counter() - t0
    steps = len(res.steps["start_s"])
    seqs = int(res.steps["decode_seqs"].sum())
    print(f"steps {steps}, decode sequence-steps {seqs:,} (mean batch {seqs / steps:,.0f}), events {res.events}")
    print(f"simulated {res.sim_time_s:,.0f} s in {wall:,.1f} s wall: {res.sim_time_s / wall:,.0f}x real time, "
          f"{wall / seqs * 1e6:.2f} us per sequence-step")


if __name__ == "__main__":
    main()
