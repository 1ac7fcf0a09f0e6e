"""Engine steps as a Chrome / Perfetto trace (``timeline.json``; open in ui.perfetto.dev).

One process per pool and one thread (track) per replica; every step is a complete event
(``"ph": "X"``, times in microseconds) named after what it computed, with its prefill tokens,
decode sequences, KV blocks in use and power per device as arguments. Beyond ``max_events``
steps, the earliest ones are kept and ``otherData`` (plus an instant event at the cut) says
how many were left out.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.report.summary import json_clean
from hwsim.sim.metrics import SimResult
from hwsim.workload.files import atomic_text_writer

__all__ = ["trace_events", "write_timeline", "MAX_EVENTS"]

#: Default cap on step events (a Perfetto UI stays responsive up to a few hundred thousand).
MAX_EVENTS = 200_000


def _us(t_s: float) -> float:
    return round(t_s * 1e6, 3)


def _step_name(prefill_tokens: int, decode_seqs: int) -> str:
    if prefill_tokens and decode_seqs:
        return "prefill+decode"
    return "prefill" if prefill_tokens else "decode"


def _track_names(result: SimResult, pools: np.ndarray, replicas: np.ndarray) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in sorted(set(pools.tolist())):
        info = result.pools[i] if 0 <= i < len(result.pools) else None
        label = f"pool {info.name} ({info.role}, {info.device})" if info else f"pool {i}"
        events.append({"ph": "M", "name": "process_name", "pid": i + 1, "tid": 0, "args": {"name": label}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": i + 1, "tid": 0, "args": {"sort_index": i}})
    for i, r in sorted(set(zip(pools.tolist(), replicas.tolist(), strict=True))):
        events.append({"ph": "M", "name": "thread_name", "pid": i + 1, "tid": r + 1,
                       "args": {"name": f"replica {r}"}})
    return events


def trace_events(result: SimResult, *, max_events: int = MAX_EVENTS) -> dict[str, Any]:
    """The trace as a dict ``{"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}``."""
    steps = result.steps
    n = int(steps["start_s"].size)
    order = np.lexsort((steps["replica"], steps["pool"], steps["start_s"]))[: max(max_events, 0)]
    cols = {k: steps[k][order].tolist() for k in
            ("pool", "replica", "start_s", "duration_s", "prefill_tokens", "decode_seqs", "kv_blocks_used", "power_w")}
    events = _track_names(result, steps["pool"][order], steps["replica"][order])
    for p, r, t, d, pt, ds, kv, w in zip(*cols.values(), strict=True):
        events.append({
            "ph": "X", "name": _step_name(pt, ds), "cat": "step", "pid": p + 1, "tid": r + 1,
            "ts": _us(t), "dur": _us(d),
            "args": {"prefill_tokens": pt, "decode_seqs": ds, "kv_blocks_used": kv, "power_w": round(w, 3) if math.isfinite(w) else None},
        })
    written = len(order)
    other: dict[str, Any] = {"steps_total": n, "steps_written": written, "truncated": written < n,
                             "seed": result.seed, "sim_time_s": result.sim_time_s}
    if written < n:
        other["note"] = f"only the first {written:,} of {n:,} steps are shown (max_events={max_events:,})"
        cut = cols["start_s"][-1] if written else 0.0
        events.append({"ph": "i", "s": "g", "name": f"truncated: {n - written:,} later steps not shown",
                       "pid": 0, "tid": 0, "ts": _us(cut)})
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": json_clean(other)}


def write_timeline(result: SimResult, path: str | Path, *, max_events: int = MAX_EVENTS) -> Path:
    """Write :func:`trace_events` as JSON to ``path`` atomically."""
    trace = trace_events(result, max_events=max_events)
    with atomic_text_writer(path) as f:
        json.dump(trace, f, separators=(",", ":"), allow_nan=False)
    return Path(path)
