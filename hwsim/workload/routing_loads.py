"""From expert loads to rank loads: placements of experts on expert-parallel ranks.

A placement says which share of each expert's tokens each rank serves. One copy of an expert
serves all of its tokens; ``n`` copies (EPLB's redundant experts) split them equally, which is
what a router that spreads a hot expert's tokens over its replicas achieves on average.

>>> p = contiguous_placement(4, 2)
>>> rank_loads(np.array([[3, 1, 2, 2]]), p).tolist()
[[4.0, 4.0]]
>>> imbalance(np.array([[6.0, 2.0]]))
1.5
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "ExpertPlacement",
    "contiguous_placement",
    "round_robin_placement",
    "rank_loads",
    "imbalance",
]


@dataclass(frozen=True, slots=True, eq=False)
class ExpertPlacement:
    """``share[e, r]``: the fraction of expert ``e``'s tokens served by rank ``r`` (rows sum to 1).

    Build one with :func:`contiguous_placement`, :func:`round_robin_placement`,
    :meth:`from_expert_to_rank` or :meth:`from_slots` (physical slots with replicas).
    """

    share: np.ndarray

    def __post_init__(self) -> None:
        s = np.array(self.share, dtype=float)
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise ValueError(f"share must be a 2-D (experts, ranks) array, got shape {s.shape}")
        if np.any(s < 0) or not np.allclose(s.sum(axis=1), 1.0):
            raise ValueError("every expert's shares must be >= 0 and sum to 1 (is every expert placed?)")
        s.setflags(write=False)
        object.__setattr__(self, "share", s)

    @property
    def num_experts(self) -> int:
        return int(self.share.shape[0])

    @property
    def ranks(self) -> int:
        return int(self.share.shape[1])

    @property
    def replicas(self) -> np.ndarray:
        """(E,) number of ranks holding a copy of each expert."""
        return np.count_nonzero(self.share, axis=1)

    @classmethod
    def from_expert_to_rank(cls, expert_to_rank: np.ndarray, ranks: int | None = None) -> ExpertPlacement:
        """One copy per expert: ``expert_to_rank[e]`` is the rank holding expert ``e``."""
        e2r = np.asarray(expert_to_rank)
        if e2r.ndim != 1 or not np.issubdtype(e2r.dtype, np.integer):
            raise ValueError("expert_to_rank must be a 1-D integer array")
        r = int(e2r.max()) + 1 if ranks is None else ranks
        if e2r.min() < 0 or e2r.max() >= r:
            raise ValueError(f"ranks must be in 0..{r - 1}, got {e2r.min()}..{e2r.max()}")
        share = np.zeros((len(e2r), r))
        share[np.arange(len(e2r)), e2r] = 1.0
        return cls(share=share)

    @classmethod
    def from_slots(cls, slot_expert: np.ndarray, ranks: int, num_experts: int | None = None) -> ExpertPlacement:
        """Physical expert slots laid out contiguously over ``ranks`` ranks (``len / ranks``
        slots each), ``slot_expert[j]`` the expert in slot ``j`` (``-1``: empty), as EPLB's
        physical-to-logical map. An expert in ``n`` slots gives each a ``1/n`` share.
        """
        slots = np.asarray(slot_expert)
        if slots.ndim != 1 or not np.issubdtype(slots.dtype, np.integer):
            raise ValueError("slot_expert must be a 1-D integer array")
        if ranks < 1 or len(slots) % ranks:
            raise ValueError(f"{len(slots)} slots do not split evenly over {ranks} ranks")
        e = int(slots.max()) + 1 if num_experts is None else num_experts
        if slots.min() < -1 or slots.max() >= e:
            raise ValueError(f"slot experts must be in -1..{e - 1}")
        used = slots >= 0
        rank_of_slot = np.arange(len(slots)) // (len(slots) // ranks)
        copies = np.zeros((e, ranks))
        np.add.at(copies, (slots[used], rank_of_slot[used]), 1.0)
        total = copies.sum(axis=1, keepdims=True)
        if np.any(total == 0):
            raise ValueError(f"experts {np.flatnonzero(total[:, 0] == 0)[:8].tolist()} have no slot")
        return cls(share=copies / total)


def contiguous_placement(num_experts: int, ranks: int) -> ExpertPlacement:
    """Expert ``e`` on rank ``e * ranks // num_experts``: consecutive blocks (sizes differ by at
    most one when ``ranks`` does not divide ``num_experts``)."""
    _check_sizes(num_experts, ranks)
    return ExpertPlacement.from_expert_to_rank(np.arange(num_experts) * ranks // num_experts, ranks)


def round_robin_placement(num_experts: int, ranks: int) -> ExpertPlacement:
    """Expert ``e`` on rank ``e % ranks``."""
    _check_sizes(num_experts, ranks)
    return ExpertPlacement.from_expert_to_rank(np.arange(num_experts) % ranks, ranks)


def _check_sizes(num_experts: int, ranks: int) -> None:
    if not 1 <= ranks <= num_experts:
        raise ValueError(f"ranks must be in 1..num_experts ({num_experts}), got {ranks}")


def rank_loads(counts: np.ndarray, placement: ExpertPlacement | np.ndarray) -> np.ndarray:
    """Tokens each rank serves: ``(layers, E)`` expert counts -> ``(layers, R)`` floats.

    ``placement`` is an :class:`ExpertPlacement` or a 1-D ``expert_to_rank`` array. A 1-D
    ``counts`` (one layer) gives a 1-D result. Replicas split their expert's load equally.
    """
    if not isinstance(placement, ExpertPlacement):
        placement = ExpertPlacement.from_expert_to_rank(np.asarray(placement))
    c = np.asarray(counts, dtype=float)
    if c.shape[-1] != placement.num_experts:
        raise ValueError(f"counts cover {c.shape[-1]} experts, the placement {placement.num_experts}")
    return c @ placement.share


def imbalance(loads: np.ndarray) -> float:
    """Mean over layers of (busiest rank's load / mean rank load); 1.0 is perfect balance.

    ``loads`` is ``(layers, R)`` or ``(R,)``; a layer with no load counts as balanced.
    """
    x = np.atleast_2d(np.asarray(loads, dtype=float))
    if x.size == 0:
        raise ValueError("imbalance of an empty load array")
    mean = x.mean(axis=1)
    ratio = np.divide(x.max(axis=1), mean, out=np.ones_like(mean), where=mean > 0)
    return float(ratio.mean())
