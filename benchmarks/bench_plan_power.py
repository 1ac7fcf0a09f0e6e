"""Benchmark: the power-oversubscription planner (`hwsim plan power`).

Prints (1) the MILP's solve time for synthetic groups x scenarios (CBC, gap 1%), and (2) the
whole command on examples/plan-power (four simulations, the solve, the verifying simulations).

    python benchmarks/bench_plan_power.py [--skip-cli]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from hwsim.solvers.power import ServerGroup, plan_power

ROOT = Path(__file__).resolve().parents[1]


def synthetic(groups: int, scenarios: int, seed: int = 0) -> list[ServerGroup]:
    """Groups of a two-pool deployment at four cap levels; scenarios share a load factor (the
    moment of the trace) with 5% per-group noise, as the planner's time-aligned samples do."""
    rng = np.random.default_rng(seed)
    load = rng.random(scenarios) ** 3                              # mostly decode, rare prefill peaks
    out = []
    for g in range(groups):
        pool, level = divmod(g, 4)
        cap_fraction = 1.0 - 0.15 * level
        base = (3500 + 2500 * load) * (1 + 0.05 * rng.standard_normal(scenarios))
        out.append(ServerGroup(name=f"p{pool}@{level}", pool=f"p{pool}", cap_w=None if level == 0 else 700 * cap_fraction,
                               servers=1.0, tokens_per_s=1000.0 * (1 - 0.05 * level), tdp_power_w=7993.0,
                               power_w=np.minimum(base, 1559 + 1.149 * 8 * 700 * cap_fraction)))
    return out


def bench_milp() -> None:
    print("MILP (CBC, gap 1%, violation 1%, budget 200 kW)")
    for groups, scenarios in ((4, 400), (4, 1000), (8, 400), (8, 1000)):
        gs = synthetic(groups, scenarios)
        pools = {g.pool: 1 for g in gs}
        t0 = time.perf_counter()
        plan = plan_power(gs, budget_w=200e3, violation=0.01, pool_replicas=pools, time_limit_s=120)
        wall = time.perf_counter() - t0
        print(f"  {groups} groups x {scenarios} scenarios: {wall:.2f} s, {plan.servers:g} servers "
              f"(TDP provisioning {plan.tdp_servers}), {plan.solve.status}, gap {plan.solve.gap:.2%}")
        if scenarios <= 400:
            t0 = time.perf_counter()
            raw = plan_power(gs, budget_w=200e3, violation=0.01, pool_replicas=pools, time_limit_s=120, screen=False)
            print(f"    without dominance screening: {time.perf_counter() - t0:.2f} s, {raw.servers:g} servers, "
                  f"{raw.solve.status}, gap {raw.solve.gap:.2%}")


def bench_cli() -> None:
    from click.testing import CliRunner

    from hwsim.cli import main

    with tempfile.TemporaryDirectory() as out:
        args = ["plan", "power", str(ROOT / "examples/plan-power/cluster.yaml"),
                str(ROOT / "workloads/traces/azure-conv-10min.jsonl"), "--domain", "row-a", "--max-servers", "64",
                "--max-requests", "1000", "-o", out]
        t0 = time.perf_counter()
        res = CliRunner().invoke(main, args, catch_exceptions=False)
        wall = time.perf_counter() - t0
    print(f"hwsim plan power examples/plan-power (1000 requests, 4 cap levels, 400 scenarios): {wall:.1f} s "
          f"(exit {res.exit_code})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-cli", action="store_true")
    a = ap.parse_args()
    bench_milp()
    if not a.skip_cli:
        bench_cli()
