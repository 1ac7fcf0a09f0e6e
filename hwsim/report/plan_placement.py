"""Tables of the placement and tiering planners: strategies side by side, and simulation checks.

A comparison row holds, for one placement (a strategy or the plan), the busiest / mean device
load over MoE layers (mean and worst layer) and the predicted MoE time of one layer in a
reference step (the cost model's step with that imbalance factor). A verification row holds
what a simulation of the same trace gave (throughput, TPOT p50 / p90).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwsim.workload.files import atomic_text_writer

__all__ = ["ComparisonRow", "comparison_text", "write_comparison_csv", "verification_text"]


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """One placement: max/mean device load (mean over layers, worst layer) and the predicted
    MoE time of one layer in the reference step (seconds)."""

    name: str
    max_over_mean: float
    worst_max_over_mean: float
    moe_layer_s: float


def comparison_text(rows: Sequence[ComparisonRow]) -> str:
    """An aligned table; the last column is relative to the first row."""
    lines = [f"{'placement':<12}{'max/mean':>10}{'worst':>10}{'MoE layer':>12}{'vs first':>10}"]
    base = rows[0].moe_layer_s if rows else math.nan
    for r in rows:
        rel = r.moe_layer_s / base if base > 0 else math.nan
        lines.append(f"{r.name:<12}{r.max_over_mean:>10.3f}{r.worst_max_over_mean:>10.3f}"
                     f"{r.moe_layer_s * 1e6:>9.1f} us{rel:>10.3f}")
    return "\n".join(lines)


def write_comparison_csv(path: str | Path, rows: Sequence[ComparisonRow]) -> Path:
    """The comparison as CSV (atomically)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["placement", "max_over_mean", "worst_max_over_mean", "moe_layer_s"])
    for r in rows:
        w.writerow([r.name, f"{r.max_over_mean:.6g}", f"{r.worst_max_over_mean:.6g}", f"{r.moe_layer_s:.6g}"])
    with atomic_text_writer(path) as fh:
        fh.write(buf.getvalue())
    return Path(path)


def verification_text(results: Mapping[str, Mapping[str, float | None]]) -> str:
    """``{name: {output_tokens_per_s, tpot_p50_s, tpot_p90_s}}`` as an aligned table (``-``
    where the simulation had no value, e.g. no finished request)."""
    def num(x: float | None, scale: float, unit: str) -> str:
        return f"{'-':>12}" if x is None or not math.isfinite(x) else f"{x * scale:>9.2f}{unit}"

    lines = [f"{'simulated':<12}{'tok/s out':>12}{'TPOT p50':>12}{'TPOT p90':>12}"]
    for name, r in results.items():
        lines.append(f"{name:<12}{num(r['output_tokens_per_s'], 1.0, '   ')}{num(r['tpot_p50_s'], 1e3, ' ms')}"
                     f"{num(r['tpot_p90_s'], 1e3, ' ms')}")
    return "\n".join(lines)
