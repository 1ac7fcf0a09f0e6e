"""Statistics of a routing trace: per-layer load imbalance, hottest share, token-to-token reuse.

* **imbalance**: busiest expert's picks / mean picks per expert in the layer (with ``ranks``,
  also busiest / mean expert-parallel rank under the contiguous placement);
* **hottest share**: the hottest expert's share of the layer's real picks;
* **reuse**: the share of a token's real experts that the previous token of the same sequence
  also picked in that layer (sequence-first tokens excluded); under ``locality: {reuse: p}``
  it is ``p`` plus the chance that a fresh pick re-draws a dropped expert; for independent
  uniform routing about ``k / E``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hwsim.workload.routing_loads import contiguous_placement, rank_loads
from hwsim.workload.routing_trace import RoutingTrace

__all__ = ["LayerStats", "TraceStats", "routing_trace_stats"]

_CHUNK = 16384


@dataclass(frozen=True, slots=True)
class LayerStats:
    layer: int
    imbalance: float
    rank_imbalance: float | None
    hottest_share: float
    reuse: float | None


@dataclass(frozen=True, slots=True)
class TraceStats:
    tokens: int
    sequences: int
    layers: int
    top_k: int
    experts: int
    zero_share: float
    per_layer: tuple[LayerStats, ...]

    @property
    def mean_imbalance(self) -> float:
        return float(np.mean([s.imbalance for s in self.per_layer]))

    @property
    def mean_reuse(self) -> float | None:
        values = [s.reuse for s in self.per_layer if s.reuse is not None]
        return float(np.mean(values)) if values else None

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["per_layer"] = [asdict(s) for s in self.per_layer]
        out["mean_imbalance"] = self.mean_imbalance
        out["mean_reuse"] = self.mean_reuse
        return out


def routing_trace_stats(trace: RoutingTrace, ranks: int | None = None) -> TraceStats:
    """Per-layer statistics of ``trace`` (see the module docstring); ``ranks``: EP ranks for the
    rank imbalance (contiguous placement; must not exceed the experts)."""
    counts = trace.counts()
    e = counts.shape[1]
    placement = contiguous_placement(e, ranks) if ranks is not None else None
    reuse = _reuse(trace)
    per_layer = []
    for layer in range(trace.num_layers):
        c = counts[layer].astype(float)
        total = c.sum()
        mean = total / e
        rank_ratio = None
        if placement is not None and total > 0:
            loads = rank_loads(c, placement)
            rank_ratio = float(loads.max() / loads.mean())
        per_layer.append(LayerStats(layer=int(trace.layer_indices[layer]),
                                    imbalance=float(c.max() / mean) if total else 1.0,
                                    rank_imbalance=rank_ratio,
                                    hottest_share=float(c.max() / total) if total else 0.0,
                                    reuse=None if reuse is None else float(reuse[layer])))
    picks = trace.ids.size
    return TraceStats(tokens=trace.tokens, sequences=len(trace.sequence_starts), layers=trace.num_layers,
                      top_k=trace.top_k, experts=e, zero_share=float((trace.ids < 0).sum() / picks) if picks else 0.0,
                      per_layer=tuple(per_layer))


def _reuse(trace: RoutingTrace) -> np.ndarray | None:
    """(L,) share of real picks that the previous token of the sequence also made."""
    t = trace.tokens
    if t < 2:
        return None
    first = np.zeros(t, dtype=bool)
    first[trace.sequence_starts] = True
    hits = np.zeros(trace.num_layers)
    real = np.zeros(trace.num_layers)
    for start in range(1, t, _CHUNK):
        stop = min(t, start + _CHUNK)
        cur = trace.ids[start:stop].astype(np.int64)
        prev = trace.ids[start - 1: stop - 1].astype(np.int64)
        keep = ~first[start:stop]
        cur, prev = cur[keep], prev[keep]
        valid = cur >= 0
        same = (cur[..., :, None] == prev[..., None, :]).any(axis=-1) & valid
        hits += same.sum(axis=(0, 2))
        real += valid.sum(axis=(0, 2))
    if not real.any():
        return None
    return np.divide(hits, real, out=np.zeros_like(hits), where=real > 0)
