"""From expert loads to rank loads: placements of experts on expert-parallel ranks.

A placement says which share of each expert's tokens each rank serves. One copy of an expert
serves all of its tokens; ``n`` copies (EPLB's redundant experts) split them. How they split
is the ``split`` rule of :meth:`ExpertPlacement.from_rank_slots`:

``equal`` (the default)
    each copy serves ``1/n`` of the expert's tokens: what a router that picks one of the
    replicas at random, or in turn, achieves on average (DeepSeek's EPLB sizes replicas by
    this rule: a physical expert's load is its logical load over its replica count).
``capacity``
    each copy's share is proportional to the capacity of its slot, ``rank_capacity[r]``
    (relative tokens per second of rank ``r``: a slower or busier rank takes less of every
    expert it replicates); with equal capacities this is ``equal``.

A placement may differ per MoE layer: :class:`LayeredPlacement` holds one per layer and a
default for the layers not listed.

>>> p = contiguous_placement(4, 2)
>>> rank_loads(np.array([[3, 1, 2, 2]]), p).tolist()
[[4.0, 4.0]]
>>> imbalance(np.array([[6.0, 2.0]]))
1.5
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwsim.spec.placement import PlacementTable

__all__ = [
    "ExpertPlacement",
    "LayeredPlacement",
    "SPLITS",
    "slots_per_rank",
    "contiguous_placement",
    "round_robin_placement",
    "rank_loads",
    "imbalance",
]


SPLITS = ("equal", "capacity")
"""How replicas of an expert share its tokens (see the module docstring)."""


def slots_per_rank(num_experts: int, redundant: int, ranks: int) -> int:
    """Slots each EP rank holds: ``(num_experts + redundant) / ranks``, which must be whole.

    >>> slots_per_rank(256, 32, 32)
    9
    """
    if ranks < 1 or redundant < 0:
        raise ValueError(f"ranks must be >= 1 and experts.redundant >= 0, got {ranks} and {redundant}")
    physical = num_experts + redundant
    if physical % ranks:
        raise ValueError(
            f"{num_experts} experts + experts.redundant {redundant} = {physical} slots do not split evenly over "
            f"{ranks} EP ranks; set experts.redundant so that {ranks} divides experts + redundant")
    return physical // ranks


@dataclass(frozen=True, slots=True, eq=False)
class ExpertPlacement:
    """``share[e, r]``: the fraction of expert ``e``'s tokens served by rank ``r`` (rows sum to 1).

    ``slots[r]`` (when known) lists the expert in each slot of rank ``r`` (``-1``: empty);
    placement files are written from it. Build one with :func:`contiguous_placement`,
    :func:`round_robin_placement`, :meth:`from_expert_to_rank`, :meth:`from_slots` (a flat
    physical-slot map) or :meth:`from_rank_slots` (slots per rank, with a replica split rule).
    """

    share: np.ndarray
    slots: np.ndarray | None = None

    def __post_init__(self) -> None:
        s = np.array(self.share, dtype=float)
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise ValueError(f"share must be a 2-D (experts, ranks) array, got shape {s.shape}")
        if np.any(s < 0) or not np.allclose(s.sum(axis=1), 1.0):
            raise ValueError("every expert's shares must be >= 0 and sum to 1 (is every expert placed?)")
        s.setflags(write=False)
        object.__setattr__(self, "share", s)
        if self.slots is not None:
            slots = np.array(self.slots, dtype=np.int64)
            if slots.ndim != 2 or slots.shape[0] != s.shape[1]:
                raise ValueError(f"slots must be a ({s.shape[1]}, slots) array, got shape {slots.shape}")
            if slots.min() < -1 or slots.max() >= s.shape[0]:
                raise ValueError(f"slot experts must be in -1..{s.shape[0] - 1}")
            held = np.zeros(s.shape, dtype=bool)
            used = slots >= 0
            held[slots[used], np.nonzero(used)[0]] = True
            if np.any((s > 0) & ~held):
                raise ValueError("a rank serves tokens of an expert none of its slots holds")
            slots.setflags(write=False)
            object.__setattr__(self, "slots", slots)

    @property
    def num_experts(self) -> int:
        return int(self.share.shape[0])

    @property
    def ranks(self) -> int:
        return int(self.share.shape[1])

    @property
    def replicas(self) -> np.ndarray:
        """(E,) number of copies of each expert: its slots when known, else the ranks serving it."""
        if self.slots is not None:
            used = self.slots[self.slots >= 0]
            return np.bincount(used, minlength=self.num_experts)
        return np.count_nonzero(self.share, axis=1)

    @property
    def slots_per_rank(self) -> int | None:
        return None if self.slots is None else int(self.slots.shape[1])

    def rank_lists(self) -> tuple[tuple[int, ...], ...]:
        """The slots of each rank as tuples of expert ids (empty slots left out)."""
        if self.slots is None:
            raise ValueError("this placement has no slot map")
        return tuple(tuple(int(e) for e in row if e >= 0) for row in self.slots)

    @classmethod
    def from_rank_slots(cls, rank_slots: np.ndarray | list[list[int]], num_experts: int, *, split: str = "equal",
                        rank_capacity: np.ndarray | None = None) -> ExpertPlacement:
        """``rank_slots[r]``: the experts in rank ``r``'s slots (``-1``: empty); an expert in
        several slots is replicated and its tokens split by ``split`` (module docstring).

        >>> p = ExpertPlacement.from_rank_slots([[0, 1], [0, 2]], 3)
        >>> p.share.tolist()
        [[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]]
        >>> p.replicas.tolist()
        [2, 1, 1]
        """
        slots = np.array(rank_slots, dtype=np.int64)
        if slots.ndim != 2 or slots.shape[0] < 1:
            raise ValueError("rank_slots must be a 2-D (ranks, slots) integer array")
        ranks = slots.shape[0]
        if slots.min() < -1 or slots.max() >= num_experts:
            raise ValueError(f"slot experts must be in -1..{num_experts - 1}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        used = slots >= 0
        copies = np.zeros((num_experts, ranks))
        np.add.at(copies, (slots[used], np.nonzero(used)[0]), 1.0)
        if split == "capacity":
            cap = np.ones(ranks) if rank_capacity is None else np.asarray(rank_capacity, dtype=float)
            if cap.shape != (ranks,) or np.any(cap <= 0):
                raise ValueError(f"rank_capacity must be {ranks} positive numbers")
            copies = copies * cap[None, :]
        total = copies.sum(axis=1, keepdims=True)
        if np.any(total == 0):
            raise ValueError(f"experts {np.flatnonzero(total[:, 0] == 0)[:8].tolist()} have no slot")
        return cls(share=copies / total, slots=slots)

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
        return cls.from_rank_slots(slots.reshape(ranks, -1), e)


def _with_slots(expert_to_rank: np.ndarray, ranks: int) -> ExpertPlacement:
    """One copy per expert, with the slot map (experts in id order; short ranks padded with -1)."""
    rows = [np.flatnonzero(expert_to_rank == r) for r in range(ranks)]
    width = max(len(r) for r in rows)
    slots = np.full((ranks, width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        slots[r, : len(row)] = row
    return ExpertPlacement.from_rank_slots(slots, len(expert_to_rank))


@dataclass(frozen=True, slots=True, eq=False)
class LayeredPlacement:
    """One :class:`ExpertPlacement` per MoE layer (``layers``), ``default`` for the others.

    MoE layers are numbered among the MoE layers (0 is the first). Every placement has the
    same experts and ranks.

    >>> lp = LayeredPlacement(default=contiguous_placement(4, 2), layers={1: round_robin_placement(4, 2)})
    >>> lp.at(0).rank_lists(), lp.at(1).rank_lists()
    (((0, 1), (2, 3)), ((0, 2), (1, 3)))
    """

    default: ExpertPlacement | None = None
    layers: dict[int, ExpertPlacement] = field(default_factory=dict)

    def __post_init__(self) -> None:
        every = ([self.default] if self.default is not None else []) + list(self.layers.values())
        if not every:
            raise ValueError("a layered placement needs a default or at least one layer")
        shapes = {p.share.shape for p in every}
        if len(shapes) > 1:
            raise ValueError(f"every layer's placement must have the same (experts, ranks), got {sorted(shapes)}")
        if any(k < 0 for k in self.layers):
            raise ValueError("MoE-layer indices must be >= 0")
        object.__setattr__(self, "layers", dict(self.layers))

    @property
    def num_experts(self) -> int:
        return self._any.num_experts

    @property
    def ranks(self) -> int:
        return self._any.ranks

    @property
    def _any(self) -> ExpertPlacement:
        return self.default if self.default is not None else next(iter(self.layers.values()))

    def at(self, layer: int) -> ExpertPlacement:
        """The placement of MoE layer ``layer``."""
        got = self.layers.get(layer, self.default)
        if got is None:
            raise KeyError(f"MoE layer {layer} has no placement and there is no default")
        return got

    @classmethod
    def from_table(cls, table: PlacementTable, *, split: str = "equal",
                   rank_capacity: np.ndarray | None = None) -> LayeredPlacement:
        """From a loaded placement file (replicas split by ``split``)."""
        def one(ranks: tuple[tuple[int, ...], ...]) -> ExpertPlacement:
            return ExpertPlacement.from_rank_slots(np.array(ranks, dtype=np.int64), table.num_experts, split=split,
                                                   rank_capacity=rank_capacity)
        default = one(table.default) if table.default is not None else None
        return cls(default=default, layers={k: one(v) for k, v in table.layers.items()})

    def to_table(self, *, model: str = "", source: str = "") -> PlacementTable:
        """As a :class:`~hwsim.spec.placement.PlacementTable` (every placement needs full slots)."""
        def ranks(p: ExpertPlacement) -> tuple[tuple[int, ...], ...]:
            lists = p.rank_lists()
            if p.slots is None or len({len(r) for r in lists}) != 1:
                raise ValueError("a placement file needs the same number of filled slots on every rank")
            return lists

        default = ranks(self.default) if self.default is not None else None
        layers = {k: ranks(v) for k, v in sorted(self.layers.items())}
        width = len((default or next(iter(layers.values())))[0])
        return PlacementTable(ep=self.ranks, slots_per_rank=width, num_experts=self.num_experts, layers=layers,
                              default=default, model=model, source=source)


def contiguous_placement(num_experts: int, ranks: int) -> ExpertPlacement:
    """Expert ``e`` on rank ``e * ranks // num_experts``: consecutive blocks (sizes differ by at
    most one when ``ranks`` does not divide ``num_experts``)."""
    _check_sizes(num_experts, ranks)
    return _with_slots(np.arange(num_experts) * ranks // num_experts, ranks)


def round_robin_placement(num_experts: int, ranks: int) -> ExpertPlacement:
    """Expert ``e`` on rank ``e % ranks``."""
    _check_sizes(num_experts, ranks)
    return _with_slots(np.arange(num_experts) % ranks, ranks)


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
