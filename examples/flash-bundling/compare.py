"""Print a Markdown table of the batch-1 decode results in out/*/summary.json (run README's loop first)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["naive", "bundled", "bundled-window", "expert", "expert-window",
         "llmflash-reads-naive", "llmflash-reads-bundled", "llmflash-reads-bundled-window"]


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def main(out: Path) -> None:
    _out("| config | ms per token | tok/s | TTFT s | cache hit rate | flash GB/token | offload share |")
    _out("|---|---|---|---|---|---|---|")
    for name in ORDER:
        path = out / name / "summary.json"
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        o, tpot = s["offload"], s["latency"]["tpot_s"]["mean"]
        tokens = s["throughput"]["output_tokens"]
        _out(f"| {name} | {tpot * 1e3:.0f} | {1 / tpot:.2f} | {s['latency']['ttft_s']['mean']:.1f} | "
              f"{o['hit_rate']:.2f} | {o['flash_bytes'] / tokens / 1e9:.1f} | {o['offload_time_share']:.0%} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/flash-bundling"))
