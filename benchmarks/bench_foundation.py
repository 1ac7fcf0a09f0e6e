"""Foundation benchmarks: catalog loading, scenario checks, trace streaming speed and memory.

Run: python benchmarks/bench_foundation.py [--shared ../shared/data]
Prints one line per measurement; numbers go in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_catalog() -> None:
    from hwsim.io import catalog
    from hwsim.io.load import load

    def load_all() -> int:
        catalog.clear_cache()
        n = 0
        for kind in ("device", "node", "cluster", "model"):
            for e in catalog.entries(kind):
                load(kind, e.file)
                n += 1
        return n

    n = load_all()
    t = timed(load_all)
    print(f"catalog: scan + load all {n} entries (schema, units, graphs): {t * 1e3:.0f} ms")


def bench_scenario() -> None:
    from hwsim.io.scenario import load_scenario

    path = REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"
    t = timed(lambda: load_scenario(path), repeat=5)
    print(f"scenario: load + check {path.relative_to(REPO)}: {t * 1e3:.0f} ms")


def bench_trace(shared: Path) -> None:
    from hwsim.workload.importers import import_requests

    for name in ("azure-llm-2023/AzureLLMInferenceTrace_conv.csv", "mooncake-fast25/conversation_trace.jsonl"):
        path = shared / name
        if not path.exists():
            print(f"trace: {name} not found, skipped")
            continue
        count = 0

        def read(path: Path = path) -> None:
            nonlocal count
            count = sum(1 for _ in import_requests(path))

        t = timed(read)
        print(f"trace import {name}: {count} requests in {t:.3f} s ({count / t:,.0f} requests/s)")


def bench_memory_flat() -> None:
    """Peak Python memory while streaming a trace of N requests, for growing N."""
    from hwsim.workload.generate import LognormalLengths, PoissonArrivals, generate_requests
    from hwsim.workload.trace import iter_requests, write_requests

    with tempfile.TemporaryDirectory() as tmp:
        for n in (10_000, 100_000, 1_000_000):
            path = Path(tmp) / f"t{n}.jsonl"
            reqs = generate_requests(PoissonArrivals(rate_per_s=50.0),
                                     LognormalLengths(input_median=1024, input_sigma=1.0,
                                                      output_median=128, output_sigma=1.0), seed=0, count=n)
            t0 = time.perf_counter()
            write_requests(path, reqs)
            t_write = time.perf_counter() - t0
            tracemalloc.start()
            t0 = time.perf_counter()
            total = sum(r.output_tokens for r in iter_requests(path))
            t_read = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"stream {n:>9,} requests: generate+write {t_write:6.2f} s, read {t_read:6.2f} s "
                  f"({n / t_read:,.0f}/s), peak traced memory while reading {peak / 1e6:.2f} MB "
                  f"(output tokens {total:,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    bench_catalog()
    bench_scenario()
    bench_trace(args.shared)
    bench_memory_flat()


if __name__ == "__main__":
    main()
