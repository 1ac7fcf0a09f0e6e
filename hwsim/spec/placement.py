"""An expert placement as data: which experts each expert-parallel rank's slots hold, per MoE layer.

This is what a placement file says once loaded (``hwsim.io.placement``) and what the
placement strategies and the ILP planner write: per MoE layer (numbered among the MoE layers,
0 being the first), one tuple of expert ids per EP rank, every rank with the same number of
slots; an expert held by several slots is replicated (EPLB's redundant experts). Layers not
listed use ``default``. How replicas share their expert's tokens is a modelling choice made by
``hwsim.workload.routing_loads``, not part of the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RankSlots = tuple[tuple[int, ...], ...]
"""Per EP rank, the expert id in each of its slots."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementTable:
    """Expert ids in the slots of each EP rank, per MoE layer, with a default for the rest."""

    ep: int
    slots_per_rank: int
    num_experts: int
    layers: Mapping[int, RankSlots] = field(default_factory=dict)
    default: RankSlots | None = None
    model: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.ep < 1 or self.slots_per_rank < 1 or self.num_experts < 1:
            raise ValueError("ep, slots_per_rank and num_experts must be >= 1")
        if self.default is None and not self.layers:
            raise ValueError("a placement needs a default or at least one layer")
        for where, ranks in self._tables():
            if len(ranks) != self.ep:
                raise ValueError(f"{where}: {len(ranks)} ranks listed, ep is {self.ep}")
            for r, slots in enumerate(ranks):
                if len(slots) != self.slots_per_rank:
                    raise ValueError(f"{where}: rank {r} has {len(slots)} slots, expected {self.slots_per_rank}")
                bad = [e for e in slots if not 0 <= e < self.num_experts]
                if bad:
                    raise ValueError(f"{where}: rank {r} names experts {bad} outside 0..{self.num_experts - 1}")
            placed = {e for slots in ranks for e in slots}
            if len(placed) != self.num_experts:
                missing = sorted(set(range(self.num_experts)) - placed)
                raise ValueError(f"{where}: experts {missing[:8]} have no slot")

    def _tables(self) -> list[tuple[str, RankSlots]]:
        out = [("default", self.default)] if self.default is not None else []
        return out + [(f"layer {k}", v) for k, v in sorted(self.layers.items())]

    @property
    def physical_experts(self) -> int:
        """Slots per MoE layer over all ranks: experts plus redundant replicas."""
        return self.ep * self.slots_per_rank

    def covers(self, layer: int) -> bool:
        return self.default is not None or layer in self.layers

    def rank_slots(self, layer: int) -> RankSlots:
        """The slots of MoE layer ``layer`` (its own entry, else the default)."""
        got = self.layers.get(layer, self.default)
        if got is None:
            raise KeyError(f"MoE layer {layer} is not in the placement and there is no default")
        return got
