"""Expert load per device and all-to-all hotspots of a simulation: summary entries and tables.

* **Device load** (``SimResult.rank_loads``): for each pool with ``ep > 1`` and each sampled MoE
  layer, the token-expert assignments each EP rank served over the run (replicas split their
  expert's tokens). ``max_over_mean`` is the busiest rank's total over the mean rank's: the
  imbalance left after averaging over the run (the per-step imbalance the step cost used is
  ``experts.step_imbalance_*``, which also counts each step's sampling noise).
  ``tokens_per_step`` is a rank's mean load per step that sampled the layer. With
  ``moe_tp > 1`` an EP rank spans ``moe_tp`` devices.
* **Hotspots** (``SimResult.ep_links``): bytes the EP dispatch and combine put on each directed
  link under the run's skewed, placed routing, busiest first, with the link's kind, its share
  of the EP bytes summed over links (a flow crossing two links counts on both), and its
  utilisation: bytes / (bandwidth x simulated time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.sim.metrics import SimResult

__all__ = ["device_load_stats", "device_load_table", "hotspot_rows", "hotspot_table", "write_expert_tables",
           "experts_line"]

Table = dict[str, np.ndarray]


def device_load_stats(result: SimResult) -> list[dict[str, Any]]:
    """Per pool: placement, EP ranks, and per sampled layer the busiest / mean rank load and
    each rank's mean tokens per step (see the module docstring)."""
    out = []
    for load in result.rank_loads:
        tokens = np.asarray(load.tokens, dtype=np.float64)
        layers: list[dict[str, Any]] = []
        ratios: list[float] = []
        for i, layer in enumerate(load.layers):
            row, steps = tokens[i], int(load.steps[i])
            mean = float(row.mean()) if row.size else math.nan
            ratio = float(row.max()) / mean if mean > 0 else math.nan
            if math.isfinite(ratio):
                ratios.append(ratio)
            layers.append({
                "layer": int(layer),
                "steps": steps,
                "max_over_mean": ratio,
                "tokens_per_step": (row / steps).tolist() if steps else [math.nan] * len(row),
            })
        out.append({
            "pool": load.pool, "placement": load.placement, "ep": int(tokens.shape[1]),
            "max_over_mean": max(ratios) if ratios else math.nan,
            "max_over_mean_mean": float(np.mean(ratios)) if ratios else math.nan,
            "layers": layers,
        })
    return out


def device_load_table(result: SimResult) -> Table:
    """One row per (pool, sampled layer, EP rank): tokens served, tokens per step, load / mean."""
    cols: dict[str, list[Any]] = {k: [] for k in ("pool", "layer", "rank", "tokens", "tokens_per_step",
                                                  "load_over_mean")}
    for load in result.rank_loads:
        tokens = np.asarray(load.tokens, dtype=np.float64)
        for i, layer in enumerate(load.layers):
            row, steps = tokens[i], int(load.steps[i])
            mean = row.mean()
            for r, t in enumerate(row.tolist()):
                cols["pool"].append(load.pool)
                cols["layer"].append(int(layer))
                cols["rank"].append(r)
                cols["tokens"].append(t)
                cols["tokens_per_step"].append(t / steps if steps else math.nan)
                cols["load_over_mean"].append(t / mean if mean > 0 else math.nan)
    return {"pool": np.array(cols["pool"], dtype=object), "layer": np.array(cols["layer"], dtype=np.int64),
            "rank": np.array(cols["rank"], dtype=np.int64), "tokens": np.array(cols["tokens"], dtype=np.float64),
            "tokens_per_step": np.array(cols["tokens_per_step"], dtype=np.float64),
            "load_over_mean": np.array(cols["load_over_mean"], dtype=np.float64)}


def hotspot_rows(result: SimResult, top: int | None = None) -> list[dict[str, Any]]:
    """The busiest links of the EP all-to-all: ``src``, ``dst``, ``kind``, ``bytes``,
    ``share`` (of the EP bytes summed over links) and ``utilisation`` (module docstring)."""
    links = sorted(result.ep_links, key=lambda u: (-u.bytes, u.src, u.dst))
    total = sum(u.bytes for u in links)
    t = result.sim_time_s
    rows = [{
        "src": u.src, "dst": u.dst, "kind": u.kind, "bytes": u.bytes,
        "share": u.bytes / total if total > 0 else math.nan,
        "utilisation": u.bytes / (u.bandwidth_bytes_per_s * t) if t > 0 and u.bandwidth_bytes_per_s > 0 else math.nan,
    } for u in links]
    return rows if top is None else rows[:top]


def hotspot_table(result: SimResult) -> Table:
    """:func:`hotspot_rows` as columns (every link that carried EP bytes)."""
    rows = hotspot_rows(result)
    return {
        "src": np.array([r["src"] for r in rows], dtype=object),
        "dst": np.array([r["dst"] for r in rows], dtype=object),
        "kind": np.array([r["kind"] for r in rows], dtype=object),
        "bytes": np.array([r["bytes"] for r in rows], dtype=np.float64),
        "share": np.array([r["share"] for r in rows], dtype=np.float64),
        "utilisation": np.array([r["utilisation"] for r in rows], dtype=np.float64),
    }


def write_expert_tables(result: SimResult, out_dir: str | Path) -> list[Path]:
    """``expert_devices.csv`` and ``link_hotspots.csv`` into ``out_dir`` when the run has the
    data (written atomically); returns the files written."""
    from hwsim.report.tables import write_csv

    out = Path(out_dir)
    written = []
    if result.rank_loads:
        written.append(write_csv(device_load_table(result), out / "expert_devices.csv"))
    if result.ep_links:
        written.append(write_csv(hotspot_table(result), out / "link_hotspots.csv"))
    return written


def experts_line(summary: Mapping[str, Any]) -> str | None:
    """One line for people: per-step imbalance, run-total device load max/mean per pool, and the
    busiest EP link."""
    experts = summary.get("experts") or {}
    pools = experts.get("devices") or []
    if not pools:
        return None
    parts = [f"step busiest/mean EP rank {_num(experts.get('step_imbalance_mean'))} "
             f"(max {_num(experts.get('step_imbalance_max'))})"]
    parts += [f"{p['pool']} ({p['placement']}, ep {p['ep']}): run-total device load max/mean "
              f"{_num(p.get('max_over_mean_mean'))} (worst layer {_num(p.get('max_over_mean'))})" for p in pools]
    hot = experts.get("ep_hotspots") or []
    if hot:
        h = hot[0]
        busy = h.get("utilisation")
        parts.append(f"busiest EP link {h['src']} -> {h['dst']} ({h['kind']}) {_num(h['bytes'] / 1e9)} GB"
                     + (f", {_num(100 * busy)}% busy" if busy is not None else ""))
    return "experts      " + "; ".join(parts)


def _num(x: Any) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"

