"""Print a Markdown table of the batch-1 decode results in out/*/summary.json (run README's loop first)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["no-cache", "lru", "lru-prefetch", "lfu-device", "static-device", "nvme", "lru-cpu-auto", "fiddler",
         "int4-lru", "int4-lru-prefetch"]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(out: Path) -> None:
    _out("| config | decode tok/s | TPOT ms | TTFT s | hit rate | fetched GB/token | CPU experts/token | offload share |")
    _out("|---|---|---|---|---|---|---|---|")
    for name in ORDER:
        path = out / name / "summary.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        o, tpot = s["offload"], s["latency"]["tpot_s"]["mean"]
        tokens = s["throughput"]["output_tokens"]
        _out(f"| {name} | {1 / tpot:.2f} | {tpot * 1e3:.0f} | {s['latency']['ttft_s']['mean']:.2f} | "
              f"{o['hit_rate']:.2f} | {o['fetched_bytes_per_output_token'] / 1e9:.2f} | "
              f"{o['cpu_experts'] / tokens:.1f} | {o['offload_time_share']:.0%} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/mixtral-offload"))
