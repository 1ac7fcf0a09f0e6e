"""Pure-Python twins of :mod:`hwsim.perf.expert_cache`, written for reading, not for speed.

The same model (documented in :mod:`hwsim.perf.expert_cache`), built independently: each cache
partition is a dictionary of its resident experts, the victim is a plain ``min``/``max`` over
the policy's key, Belady looks the next use up in a list of the trace's accesses, and the
segment bound counts each segment with a ``Counter``. A test holds these equal to the kernels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

NEVER = 1 << 62

Pair = tuple[int, int]
"""(layer, expert)."""


def popular_first(popularity: np.ndarray, capacity: int, scope: str) -> list[tuple[int, int]]:
    """The (layer, expert) pairs a warm or static cache holds, *least* popular first.

    Per layer (``scope="layer"``) or over all layers (``"device"``), the ``capacity`` most
    popular; equal popularity ranks the lower (layer, expert) first.
    """
    layers, experts = popularity.shape
    chosen: list[tuple[int, int]] = []
    groups = ([[(layer, e) for e in range(experts)] for layer in range(layers)] if scope == "layer"
              else [[(layer, e) for layer in range(layers) for e in range(experts)]])
    for group in groups:
        ranked = sorted(group, key=lambda le: (-float(popularity[le]), le))
        chosen.extend(reversed(ranked[:max(capacity, 0)]))
    return chosen


@dataclass
class _Entry:
    inserted: int       # touch number when it entered (FIFO)
    touched: int        # touch number of its last use (LRU)
    step: int           # step of its last use (window)


@dataclass
class ReferenceCache:
    """One cache (all partitions) stepped access by access."""

    experts: int
    capacity: int
    policy: str
    scope: str = "layer"
    window: int = 1
    parts: dict[int, dict[Pair, _Entry]] = field(default_factory=dict)
    freq: Counter[Pair] = field(default_factory=Counter)
    clock: int = 0
    step_index: int = 0

    def part(self, layer: int) -> dict[tuple[int, int], _Entry]:
        return self.parts.setdefault(layer if self.scope == "layer" else 0, {})

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def prefill(self, pairs: list[tuple[int, int]]) -> None:
        for pair in pairs:
            part = self.part(pair[0])
            if pair not in part:
                n = self.tick()
                part[pair] = _Entry(inserted=n, touched=n, step=-1)

    def choose_victim(self, part: dict[Pair, _Entry], current: set[Pair],
                      next_use: dict[Pair, int]) -> Pair:
        """The resident to evict: never one the current access used while another can go
        (Belady: furthest next use, no such rule)."""
        if self.policy == "belady":
            return max(part, key=lambda p: (next_use.get(p, NEVER), -part[p].touched))
        def order(p: Pair) -> tuple[bool, int, int]:
            used = p in current
            if self.policy in ("lru", "window"):
                return used, 0, part[p].touched
            if self.policy == "fifo":
                return used, 0, part[p].inserted
            return used, self.freq[p], part[p].touched                # lfu

        return min(part, key=order)

    def access(self, layer: int, picks: list[int],
               next_use: dict[Pair, int] | None = None) -> tuple[int, list[Pair]]:
        """One layer's access (the experts picked, in token order); returns ``(hits, missed)``.

        Every expert of the access is touched in pick order (a miss enters the cache), then
        the cache is trimmed back to capacity.
        """
        part = self.part(layer)
        seen: list[int] = []
        for e in picks:
            if e >= 0 and e not in seen:
                seen.append(e)
        hits, missed = 0, []
        for e in seen:
            pair = (layer, e)
            self.freq[pair] += 1
            n = self.tick()
            if pair in part:
                hits += 1
                part[pair].touched = n
                part[pair].step = self.step_index
                continue
            missed.append(pair)
            if self.policy != "static" and self.capacity > 0:
                part[pair] = _Entry(inserted=n, touched=n, step=self.step_index)
        current = {(layer, e) for e in seen}
        while len(part) > max(self.capacity, 0) and self.policy != "static":
            del part[self.choose_victim(part, current, next_use or {})]
        return hits, missed

    def end_step(self) -> None:
        if self.policy == "window":
            for part in self.parts.values():
                for pair in [p for p, entry in part.items()
                             if entry.step <= self.step_index - self.window]:
                    del part[pair]
        self.step_index += 1


def _next_uses(ids: np.ndarray, tokens_per_step: int) -> list[dict[Pair, int]]:
    """For each access (step * L + layer) the next access time of each (layer, expert) used there."""
    n_tok, layers, _ = ids.shape
    steps = -(-n_tok // tokens_per_step)
    used = [[set(int(e) for e in ids[s * tokens_per_step:(s + 1) * tokens_per_step, layer].ravel()
                 if e >= 0) for layer in range(layers)] for s in range(steps)]
    times: dict[tuple[int, int], list[int]] = {}
    for s in range(steps):
        for layer in range(layers):
            for e in used[s][layer]:
                times.setdefault((layer, e), []).append(s * layers + layer)
    out: list[dict[Pair, int]] = []
    for s in range(steps):
        for layer in range(layers):
            now = s * layers + layer
            out.append({pair: next((t for t in ts if t > now), NEVER) for pair, ts in times.items()})
    return out


def replay(ids: np.ndarray, experts: int, capacity: int, policy: str, scope: str = "layer",
           tokens_per_step: int = 1, window: int = 1,
           prefill: list[tuple[int, int]] | None = None) -> tuple[list[int], list[int]]:
    """Hits and misses per layer of ``policy`` replayed over ``ids``, from ``prefill``."""
    n_tok, layers, _ = ids.shape
    cache = ReferenceCache(experts, capacity, policy, scope, window)
    cache.prefill(prefill or [])
    future = _next_uses(ids, tokens_per_step) if policy == "belady" else None
    hits, misses = [0] * layers, [0] * layers
    for s in range(-(-n_tok // tokens_per_step)):
        rows = ids[s * tokens_per_step:(s + 1) * tokens_per_step]
        for layer in range(layers):
            h, missed = cache.access(layer, [int(e) for e in rows[:, layer, :].ravel()],
                                     future[s * layers + layer] if future else None)
            hits[layer] += h
            misses[layer] += len(missed)
        cache.end_step()
    return hits, misses


def segment_hits(ids: np.ndarray, starts: list[int], segment_tokens: int, experts: int,
                 capacity: int, scope: str = "layer") -> tuple[list[int], list[int]]:
    """SCH: per segment, the picks of its ``capacity`` most picked experts; ``(hits, uses)``."""
    n_tok, layers, _ = ids.shape
    hits, uses = [0] * layers, [0] * layers
    bounds = [*starts, n_tok]
    for q in range(len(starts)):
        for t0 in range(bounds[q], bounds[q + 1], segment_tokens):
            seg = ids[t0:min(bounds[q + 1], t0 + segment_tokens)]
            count = Counter((layer, int(e)) for t in range(seg.shape[0]) for layer in range(layers)
                            for e in seg[t, layer] if e >= 0)
            for (layer, _e), c in count.items():
                uses[layer] += c
            groups = ([[p for p in count if p[0] == layer] for layer in range(layers)]
                      if scope == "layer" else [list(count)])
            for group in groups:
                for pair in sorted(group, key=lambda p: (-count[p], p))[:max(capacity, 0)]:
                    hits[pair[0]] += count[pair]
    return hits, uses
