"""Expert placement strategies: from expected per-expert loads to expert slots on EP ranks.

Every strategy maps one MoE layer's expected load per logical expert (the routing model's
``inclusion(layer)``, or counts from a routing trace) to ``(ranks, slots)`` expert ids, with
``slots = (experts + redundant) / ranks`` on every rank (:func:`slots_per_rank`). Strategies
are registered in :data:`PLACEMENT_STRATEGIES` and are deterministic: the same loads give the
same slots (ties go to the lower expert id and the lower rank).

``contiguous``
    Logical experts in id order fill the ranks' slots one rank after the other (expert ``e``
    on rank ``e // slots`` without redundancy). The ``redundant`` extra slots go to the
    experts with the highest expected load per copy (EPLB's replication rule) and take the
    last slots.
``round-robin``
    The same physical experts dealt to ranks in turn (physical expert ``j`` on rank ``j % R``).
``eplb``
    An EPLB-style hierarchical greedy, written from the description of DeepSeek's Expert
    Parallelism Load Balancer (DeepSeek-V3 technical report, arXiv:2412.19437, section 3.4;
    the ``deepseek-ai/EPLB`` README). When the number of nodes (scale-up domains) holding the
    ranks divides the number of expert groups, it balances hierarchically:

    1. pack the expert groups onto nodes, equally many per node, balancing the summed load
       (heaviest group first, each to the lightest node with room);
    2. inside each node, replicate its experts up to its share of physical slots: each extra
       copy goes to the expert whose load per copy is then the highest;
    3. pack the node's physical experts (load / copies each) onto its ranks, equally many
       per rank, heaviest first, each to the lightest rank with room (copies of one expert
       go to different ranks: a rank with no copy yet is preferred, and a repeat left at the
       end is swapped with the closest-weight item of another rank).

    Otherwise (or when a node's slots are not whole) it applies steps 2 and 3 to all experts
    and all ranks at once (the global policy). Group-limited routing then sends a token to
    few nodes, as the hierarchical policy intends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from hwsim.registry import Registry
from hwsim.workload.routing_loads import ExpertPlacement, LayeredPlacement, slots_per_rank

__all__ = [
    "PlacementStrategy",
    "PLACEMENT_STRATEGIES",
    "place_layer",
    "place_layers",
    "replica_counts",
    "balanced_packing",
    "slots_per_rank",
]


class PlacementStrategy(Protocol):
    """``(E,)`` expected load of one MoE layer -> ``(ranks, slots)`` expert ids."""

    def __call__(self, load: np.ndarray, ranks: int, *, redundant: int = 0, rank_node: np.ndarray | None = None,
                 num_groups: int = 1) -> np.ndarray: ...


PLACEMENT_STRATEGIES: Registry[PlacementStrategy] = Registry("placement strategy")


# ---------------------------------------------------------------------- building blocks


def replica_counts(load: np.ndarray, slots: int) -> np.ndarray:
    """Copies of each expert when ``slots >= len(load)`` slots are filled: one each, then every
    extra copy to the expert with the highest load per copy (ties: the lowest id).

    >>> replica_counts(np.array([6.0, 1.0, 2.0]), 5).tolist()
    [3, 1, 1]
    """
    w = np.asarray(load, dtype=float)
    if slots < len(w):
        raise ValueError(f"{slots} slots cannot hold {len(w)} experts")
    counts = np.ones(len(w), dtype=np.int64)
    for _ in range(slots - len(w)):
        counts[int(np.argmax(w / counts))] += 1
    return counts


def balanced_packing(weights: np.ndarray, bins: int, per_bin: int, keys: np.ndarray | None = None) -> np.ndarray:
    """Bin of each item: heaviest first, each to the lightest bin that still has room, exactly
    ``per_bin`` items per bin (ties: the lower item, then the lower bin). Items sharing a
    ``key`` (copies of one expert) avoid a bin that already holds that key while another
    bin with room does not; a repeat the greedy could not avoid is swapped with the
    closest-weight item of another bin where neither key repeats.

    >>> balanced_packing(np.array([5.0, 4.0, 3.0, 1.0]), 2, 2).tolist()
    [0, 1, 1, 0]
    >>> balanced_packing(np.array([5.0, 2.0, 2.0, 1.0]), 2, 2, keys=np.array([0, 1, 1, 2])).tolist()
    [0, 1, 0, 1]
    """
    w = np.asarray(weights, dtype=float)
    if len(w) != bins * per_bin:
        raise ValueError(f"{len(w)} items do not fill {bins} bins of {per_bin}")
    order = np.argsort(-w, kind="stable")
    load = np.zeros(bins)
    room = np.full(bins, per_bin)
    held: dict[int, set[int]] = {}
    out = np.empty(len(w), dtype=np.int64)
    for i in order:
        open_load = np.where(room > 0, load, np.inf)
        if keys is not None:
            taken = held.setdefault(int(keys[i]), set())
            fresh = open_load.copy()
            fresh[list(taken)] = np.inf
            if np.isfinite(fresh).any():
                open_load = fresh
            taken.add(int(np.argmin(open_load)))
        b = int(np.argmin(open_load))
        out[i] = b
        load[b] += w[i]
        room[b] -= 1
    if keys is not None:
        _spread_duplicates(out, w, np.asarray(keys))
    return out


def _spread_duplicates(bin_of: np.ndarray, w: np.ndarray, keys: np.ndarray) -> None:
    """Swap away a second item of one key in a bin (left by the greedy when only that bin had
    room) with the closest-weight item of another bin where neither key repeats."""
    for i in range(len(w)):
        b = bin_of[i]
        if np.count_nonzero((bin_of == b) & (keys == keys[i])) < 2:
            continue
        in_b = set(keys[bin_of == b].tolist())
        best, gap = -1, np.inf
        for j in np.flatnonzero(bin_of != b):
            c = bin_of[j]
            if keys[j] in in_b or np.any((bin_of == c) & (keys == keys[i])):
                continue
            if abs(w[j] - w[i]) < gap:
                best, gap = int(j), abs(w[j] - w[i])
        if best >= 0:
            bin_of[i], bin_of[best] = bin_of[best], b


def _fill(expert_of_item: np.ndarray, rank_of_item: np.ndarray, ranks: int, slots: int) -> np.ndarray:
    """(ranks, slots) table from each physical item's expert and rank, slots in expert order."""
    table = np.empty((ranks, slots), dtype=np.int64)
    for r in range(ranks):
        table[r] = np.sort(expert_of_item[rank_of_item == r])
    return table


