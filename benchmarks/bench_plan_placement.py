"""Placement planner benchmark: DeepSeek-V3 (58 MoE layers x 256 experts) on 32 and 64 GPUs.

Run: taskset -c 0,1 python benchmarks/bench_plan_placement.py
Target (issue "Planners"): a placement for DeepSeek-V3 on 64 GPUs with 32 redundant experts in
under 30 s at <= 1% proven gap on 2 cores, and the plan beats EPLB-style greedy on max/mean
load on a skewed routing trace.

64 GPUs x whole slots need 256 + R divisible by 64 (the placement file format has full slots on
every rank), so the 64-GPU case runs with 64 redundant experts (5 slots each); 32 redundant
experts are the 32-GPU case (9 slots each, DeepSeek's prefill layout). Loads: the DeepSeek-V3
example's Zipf 1.1 routing model (same expected loads in every layer, up to a permutation),
and a per-layer skewed draw (Gamma(0.5) expert popularity, a different draw per layer, the
shape of measured router histograms). Each line prints the wall time, the worst layer's proven
gap and the mean busiest / mean device load against EPLB's (global policy, one node).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def zipf_loads() -> np.ndarray:
    from hwsim.cli.experts_placement import _expected_loads
    from hwsim.io.scenario import load_scenario

    sc = load_scenario(ROOT / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml")
    return _expected_loads(sc, None)[1]


def skewed_loads(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 1.0, size=(58, 256))


def run(name: str, loads: np.ndarray, ranks: int, redundant: int) -> None:
    from hwsim.solvers.placement import device_loads, plan_placement

    from hwsim.workload.placement import eplb

    t0 = time.perf_counter()
    plan = plan_placement(loads, ranks, redundant, time_limit_s=30, gap=0.01)
    wall = time.perf_counter() - t0
    ours = np.mean([p.max_over_mean for p in plan.layers])
    theirs = np.mean([device_loads(w, eplb(w, ranks, redundant=redundant)).max() / (w.sum() / ranks) for w in loads])
    milp = sum(p.method == "milp" for p in plan.layers)
    print(f"{name:<26} {ranks:>3} GPUs +{redundant:<3} {wall:6.2f} s  gap {plan.gap:6.2%}  "
          f"max/mean plan {ours:.4f}  eplb {theirs:.4f}  ({milp} layers by the MILP)")


def main() -> None:
    zipf = zipf_loads()
    skew = skewed_loads()
    for ranks, redundant in ((32, 32), (64, 64)):
        run("zipf 1.1 (model)", zipf, ranks, redundant)
        run("gamma 0.5 per layer", skew, ranks, redundant)


if __name__ == "__main__":
    main()
