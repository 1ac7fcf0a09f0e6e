"""Routing benchmarks: token-expert assignments per second for every routing model and the stream.

Run: taskset -c 0 python benchmarks/bench_routing.py
Target (issue "MoE depth"): >= 10M token-expert assignments/s for sampling on one core.

An assignment is one (token, layer, pick): a token routed over L layers with top-k makes L x k.
Each figure is the best of a few repeats (the reference VM is noisy).
"""

from __future__ import annotations

import time

import numpy as np

from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_stream import RoutingStream, token_trace

E, K, LAYERS = 256, 8, 58   # DeepSeek-V3's routed experts, top-k and MoE layers
DSV3 = MoESpec(num_experts=E, top_k=K, expert_ffn_dim=2048)
DSV3_GROUPED = MoESpec(num_experts=E, top_k=K, expert_ffn_dim=2048, num_expert_groups=8, topk_groups=4)
MIX = {"components": [{"weight": 0.6, "model": "zipf", "skew": 1.2},
                      {"weight": 0.4, "model": "zipf", "skew": 0.5, "seed_permutation": 7}]}
MODELS = {
    "uniform": (RoutingRef(), DSV3),
    "zipf 1.1": (RoutingRef(model="zipf", params={"skew": 1.1}), DSV3),
    "group-limited (4 of 8 groups), zipf 1.1": (RoutingRef(model="zipf", params={"skew": 1.1}), DSV3_GROUPED),
    "node-limited (2 of 8 nodes), zipf 1.1": (
        RoutingRef(model="zipf", params={"skew": 1.1, "max_nodes": 2, "nodes": 8}), DSV3),
    "mixture (zipf 1.2 + zipf 0.5)": (RoutingRef(model="mixture", params=MIX), DSV3),
}


def best_rate(fn, work: float, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of ``fn()``, as ``work`` per second."""
    fn()  # warm caches (samplers, inclusion tables)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return work / best


def main() -> None:
    print(f"E={E}, top-{K}, {LAYERS} MoE layers; millions of token-expert assignments per second (best of 3)")
    print("\nexact sampling, expert_counts (1M tokens in one layer | 4,096 tokens x 58 layers in one call):")
    for label, (ref, moe) in MODELS.items():
        params = dict(ref.params)
        if ref.model == "mixture":  # exact per-token sampling in every component
            params["components"] = [{**c, "exact_max_tokens": None} for c in params["components"]]
        else:
            params["exact_max_tokens"] = None
        model = make_routing(RoutingRef(model=ref.model, params=params), moe)
        big = best_rate(lambda m=model: m.expert_counts(np.random.default_rng(1), 1_000_000, 1), 1_000_000 * K)
        step = best_rate(lambda m=model: m.expert_counts(np.random.default_rng(1), 4096, LAYERS), 4096 * LAYERS * K)
        print(f"  {label:<42} {big / 1e6:6.1f}M/s | {step / 1e6:6.1f}M/s")

    print("\nper-token ids, token_trace (64 sequences x 256 tokens x 58 layers):")
    for label, ref, moe in [
        ("zipf 1.1, independent tokens", RoutingRef(model="zipf", params={"skew": 1.1}), DSV3),
        ("zipf 1.1 + locality reuse 0.3", RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.3}}), DSV3),
        ("zipf 1.1 + coactivation 0.3", RoutingRef(model="zipf", params={"skew": 1.1, "coactivation": {"strength": 0.3}}),
         DSV3),
        ("zipf 1.1 + locality 0.3 + coactivation 0.3",
         RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.3}, "coactivation": {"strength": 0.3}}),
         DSV3),
        ("group-limited zipf 1.1 + locality 0.3",
         RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.3}}), DSV3_GROUPED),
    ]:
        model = make_routing(ref, moe)
        tokens = 64 * 256 if "group" not in label else 8 * 256
        r = best_rate(lambda m=model, t=tokens: token_trace(m, np.random.default_rng(2), t, LAYERS, sequence_tokens=256),
                      tokens * LAYERS * K, repeats=2)
        print(f"  {label:<46} {r / 1e6:6.2f}M/s")

    print("\nRoutingStream, decode-like: 256 sequences, one token each per step, 58 layers:")
    for label, ref in [("zipf 1.1", RoutingRef(model="zipf", params={"skew": 1.1})),
                       ("zipf 1.1 + locality 0.3", RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.3}})),
                       ("zipf 1.1 + locality 0.3 + coactivation 0.3",
                        RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.3},
                                                         "coactivation": {"strength": 0.3}}))]:
        model = make_routing(ref, DSV3)

        def per_key(m=model, keys=tuple(range(256))) -> None:
            stream = RoutingStream(m, np.random.default_rng(3), LAYERS)
            for _ in range(2):
                for key in keys:
                    stream.ids(key, 1)

        def batched(m=model, keys=tuple(range(256))) -> None:
            stream = RoutingStream(m, np.random.default_rng(3), LAYERS)
            for _ in range(20):
                stream.ids_many(keys, 1)

        one = best_rate(per_key, 512, repeats=2)
        many = best_rate(batched, 20 * 256, repeats=2)
        print(f"  {label:<44} ids(key, 1): {one:7,.0f} tokens/s ({one * LAYERS * K / 1e6:5.2f}M/s); "
              f"ids_many(256 keys, 1): {many:8,.0f} tokens/s ({many * LAYERS * K / 1e6:5.2f}M/s)")

    print("\nstep_counts (the simulator's per-step draw), 256 tokens in one layer:")
    for label, (ref, moe) in MODELS.items():
        model = make_routing(ref, moe)
        rng = np.random.default_rng(4)
        model.step_counts(rng, 256, 0)

        def steps(m=model, g=rng) -> None:
            for _ in range(2000):
                m.step_counts(g, 256, 0)

        r = best_rate(steps, 2000)
        print(f"  {label:<42} {r:9,.0f} steps/s ({r * 256 * K / 1e6:6.1f}M assignments/s)")


if __name__ == "__main__":
    main()
