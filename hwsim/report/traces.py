"""Trace statistics as text (``hwsim trace stats``, ``hwsim check``)."""

from __future__ import annotations

import math

from hwsim.units import Dim, format_quantity
from hwsim.workload.stats import TraceStats


def format_trace_stats(path: str, fmt: str, s: TraceStats, skipped_failures: int = 0) -> str:
    """The table ``hwsim trace stats`` prints."""
    def num(x: float | None, digits: int = 3) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"

    lines = [
        f"trace              {path} ({fmt})",
        f"requests           {s.count:,}"
        + (f" (skipped {skipped_failures:,} failed)" if skipped_failures else ""),
        f"span               {format_quantity(s.span_s, Dim.TIME) if s.count > 1 else '-'}",
        f"mean rate          {num(s.mean_rate_per_s)} req/s",
        f"inter-arrival CV   {num(s.interarrival_cv)}",
        f"per-second counts  CV {num(s.per_second_cv)}, peak {s.peak_per_second}",
        f"{'':18} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'min':>9} {'max':>9}",
    ]
    for label, t in (("input tokens", s.input_tokens), ("output tokens", s.output_tokens)):
        if t is not None:
            cells = (t.mean, t.p50, t.p90, t.p99, t.min, t.max)
            lines.append(f"{label:18} " + " ".join(f"{c:>9,.0f}" for c in cells))
    if s.prefix_reuse_fraction is not None:
        lines.append(
            f"prefix blocks      {s.prefix_blocks:,} ({s.prefix_reuse_fraction:.1%} reused)"
        )
    return "\n".join(lines)
