"""Routing by per-layer expert popularity: ``uniform``, ``zipf`` and their node limit.

The law: each token picks ``top_k`` distinct experts, each pick proportional to the popularity
of the experts left (Gumbel-top-k on log-popularity; :mod:`hwsim.workload.routing_sampler`).
The MoE spec's structure is honoured: group-limited routing (``topk_groups``: a token's experts
come from its best groups, a group scoring as its best expert), MoGE (``moge``: exactly
``top_k / groups`` experts from every group), and zero-computation experts (LongCat-Flash):
extra slots a token may pick that do no work, equally popular among themselves and weighted
so that a token picks ``moe.real_experts_per_token`` real experts on average. Zero experts are
not supported together with groups.

Node-limited routing (DeepSeek-V3, "Auxiliary-Loss-Free Load Balancing" section of the
DeepSeek-V3 technical report: each token is sent to at most ``M`` nodes) is the same
group-limited rule with the nodes as groups: ``max_nodes: M`` with ``nodes: N`` (expert ``e``
on node ``e * N // E``, the node grouping of the contiguous placement) or ``experts_per_node``
(a divisor of ``E``). A node scores as its best expert (the max form of the group rule, as
for ``topk_groups``). On a model that already limits groups, the nodes must be its groups
(then the tighter limit holds).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing_base import (
    ROUTING_MODELS,
    RoutingBase,
    SequenceState,
    check_tokens,
    integer_param,
)
from hwsim.workload.routing_base import (
    layer_ids as as_layer_list,
)
from hwsim.workload.routing_inclusion import approx_counts, zero_slot_weight
from hwsim.workload.routing_sampler import TopKSampler

__all__ = ["PopularityRouting", "UniformRouting", "ZipfRouting", "Part", "DEFAULT_EXACT_MAX_TOKENS"]

DEFAULT_EXACT_MAX_TOKENS = 4096
MAX_GROUPS = 63


@dataclass(frozen=True, slots=True)
class Part:
    """One sampler and what its slots are in one layer.

    ``slot_expert``: the expert behind each slot (-1: a zero-computation expert);
    ``slot_id``: the same with zero slots numbered ``E, E+1, ...`` (distinct ids, for
    comparing picks); ``groups``: under group-limited routing, the group of each slot in this
    layer; ``offset``: where the part's picks start among a token's ``top_k``.
    """

    sampler: TopKSampler
    slot_expert: np.ndarray
    slot_id: np.ndarray
    groups: np.ndarray | None = None
    offset: int = 0


class PopularityRouting(RoutingBase):
    """Routing by per-layer expert popularity (the base of ``uniform``, ``zipf`` and the
    histogram trace model).

    Subclasses give the popularity by rank (:meth:`_weights_by_rank`, hottest first) and which
    expert holds each rank in a layer (:meth:`_rank_to_expert`); a subclass may give each layer
    its own weights (:meth:`_layer_weights`). Samplers are built lazily and cached; apart from
    these caches an instance never changes, and every random draw comes from the generator
    passed in.
    """

    PARAMS: ClassVar[tuple[str, ...]] = ("exact_max_tokens", "max_nodes", "nodes", "experts_per_node")

    def __init__(self, moe: MoESpec, *, exact_max_tokens: int | None = DEFAULT_EXACT_MAX_TOKENS,
                 max_nodes: int | None = None, nodes: int | None = None,
                 experts_per_node: int | None = None) -> None:
        self.moe = moe
        self.num_experts = moe.num_experts
        self.top_k = moe.top_k
        self.exact_max_tokens = exact_max_tokens
        groups = moe.num_expert_groups
        self._moge = moe.moge and groups > 1
        self._group_of_expert = np.arange(self.num_experts) // moe.experts_per_group
        self._topk_groups = moe.topk_groups if moe.topk_groups is not None else groups
        self._grouped = not moe.moge and self._topk_groups < groups
        self.max_nodes = max_nodes
        self.nodes = self._node_limit(max_nodes, nodes, experts_per_node)
        if moe.num_zero_experts and (self._moge or self._grouped):
            raise ValueError("zero-computation experts together with expert groups (or a node limit) "
                             "are not supported")
        if (self._grouped or self._moge) and int(self._group_of_expert.max()) + 1 > MAX_GROUPS:
            raise ValueError(f"at most {MAX_GROUPS} expert groups are supported, "
                             f"got {int(self._group_of_expert.max()) + 1}")
        by_rank = np.asarray(self._weights_by_rank(), dtype=float)
        self._by_rank = by_rank / by_rank.sum()
        self.zero_expert_weight = self._zero_weight()
        self._samplers: dict[tuple[bytes, int, bool], TopKSampler] = {}
        self._layers: dict[int, tuple[Part, ...]] = {}
        self._inclusion: dict[int, np.ndarray] = {}

    def _node_limit(self, max_nodes: int | None, nodes: int | None, per_node: int | None) -> int | None:
        """Apply ``max_nodes`` (groups = nodes); returns the node count (None: no node limit)."""
        e = self.num_experts
        if max_nodes is None:
            if nodes is not None or per_node is not None:
                raise ValueError("nodes / experts_per_node describe a node limit: give max_nodes too")
            return None
        if (nodes is None) == (per_node is None):
            raise ValueError("max_nodes needs exactly one of nodes (node count) or experts_per_node")
        if per_node is not None:
            if e % per_node:
                raise ValueError(f"experts_per_node ({per_node}) must divide the {e} experts")
            nodes = e // per_node
        assert nodes is not None
        if not 1 <= nodes <= min(e, MAX_GROUPS):
            raise ValueError(f"nodes must be in 1..{min(e, MAX_GROUPS)}, got {nodes}")
        node_of = np.arange(e) * nodes // e
        smallest = int(np.bincount(node_of).min())
        if max_nodes < nodes and self.top_k > max_nodes * smallest:
            raise ValueError(f"top_k ({self.top_k}) cannot fit in max_nodes={max_nodes} nodes of "
                             f"{smallest} experts")
        if self._moge:
            raise ValueError("a node limit cannot be combined with MoGE (exact experts per group)")
        if self._grouped:
            if not np.array_equal(node_of, self._group_of_expert):
                raise ValueError(f"the model limits its {self.moe.num_expert_groups} expert groups; a node "
                                 f"limit must use them as nodes (nodes: {self.moe.num_expert_groups})")
            self._topk_groups = min(self._topk_groups, max_nodes)
        elif max_nodes < nodes:
            self._group_of_expert = node_of
            self._topk_groups = max_nodes
            self._grouped = True
        return nodes

    # ------------------------------------------------------------------ to define

    @abstractmethod
    def _weights_by_rank(self) -> np.ndarray:
        """(E,) popularity of the experts by rank, hottest first (any positive scale)."""

    @abstractmethod
    def _rank_to_expert(self, layer: int) -> np.ndarray:
        """(E,) the expert holding each popularity rank in MoE layer ``layer``."""

    def _layer_weights(self, layer: int) -> np.ndarray:
        """(E,) normalised popularity by rank in ``layer`` (the same in every layer here)."""
        return self._by_rank

    # ------------------------------------------------------------------ building

    @classmethod
    def _parse(cls, params: Mapping[str, Any], moe: MoESpec, path: str) -> dict[str, Any]:
        out = cls._own_params(params, path)
        out["exact_max_tokens"] = integer_param(params, "exact_max_tokens", path,
                                                default=DEFAULT_EXACT_MAX_TOKENS, minimum=0, nullable=True)
        for key in ("max_nodes", "nodes", "experts_per_node"):
            if key in params:
                out[key] = integer_param(params, key, path, default=None, minimum=1, nullable=False)
        if ("nodes" in out or "experts_per_node" in out) and "max_nodes" not in out:
            raise SpecError("nodes / experts_per_node describe a node limit: give max_nodes too",
                            path=join_path(path, "max_nodes"), expected="max_nodes: M (at most M nodes per token)")
        if "max_nodes" in out and ("nodes" in out) == ("experts_per_node" in out):
            raise SpecError("max_nodes needs exactly one of nodes or experts_per_node",
                            path=join_path(path, "nodes"),
                            expected="nodes: N (contiguous experts per node) or experts_per_node: n")
        return out

    @classmethod
    def _own_params(cls, params: Mapping[str, Any], path: str) -> dict[str, Any]:
        """Keyword arguments of the subclass's own parameters."""
        return {}

    def _zero_weight(self) -> float:
        """Weight of each zero-computation slot, relative to real weights summing to 1."""
        moe, z = self.moe, self.moe.num_zero_experts
        if not z:
            return 0.0
        if moe.expected_real_experts is None and np.all(self._by_rank == self._by_rank[0]):
            return 1.0 / self.num_experts  # as popular as a real expert: k E / (E + Z) real picks
        return zero_slot_weight(self._by_rank, z, self.top_k, moe.real_experts_per_token)

    def _sampler(self, weights: np.ndarray, k: int, grouped: bool = False) -> TopKSampler:
        """A cached sampler; a group-limited one is built on a fixed group table (its rounds
        are sized on it) and every layer passes its own table."""
        key = (weights.tobytes(), k, grouped)
        if key not in self._samplers:
            groups = None
            if grouped:
                groups = np.random.default_rng(0).permutation(self._group_of_expert)
            self._samplers[key] = TopKSampler(weights, k, group_of_slot=groups,
                                              topk_groups=self._topk_groups if grouped else None)
        return self._samplers[key]

    def parts(self, layer: int) -> tuple[Part, ...]:
        """The samplers of MoE layer ``layer`` (one per MoGE group, else one), cached."""
        if layer in self._layers:
            return self._layers[layer]
        perm = np.asarray(self._rank_to_expert(layer), dtype=np.int64)
        w = self._layer_weights(layer)
        if self._moge:
            k_group = self.top_k // self.moe.num_expert_groups
            group_of_rank = self._group_of_expert[perm]
            parts = []
            for g in range(self.moe.num_expert_groups):
                ranks = np.flatnonzero(group_of_rank == g)
                parts.append(Part(self._sampler(w[ranks], k_group), perm[ranks], perm[ranks], offset=g * k_group))
            out = tuple(parts)
        elif self._grouped:
            out = (Part(self._sampler(w, self.top_k, grouped=True), perm, perm, self._group_of_expert[perm]),)
        else:
            z = self.moe.num_zero_experts if self.zero_expert_weight > 0 else 0
            slots = np.concatenate([w, np.full(z, self.zero_expert_weight)])
            zero_ids = self.num_experts + np.arange(z)
            out = (Part(self._sampler(slots, self.top_k), np.concatenate([perm, np.full(z, -1)]),
                        np.concatenate([perm, zero_ids])),)
        self._layers[layer] = out
        return out

    @property
    def group_of_expert(self) -> np.ndarray | None:
        """(E,) the group (or node) of each expert under a group or node limit; None without."""
        return self._group_of_expert if (self._grouped or self._moge) else None

    @property
    def topk_groups(self) -> int | None:
        """At most this many groups (nodes) per token; None without a limit."""
        return self._topk_groups if self._grouped else None

    # ------------------------------------------------------------------ sampling

    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(len(layers), E)`` int64 token-expert assignments of ``tokens`` tokens.

        ``layers`` is a count (MoE layers ``0..layers-1``) or a sequence of MoE-layer indices.
        Above ``exact_max_tokens`` tokens the counts are drawn directly from the per-expert
        probabilities (not under group-limited routing). Layers are independent; those that
        share a sampler are drawn in one call, so asking for many layers at once is cheaper
        than one call per layer.
        """
        ids = as_layer_list(layers)
        n = check_tokens(tokens)
        out = np.zeros((len(ids), self.num_experts), dtype=np.int64)
        approx = self.exact_max_tokens is not None and n > self.exact_max_tokens
        for sampler, targets in self._jobs(ids).items():
            if approx and sampler.inclusion_exact:
                pi = np.broadcast_to(sampler.inclusion(), (len(targets), sampler.num_slots))
                counts = approx_counts(rng, n, pi, sampler.k)
            else:
                tables = [part.groups for _, part in targets if part.groups is not None]
                counts = sampler.counts(rng, n, blocks=len(targets), groups=np.stack(tables) if tables else None)
            for (row, part), c in zip(targets, counts, strict=True):
                real = part.slot_expert >= 0
                out[row, part.slot_expert[real]] += c[real]
        return out

    def _jobs(self, ids: list[int]) -> dict[TopKSampler, list[tuple[int, Part]]]:
        """(row, part) targets of each sampler: layers that share a sampler are drawn together."""
        jobs: dict[TopKSampler, list[tuple[int, Part]]] = {}
        for row, layer in enumerate(ids):
            for part in self.parts(layer):
                jobs.setdefault(part.sampler, []).append((row, part))
        return jobs

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(tokens, top_k)`` int64 experts each token picks in MoE layer ``layer`` (always
        exact; ``-1`` for a zero-computation expert), e.g. for
        :func:`hwsim.perf.comm_moe.routing_counts`."""
        return self.layer_ids(rng, tokens, [layer], zero_ids=False)[:, 0, :]

    def layer_ids(self, rng: np.random.Generator, tokens: int, layers: int | Sequence[int],
                  *, zero_ids: bool = False) -> np.ndarray:
        """``(tokens, len(layers), top_k)`` int64 experts of independent tokens in several MoE
        layers, drawn in one call per sampler. ``zero_ids``: number zero-computation experts
        ``E, E+1, ...`` (distinct) instead of ``-1``."""
        ids = tuple(as_layer_list(layers))
        n = check_tokens(tokens)
        out = np.empty((n, len(ids), self.top_k), dtype=np.int64)
        for sampler, rows, offset, maps, groups in self._id_plan(ids, zero_ids):
            picks = sampler.ids(rng, n, len(rows), groups=groups)                 # (B, n, kp)
            mapped = np.take_along_axis(maps, picks.reshape(len(rows), -1), axis=1)
            out[:, rows, offset: offset + sampler.k] = mapped.reshape(len(rows), n, sampler.k).transpose(1, 0, 2)
        return out

    def _id_plan(self, ids: tuple[int, ...], zero_ids: bool) -> list[tuple[TopKSampler, np.ndarray, int, np.ndarray,
                                                                        np.ndarray | None]]:
        """Per (sampler, part offset): the layer rows it serves, their slot maps and group
        tables (cached per layer tuple: streams ask for the same layers every call)."""
        cache: dict[tuple[tuple[int, ...], bool], list] = self.__dict__.setdefault("_id_plans", {})
        key = (ids, zero_ids)
        if key not in cache:
            jobs: dict[tuple[TopKSampler, int], list[tuple[int, Part]]] = {}
            for row, layer in enumerate(ids):
                for part in self.parts(layer):
                    jobs.setdefault((part.sampler, part.offset), []).append((row, part))
            plan = []
            for (sampler, offset), targets in jobs.items():
                rows = np.array([row for row, _ in targets], dtype=np.int64)
                maps = np.stack([part.slot_id if zero_ids else part.slot_expert for _, part in targets])
                tables = [part.groups for _, part in targets if part.groups is not None]
                plan.append((sampler, rows, offset, maps, np.stack(tables) if tables else None))
            if len(cache) > 64:
                cache.clear()
            cache[key] = plan
        return cache[key]

    def popularity(self, layer: int = 0) -> np.ndarray:
        """(E,) relative popularity of each expert in MoE layer ``layer`` (sums to 1)."""
        index = as_layer_list([layer])[0]
        out = np.empty(self.num_experts)
        out[self._rank_to_expert(index)] = self._layer_weights(index)
        return out

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) chance that a token picks each expert in MoE layer ``layer`` (sums to
        ``moe.real_experts_per_token``); exact except under group-limited routing, where it is
        a Monte Carlo estimate (standard error <= 0.0014)."""
        index = as_layer_list([layer])[0]
        if index not in self._inclusion:
            out = np.zeros(self.num_experts)
            for part in self.parts(index):
                real = part.slot_expert >= 0
                out[part.slot_expert[real]] += part.sampler.inclusion(part.groups)[real]
            out.setflags(write=False)
            self._inclusion[index] = out
        return self._inclusion[index]

    def sequences(self, layers: int) -> IndependentSource:
        """Tokens of a sequence drawn independently of each other (no temporal locality)."""
        return IndependentSource(self, layers)


class IndependentSource:
    """Sequences whose tokens are independent draws of a popularity model, all layers at once."""

    def __init__(self, model: PopularityRouting, layers: int) -> None:
        self.model = model
        self.layers = int(layers)
        self._ids = list(range(self.layers))

    def start(self, rng: np.random.Generator) -> SequenceState:
        return SequenceState()

    def next(self, rng: np.random.Generator, state: SequenceState, tokens: int) -> np.ndarray:
        return self.model.layer_ids(rng, tokens, self._ids)

    def next_many(self, rng: np.random.Generator, states: Sequence[SequenceState], tokens: int) -> np.ndarray:
        """``(len(states), tokens, L, k)`` for several sequences in one call."""
        ids = self.model.layer_ids(rng, len(states) * tokens, self._ids)
        return ids.reshape(len(states), tokens, self.layers, -1)


@ROUTING_MODELS.register("uniform")
class UniformRouting(PopularityRouting):
    """Every expert equally popular in every layer."""

    name = "uniform"

    def _weights_by_rank(self) -> np.ndarray:
        return np.ones(self.num_experts)

    def _rank_to_expert(self, layer: int) -> np.ndarray:
        return np.arange(self.num_experts)


@ROUTING_MODELS.register("zipf")
class ZipfRouting(PopularityRouting):
    """Popularity ``rank ** -skew`` with a seeded per-layer choice of the hot experts."""

    name = "zipf"
    PARAMS = ("skew", "seed_permutation", "hot_shift", *PopularityRouting.PARAMS)

    def __init__(self, moe: MoESpec, *, skew: float, seed_permutation: int | None = 0,
                 hot_shift: int | None = None, **kwargs: Any) -> None:
        if not (math.isfinite(skew) and skew >= 0):
            raise ValueError(f"skew must be a finite number >= 0, got {skew}")
        self.skew = float(skew)
        self.seed_permutation = seed_permutation
        self.hot_shift = hot_shift
        super().__init__(moe, **kwargs)

    @classmethod
    def _own_params(cls, params: Mapping[str, Any], path: str) -> dict[str, Any]:
        if "skew" not in params:
            raise SpecError("the zipf routing model needs a skew", path=join_path(path, "skew"),
                            expected="a number >= 0, e.g. skew: 1.1")
        skew = params["skew"]
        if isinstance(skew, bool) or not isinstance(skew, int | float) or not math.isfinite(skew) or skew < 0:
            raise SpecError("skew must be a finite number >= 0", path=join_path(path, "skew"),
                            expected="a number >= 0", found=skew)
        return {"skew": float(skew),
                "seed_permutation": integer_param(params, "seed_permutation", path, default=0, minimum=0,
                                                  nullable=True),
                "hot_shift": integer_param(params, "hot_shift", path, default=None, minimum=None, nullable=True)}

    def _weights_by_rank(self) -> np.ndarray:
        return np.arange(1, self.num_experts + 1, dtype=float) ** -self.skew

    def _rank_to_expert(self, layer: int) -> np.ndarray:
        e = self.num_experts
        if self.seed_permutation is None:
            base = np.arange(e)
        elif self.hot_shift is None:
            base = np.random.default_rng([self.seed_permutation, layer]).permutation(e)
        else:
            base = np.random.default_rng([self.seed_permutation]).permutation(e)
        return base if self.hot_shift is None else (base + layer * self.hot_shift) % e
