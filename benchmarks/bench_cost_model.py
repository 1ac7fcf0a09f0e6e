"""Cost-model benchmarks: step-cost evaluations per second, estimate wall time.

Run: python benchmarks/bench_cost_model.py
Target (issue "Cost model"): >= 100,000 step-cost evaluations per second on one core for a
DeepSeek-V3 decode step (61 layers, EP, batch 128).
"""

from __future__ import annotations

import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def rate(fn, seconds: float = 2.0) -> float:
    fn()  # warm (compilation, caches)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(1000):
            fn()
        n += 1000
    return n / (time.perf_counter() - t0)


def main() -> None:
    from hwsim.io.scenario import load_scenario
    from hwsim.perf.batch import Batch
    from hwsim.perf.estimate import estimate
    from hwsim.perf.step import StepCost

    sc = load_scenario(REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml")
    pool = sc.deployment.pools[0]
    t0 = time.perf_counter()
    step = StepCost(sc.cluster, sc.model, sc.deployment, pool)
    print(f"StepCost build (plan + collective fits), DeepSeek-V3 EP32 on 4x DGX H100: "
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms ")
    for seqs, label in ((128, "batch 128 per replica (4 per GPU)"), (128 * 32, "batch 128 per GPU (4096 per replica)")):
        b = Batch.decode(seqs, 2048)
        fast = rate(lambda b=b: step.time_s(b))
        full = rate(lambda b=b: step(b), seconds=1.0)
        print(f"decode step, {label}: time_s {fast:,.0f} evals/s ({1e6 / fast:.1f} us), "
              f"full breakdown {full:,.0f}/s; step = {step.time_s(b) * 1e3:.2f} ms")
    mixed = Batch(prefill_new_tokens=[4096] * 8, decode_kv_tokens=[2048] * 4096)
    print(f"mixed step (8 prefill chunks + 4096 decode): {rate(lambda: step.time_s(mixed)):,.0f} evals/s")
    t0 = time.perf_counter()
    estimate(sc.cluster, sc.model, sc.deployment, input_tokens=1024, output_tokens=256)
    print(f"estimate (footprint + steady step + collectives), same scenario: {(time.perf_counter() - t0) * 1e3:.0f} ms")
    from hwsim.workload.routing import inclusion_table

    off = load_scenario(REPO / "examples" / "mixtral-offload-24gb" / "lru.yaml")
    inc = inclusion_table(off.deployment.experts.routing, off.model.moe, off.model.num_moe_layers)
    estimate(off.cluster, off.model, off.deployment, input_tokens=32, output_tokens=256, expert_inclusion=inc)
    runs = 10
    t0 = time.perf_counter()
    for _ in range(runs):
        estimate(off.cluster, off.model, off.deployment, input_tokens=32, output_tokens=256, expert_inclusion=inc)
    print(f"estimate with expected expert-offload misses (Mixtral, LRU cache, 32 layers): "
          f"{(time.perf_counter() - t0) / runs * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
