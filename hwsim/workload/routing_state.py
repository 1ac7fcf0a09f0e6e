"""Working state of :class:`~hwsim.workload.routing_sampler.TopKSampler`.

The alias table it draws from, the group tables of group-limited routing, each token's
progress (picks so far, open groups) and the work vectors reused for every draw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["alias_table", "GroupTable", "Progress", "Buffers"]


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prob, alias) of Vose's alias method over ``2**b >= len(weights)`` columns."""
    size = 1 << max(0, (len(weights) - 1).bit_length())
    scaled = np.zeros(size)
    scaled[: len(weights)] = weights * (size / weights.sum())
    prob = np.ones(size)
    alias = np.arange(size, dtype=np.int16)
    small = [int(i) for i in np.flatnonzero(scaled < 1.0)]
    large = [int(i) for i in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        s, g = small.pop(), large[-1]
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        if scaled[g] < 1.0:
            small.append(large.pop())
    # what is left has mass 1 up to rounding: it keeps its own column
    return prob, alias


class GroupTable:
    """Group ids of the slots, one row per block of tokens, flattened; and their bit masks."""

    __slots__ = ("ids", "bits", "width")

    def __init__(self, table: np.ndarray) -> None:
        self.ids = np.ascontiguousarray(table, dtype=np.int64).reshape(-1)
        self.bits = np.left_shift(np.int64(1), self.ids)
        self.width = table.shape[-1]


class Progress:
    """Per-token state: picks so far (row ``count`` is scratch), pick count, open groups, and
    where the token's block starts in the group table."""

    __slots__ = ("picked", "count", "rows", "offset", "mask", "nopen", "seen")

    def __init__(self, k: int, rows: np.ndarray, offset: np.ndarray | None = None) -> None:
        n = len(rows)
        self.picked = np.full((k + 1, n), -1, dtype=np.int16)
        self.count = np.zeros(n, dtype=np.int64)
        self.rows = rows
        self.offset = np.zeros(n, dtype=np.int64) if offset is None else offset
        self.mask = np.zeros(n, dtype=np.int64)
        self.nopen = np.zeros(n, dtype=np.int64)
        self.seen = 0  # draws fed so far

    def split(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (picks (k, d), rows (d,)) of the finished tokens and keep the others."""
        done = self.count >= k
        out = self.picked[:k, done], self.rows[done]
        short = ~done
        self.picked = np.ascontiguousarray(self.picked[:, short])
        for name in ("count", "rows", "offset", "mask", "nopen"):
            setattr(self, name, getattr(self, name)[short])
        return out


class Buffers:
    """Work vectors for one pass over ``n`` tokens (reused for every draw: no large allocations)."""

    __slots__ = ("u", "col", "prob", "keep", "slot")

    def __init__(self, n: int, parent: Buffers | None = None) -> None:
        if parent is None:
            self.u, self.prob = np.empty(n), np.empty(n)
            self.col = np.empty(n, dtype=np.intp)
            self.keep = np.empty(n, dtype=bool)
            self.slot = np.empty(n, dtype=np.int16)
        else:
            for name in self.__slots__:
                setattr(self, name, getattr(parent, name)[:n])

    def head(self, n: int) -> Buffers:
        """Views of the first ``n`` lanes."""
        return Buffers(n, self)
