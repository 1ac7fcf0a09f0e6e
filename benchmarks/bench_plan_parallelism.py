"""Benchmark: the parallelism planner (`hwsim plan parallelism`).

Target: a plan for DeepSeek-V3 on up to 128 H100s in under 2 minutes, including the
simulation of the 5 best candidates. Prints, for examples/plan-parallelism (16 DGX H100 =
128 GPUs) and the Azure conversation trace at 20x its rate, the time to enumerate and cost the
candidates, to solve the 5 ILPs (two stages each), to simulate the 5 plans (2,000 requests
each) and in all, once per objective; and the costing rate (candidates per second).

    python benchmarks/bench_plan_parallelism.py [--max-requests N] [--rate-scale X]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "examples" / "plan-parallelism" / "cluster.yaml"
TRACE = ROOT / "workloads" / "traces" / "azure-conv-10min.jsonl"


def run(objective: str, max_requests: int, rate_scale: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "hwsim", "plan", "parallelism", str(CLUSTER), str(TRACE), "--slo",
               "ttft=2s,tpot=100ms", "--rate-scale", str(rate_scale), "--objective", objective, "--verify-top", "5",
               "--max-requests", str(max_requests), "-o", tmp]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if res.returncode:
            print(res.stdout, res.stderr)
            raise SystemExit(res.returncode)
        plan = json.loads((Path(tmp) / "plan.json").read_text())
    t = plan["timing_s"]
    sims = t["total"] - t["costing"] - t["solving"]
    rec = plan["recommended"]
    row = next(r for r in plan["verification"] if r["rank"] == rec)
    print(f"{objective:8s} {plan['candidates']:5d} candidates ({plan['candidates'] / t['costing']:,.0f}/s): "
          f"costing {t['costing']:.1f} s, 5 plans solved {t['solving']:.1f} s, 5 simulations {sims:.1f} s, "
          f"in-process total {t['total']:.1f} s, command wall {wall:.1f} s (with start-up); recommended #{rec}: "
          f"{row['devices']} devices, SLO attainment {row.get('simulated_slo_attainment', float('nan')):.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--max-requests", type=int, default=2000)
    ap.add_argument("--rate-scale", type=float, default=20.0)
    args = ap.parse_args()
    print(f"DeepSeek-V3 on 128 H100 (16 DGX H100), Azure conversation trace x{args.rate_scale:g}, "
          f"{args.max_requests} requests per simulation")
    for objective in ("goodput", "usd"):
        run(objective, args.max_requests, args.rate_scale)


if __name__ == "__main__":
    main()
