"""Expert-cache benchmarks: replay rate of the cache kernels, cost of the simulator's per-step cache.

Run: taskset -c 0 python benchmarks/bench_cache.py [--tokens 1000000]
Target (issue "MoE depth"): >= 20M accesses/s (one access = one token-expert pick) for LRU
replay on one core, e.g. 1M tokens x 16 layers x top-8.

The trace is OLMoE-shaped (64 experts, top-8, 16 MoE layers) with Zipf skew 0.4 and temporal
locality (reuse 0.3), drawn by hwsim's routing model; to keep the benchmark short a 125,000
token draw is tiled to the requested length (the cache sees the same mix of hits and misses).
Each rate is the best and worst of three runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def trace(tokens: int) -> np.ndarray:
    from hwsim.io.load import load_model
    from hwsim.spec.deployment import RoutingRef
    from hwsim.workload.routing import make_routing
    from hwsim.workload.routing_stream import token_trace

    moe = load_model("olmoe-1b-7b", ()).moe
    routing = make_routing(RoutingRef(model="zipf", params={"skew": 0.4, "locality": {"reuse": 0.3}}), moe)
    base = token_trace(routing, np.random.default_rng(0), min(tokens, 125_000), 16,
                       sequence_tokens=2048).ids
    reps = -(-tokens // base.shape[0])
    return np.ascontiguousarray(np.tile(base, (reps, 1, 1))[:tokens])


def timed(fn, repeats: int = 3) -> tuple[float, float]:
    fn()                                            # compile / load the cached machine code
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), max(times)


def main() -> None:
    from hwsim.perf.expert_cache import ExpertCache, cache_curve, replay_trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1_000_000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    ids = trace(args.tokens)
    n = ids.size
    print(f"trace: {ids.shape[0]:,} tokens x 16 layers x top-8 = {n / 1e6:.0f}M accesses "
          f"(built in {time.perf_counter() - t0:.1f} s)")

    cases = [("lru", "layer", 16), ("lru", "device", 256), ("fifo", "layer", 16),
             ("window", "layer", 16), ("static", "layer", 16)]
    for policy, scope, cap in cases:
        lo, hi = timed(lambda p=policy, s=scope, c=cap: replay_trace(ids, 64, c, p, scope=s, window=4))
        rate = replay_trace(ids, 64, cap, policy, scope=scope, window=4).hit_rate
        print(f"{policy:7s} {scope:6s} capacity {cap:4d}: {n / hi / 1e6:5.1f}-{n / lo / 1e6:5.1f}M accesses/s "
              f"({lo:.2f}-{hi:.2f} s), hit rate {rate:.3f}")

    small = ids[:200_000]
    for policy in ("lfu", "belady", "segment"):
        lo, hi = timed(lambda p=policy: replay_trace(small, 64, 16, p))
        print(f"{policy:7s} layer  capacity   16: {small.size / hi / 1e6:5.1f}-{small.size / lo / 1e6:5.1f}M "
              f"accesses/s (200k tokens)")

    for batch in (1, 16, 256):
        cache = ExpertCache(16, 64, 16, "lru")
        steps = min(20_000, ids.shape[0] // batch)
        blocks = [ids[i * batch:(i + 1) * batch] for i in range(steps)]
        cache.step(blocks[0])
        t0 = time.perf_counter()
        for block in blocks:
            cache.step(block)
        us = (time.perf_counter() - t0) / steps * 1e6
        print(f"ExpertCache.step, LRU, 16 layers, batch {batch:3d}: {us:6.1f} us per step")

    sizes = (8, 16, 24, 32, 48)
    policies = ("lru", "lfu", "static", "belady", "segment")
    lo, _ = timed(lambda: cache_curve(ids[:100_000], 64, sizes, policies), repeats=1)
    print(f"cache_curve, 100k tokens, 5 sizes x 5 policies: {lo:.1f} s")


if __name__ == "__main__":
    main()
