"""Sweep benchmark: estimate-mode configurations per minute, simulate-mode scaling with workers.

Run: python benchmarks/bench_sweep.py [--estimate-configs N] [--simulate-requests N] [--no-dask]
Targets (issue "Sweeps"): at least 2,000 estimate-mode configurations per minute on 2 cores;
simulate mode scales with workers (1 vs 2 worker processes, and a Dask LocalCluster with 2
workers). Every time is wall-clock from the first configuration submitted to the consolidated
results file written, worker start-up included; the executor's start is timed on its own.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"
TRACE = REPO / "workloads" / "traces" / "azure-conv-10min.jsonl"

# 3 node types x 8 parallelisms x 8 batch caps x 3 prefill chunks = 576 estimate configurations
ESTIMATE = """
    mode: estimate
    axes:
      - path: nodes.system
        values: [DGX-H100, HGX-H200, DGX-B200]
      - name: parallelism
        paths: [nodes.count, "deployment.pools[0].devices", "deployment.pools[0].parallelism"]
        values:
          - [2, 16, {tp: 1, attention_dp: 16, ep: 16}]
          - [2, 16, {tp: 8, attention_dp: 2, ep: 16}]
          - [2, 16, {tp: 8, attention_dp: 2, ep: 2, moe_tp: 8}]
          - [2, 16, {tp: 8, pp: 2, ep: 1, moe_tp: 8}]
          - [4, 32, {tp: 1, attention_dp: 32, ep: 32}]
          - [4, 32, {tp: 8, attention_dp: 4, ep: 32}]
          - [4, 32, {tp: 8, attention_dp: 4, ep: 4, moe_tp: 8}]
          - [4, 32, {tp: 8, pp: 4, ep: 1, moe_tp: 8}]
      - path: deployment.pools[0].scheduler.max_seqs
        values: [32, 64, 128, 256, 512, 1024, 2048, 4096]
      - path: deployment.pools[0].scheduler.chunked_prefill
        values: [2048, 4096, 8192]
    """

# 4 batch caps x 2 overlap modes = 8 simulations of the first N requests of the Azure trace
SIMULATE = """
    mode: simulate
    simulate: {{max_requests: {n}}}
    slo: {{ttft: 2 s, tpot: 100 ms}}
    axes:
      deployment.pools[0].scheduler.max_seqs: [64, 256, 1024, 4096]
      deployment.overlap: [none, two-microbatch]
    """


def _spec(folder: Path, body: str, name: str) -> Path:
    path = folder / f"{name}.yaml"
    head = f"version: 1\nkind: sweep\nname: {name}\nbase: {{cluster: {CLUSTER}, trace: {TRACE}}}\n"
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def _run(spec: Path, out: Path, backend: str, workers: int, limit: int | None = None) -> tuple[int, float, float]:
    """(configurations, executor start-up s, sweep wall s)."""
    from hwsim.report.summary import summarize
    from hwsim.sweep.executors import make_executor
    from hwsim.sweep.run import plan_sweep, run_sweep

    plan = plan_sweep(spec, summarize=summarize)
    if limit is not None:
        from dataclasses import replace

        plan = replace(plan, configs=plan.configs[:limit])
    t0 = time.perf_counter()
    executor = make_executor(backend, workers)
    t1 = time.perf_counter()
    try:
        outcome = run_sweep(plan, out, executor=executor)
    finally:
        executor.close()
    return outcome.configurations, t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--estimate-configs", type=int, default=None, help="run only the first N estimate configurations")
    parser.add_argument("--simulate-requests", type=int, default=400, help="requests per simulation")
    parser.add_argument("--no-dask", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        est = _spec(folder, ESTIMATE, "estimate")
        print("estimate mode, DeepSeek-V3 on H100/H200/B200 x 8 parallelisms x 8 batch caps x 3 chunks")
        for backend, workers in (("process", 1), ("process", 2)):
            n, start, wall = _run(est, folder / f"est-{backend}-{workers}", backend, workers, args.estimate_configs)
            total = start + wall
            print(f"  {backend:7s} {workers} worker(s): {n} configurations in {total:.2f} s "
                  f"(start-up {start:.2f} s): {60 * n / total:,.0f} configurations/min")
        sim = _spec(folder, SIMULATE.format(n=args.simulate_requests), "simulate")
        print(f"simulate mode, 8 configurations x first {args.simulate_requests} Azure conversation requests")
        runs = [("process", 1), ("process", 2)] + ([] if args.no_dask else [("dask", 2)])
        base = None
        for backend, workers in runs:
            n, start, wall = _run(sim, folder / f"sim-{backend}-{workers}", backend, workers)
            base = base or wall
            print(f"  {backend:7s} {workers} worker(s): {n} simulations in {wall:.2f} s after a {start:.2f} s start-up"
                  f" ({base / wall:.2f}x the 1-worker run)")


if __name__ == "__main__":
    main()