def _physical(load: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """(expert, load per copy) of each of ``slots`` physical experts under :func:`replica_counts`."""
    counts = replica_counts(load, slots)
    experts = np.repeat(np.arange(len(load)), counts)
    return experts, load[experts] / counts[experts]


def _hot_replicas(load: np.ndarray, redundant: int) -> np.ndarray:
    """Physical experts in order: every expert once, then the extra copies (hottest per copy first)."""
    counts = replica_counts(load, len(load) + redundant)
    extra = np.repeat(np.arange(len(load)), counts - 1)
    # the extra copies, the expert with the highest load per copy first
    per_copy = load[extra] / counts[extra]
    return np.concatenate([np.arange(len(load)), extra[np.argsort(-per_copy, kind="stable")]])


def _check(load: np.ndarray, ranks: int, redundant: int) -> tuple[np.ndarray, int]:
    w = np.asarray(load, dtype=float)
    if w.ndim != 1 or len(w) < 1 or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("load must be a 1-D array of finite non-negative numbers")
    if ranks > len(w) + redundant:
        raise ValueError(f"{ranks} ranks cannot each hold an expert of {len(w)} (+{redundant} redundant)")
    return w, slots_per_rank(len(w), redundant, ranks)


# ---------------------------------------------------------------------- strategies


@PLACEMENT_STRATEGIES.register("contiguous")
def contiguous(load: np.ndarray, ranks: int, *, redundant: int = 0, rank_node: np.ndarray | None = None,
               num_groups: int = 1) -> np.ndarray:
    """Experts in id order, rank after rank; redundant copies in the last slots."""
    w, slots = _check(load, ranks, redundant)
    physical = _hot_replicas(w, redundant)
    return _fill(physical, np.arange(len(physical)) // slots, ranks, slots)


@PLACEMENT_STRATEGIES.register("round-robin")
def round_robin(load: np.ndarray, ranks: int, *, redundant: int = 0, rank_node: np.ndarray | None = None,
                num_groups: int = 1) -> np.ndarray:
    """Physical expert ``j`` (experts in id order, then redundant copies) on rank ``j % ranks``."""
    w, slots = _check(load, ranks, redundant)
    physical = _hot_replicas(w, redundant)
    return _fill(physical, np.arange(len(physical)) % ranks, ranks, slots)


@PLACEMENT_STRATEGIES.register("eplb")
def eplb(load: np.ndarray, ranks: int, *, redundant: int = 0, rank_node: np.ndarray | None = None,
         num_groups: int = 1) -> np.ndarray:
    """EPLB-style hierarchical greedy (module docstring)."""
    w, slots = _check(load, ranks, redundant)
    e = len(w)
    node = np.zeros(ranks, dtype=np.int64) if rank_node is None else np.asarray(rank_node, dtype=np.int64)
    if node.shape != (ranks,):
        raise ValueError(f"rank_node must give the node of each of the {ranks} ranks")
    nodes = np.unique(node)
    members = [np.flatnonzero(node == b) for b in nodes]
    n = len(nodes)
    hierarchical = (e % num_groups == 0 and num_groups % n == 0 and len({len(m) for m in members}) == 1
                    and (e + redundant) % n == 0)
    if not hierarchical:
        members, groups_of_node = [np.arange(ranks)], [np.arange(e)]
    else:
        per_group = e // num_groups
        group_load = w.reshape(num_groups, per_group).sum(axis=1)
        node_of_group = balanced_packing(group_load, n, num_groups // n)
        groups_of_node = [np.concatenate([np.arange(g * per_group, (g + 1) * per_group)
                                          for g in np.flatnonzero(node_of_group == b)]) for b in range(n)]
    table = np.empty((ranks, slots), dtype=np.int64)
    for rank_ids, experts in zip(members, groups_of_node, strict=True):
        local, per_copy = _physical(w[experts], len(rank_ids) * slots)
        rank_of_item = balanced_packing(per_copy, len(rank_ids), slots, keys=local)
        sub = _fill(experts[local], rank_of_item, len(rank_ids), slots)
        table[rank_ids] = sub
    return table


# ---------------------------------------------------------------------- per layer


def place_layer(strategy: str, load: np.ndarray, ranks: int, *, redundant: int = 0,
                rank_node: np.ndarray | None = None, num_groups: int = 1, split: str = "equal",
                path: str = "experts.placement") -> ExpertPlacement:
    """One layer's :class:`ExpertPlacement` by the named strategy (an unknown name is a
    :class:`~hwsim.errors.SpecError` at ``path`` listing the choices)."""
    fn = PLACEMENT_STRATEGIES.get(strategy, path)
    slots = fn(np.asarray(load, dtype=float), ranks, redundant=redundant, rank_node=rank_node,
               num_groups=num_groups)
    return ExpertPlacement.from_rank_slots(slots, len(load), split=split)


def place_layers(strategy: str, loads: np.ndarray, layers: Sequence[int], ranks: int, *, redundant: int = 0,
                 rank_node: np.ndarray | None = None, num_groups: int = 1, split: str = "equal",
                 path: str = "experts.placement") -> LayeredPlacement:
    """A :class:`LayeredPlacement` with one placement per MoE layer in ``layers`` (row ``i`` of
    ``loads`` is layer ``layers[i]``'s expected load); layers that land on the same slots share
    one placement, and a strategy that ignores loads gives a default only."""
    w = np.atleast_2d(np.asarray(loads, dtype=float))
    if len(w) != len(layers):
        raise ValueError(f"{len(w)} load rows for {len(layers)} layers")
    if strategy in ("contiguous", "round-robin") and redundant == 0:
        return LayeredPlacement(default=place_layer(strategy, w[0], ranks, rank_node=rank_node,
                                                    num_groups=num_groups, split=split, path=path))
    cache: dict[bytes, ExpertPlacement] = {}
    out = {}
    for layer, row in zip(layers, w, strict=True):
        p = place_layer(strategy, row, ranks, redundant=redundant, rank_node=rank_node, num_groups=num_groups,
                        split=split, path=path)
        assert p.slots is not None
        out[int(layer)] = cache.setdefault(p.slots.tobytes(), p)
    return LayeredPlacement(layers=out)
