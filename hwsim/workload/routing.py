"""Routing models: which experts the tokens of an engine step pick, per MoE layer.

A deployment names its model under ``experts.routing``::

    experts: {routing: {model: zipf, skew: 1.1}}

and :func:`make_routing` turns that :class:`~hwsim.spec.deployment.RoutingRef` and the
model's :class:`~hwsim.spec.moe.MoESpec` into a :class:`RoutingModel`, whose
``expert_counts(rng, tokens, layers)`` returns the ``(layers, num_experts)`` token-expert
assignments of one step; :func:`rank_loads` and :func:`imbalance` turn them into per-rank
loads. Layers are numbered among the MoE layers (0 is the first MoE layer).

Models (:data:`ROUTING_MODELS`)
-------------------------------
``uniform``
    Every expert equally popular.
``zipf`` (``skew`` s >= 0, ``seed_permutation``, ``hot_shift``)
    The expert of popularity rank ``r`` (1 = hottest) has weight ``r ** -s``; which expert
    holds which rank is a random permutation per layer drawn from ``seed_permutation``
    (default 0; fixed for the run, independent of the step generator; ``null``: expert 0 is
    the hottest). With ``hot_shift: h`` all layers share one permutation, shifted by ``h``
    expert ids per layer (``0``: the same hot experts in every layer). ``skew: 0`` is uniform.

Both take ``exact_max_tokens`` (default 4096; ``null``: always exact): above it, counts are
drawn from their exact per-expert probabilities without per-token work (see
:mod:`hwsim.workload.routing_inclusion`), except under group-limited routing.

The law: each token picks ``top_k`` distinct experts, each pick proportional to the popularity
of the experts left (Gumbel-top-k on log-popularity; :mod:`hwsim.workload.routing_sampler`).
The MoE spec's structure is honoured: group-limited routing (``topk_groups``: a token's experts
come from its best groups, a group scoring as its best expert), MoGE (``moge``: exactly
``top_k / groups`` experts from every group), and zero-computation experts (LongCat-Flash):
extra slots a token may pick that do no work, equally popular among themselves and weighted
so that a token picks ``moe.real_experts_per_token`` real experts on average. Zero experts are
not supported together with groups.

Speed, measured on this project's 2-core AMD EPYC VM, one core (the VM is noisy: ranges over
repeated runs). Exact sampler, one call of 1M tokens, E=256, k=8: uniform 23-40M
token-expert assignments/s, zipf 1.1 19-21M/s, zipf 2.0 7-9M/s; DeepSeek-V3 group-limited
(4 of 8 groups) 20-24M/s uniform, 11-18M/s zipf 1.1; LongCat-Flash zipf 1.1 (512 + 256 zero
experts, k=12) 21-33M/s. A call costs at least ~0.1-0.3 ms of numpy overhead, so ask for all
the layers of a step in one call: 58 layers x 256 tokens of zipf 1.1 take ~10 ms (~11M/s),
with or without groups. Above ``exact_max_tokens`` a layer costs ~0.1-0.3 ms whatever the
token count.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.registry import Registry, suggest
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing_inclusion import approx_counts, zero_slot_weight
from hwsim.workload.routing_loads import (
    ExpertPlacement,
    contiguous_placement,
    imbalance,
    rank_loads,
    round_robin_placement,
)
from hwsim.workload.routing_sampler import TopKSampler

__all__ = [
    "RoutingModel",
    "PopularityRouting",
    "UniformRouting",
    "ZipfRouting",
    "ROUTING_MODELS",
    "make_routing",
    "ExpertPlacement",
    "contiguous_placement",
    "round_robin_placement",
    "rank_loads",
    "imbalance",
]

DEFAULT_EXACT_MAX_TOKENS = 4096


@runtime_checkable
class RoutingModel(Protocol):
    """Turns a step's tokens into per-expert assignment counts for each sampled MoE layer."""

    @property
    def name(self) -> str: ...

    @property
    def num_experts(self) -> int: ...

    @property
    def top_k(self) -> int: ...

    def expert_counts(self, rng: np.random.Generator, tokens: int,
                      layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(layers, num_experts)`` int64 counts (each row sums to about ``tokens * top_k``;
        exactly, without zero-computation experts)."""
        ...


@dataclass(frozen=True, slots=True)
class _Part:
    """One sampler, the expert behind each of its slots (-1: a zero-computation expert) and,
    under group-limited routing, the group of each slot in this layer."""

    sampler: TopKSampler
    slot_expert: np.ndarray
    groups: np.ndarray | None = None


class PopularityRouting(ABC):
    """Routing by per-layer expert popularity (the base of ``uniform`` and ``zipf``).

    Subclasses give the popularity by rank (:meth:`_weights_by_rank`, hottest first) and which
    expert holds each rank in a layer (:meth:`_rank_to_expert`). Samplers are built lazily and
    cached per layer; apart from these caches an instance never changes, and every random draw
    comes from the generator passed in.
    """

    name: ClassVar[str]
    #: Parameter names accepted under ``experts.routing`` (besides ``model``).
    PARAMS: ClassVar[tuple[str, ...]] = ("exact_max_tokens",)

    def __init__(self, moe: MoESpec, *, exact_max_tokens: int | None = DEFAULT_EXACT_MAX_TOKENS) -> None:
        self.moe = moe
        self.num_experts = moe.num_experts
        self.top_k = moe.top_k
        self.exact_max_tokens = exact_max_tokens
        groups = moe.num_expert_groups
        self._moge = moe.moge and groups > 1
        self._grouped = (not moe.moge and moe.topk_groups is not None and moe.topk_groups < groups)
        if moe.num_zero_experts and (self._moge or self._grouped):
            raise ValueError("zero-computation experts together with expert groups are not supported")
        if groups > 63:
            raise ValueError(f"at most 63 expert groups are supported, got {groups}")
        self._group_of_expert = np.arange(self.num_experts) // moe.experts_per_group
        by_rank = np.asarray(self._weights_by_rank(), dtype=float)
        self._by_rank = by_rank / by_rank.sum()
        self.zero_expert_weight = self._zero_weight()
        self._samplers: dict[tuple[bytes, int, bool], TopKSampler] = {}
        self._layers: dict[int, tuple[_Part, ...]] = {}
        self._inclusion: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ to define

    @abstractmethod
    def _weights_by_rank(self) -> np.ndarray:
        """(E,) popularity of the experts by rank, hottest first (any positive scale)."""

    @abstractmethod
    def _rank_to_expert(self, layer: int) -> np.ndarray:
        """(E,) the expert holding each popularity rank in MoE layer ``layer``."""

    # ------------------------------------------------------------------ building

    @classmethod
    def from_params(cls, params: Mapping[str, Any], moe: MoESpec, *, path: str = "experts.routing") -> PopularityRouting:
        """Build from the ``experts.routing`` mapping (without ``model``); errors name the path."""
        for key in params:
            if key not in cls.PARAMS:
                raise SpecError(f"unknown parameter '{key}' for routing model '{cls.name}'; known: "
                                f"{', '.join(cls.PARAMS)}{suggest(str(key), cls.PARAMS)}",
                                path=join_path(path, str(key)))
        kwargs = cls._parse(params, path)
        kwargs["exact_max_tokens"] = _integer(params, "exact_max_tokens", path,
                                              default=DEFAULT_EXACT_MAX_TOKENS, minimum=0, nullable=True)
        try:
            return cls(moe, **kwargs)
        except ValueError as err:
            raise SpecError(str(err), path=path) from None

    @classmethod
    def _parse(cls, params: Mapping[str, Any], path: str) -> dict[str, Any]:
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
                                              topk_groups=self.moe.topk_groups if grouped else None)
        return self._samplers[key]

    def _parts(self, layer: int) -> tuple[_Part, ...]:
        if layer in self._layers:
            return self._layers[layer]
        perm = np.asarray(self._rank_to_expert(layer), dtype=np.int64)
        w = self._by_rank
        if self._moge:
            k_group = self.top_k // self.moe.num_expert_groups
            group_of_rank = self._group_of_expert[perm]
            parts = []
            for g in range(self.moe.num_expert_groups):
                ranks = np.flatnonzero(group_of_rank == g)
                parts.append(_Part(self._sampler(w[ranks], k_group), perm[ranks]))
            out = tuple(parts)
        elif self._grouped:
            out = (_Part(self._sampler(w, self.top_k, grouped=True), perm, self._group_of_expert[perm]),)
        else:
            z = self.moe.num_zero_experts if self.zero_expert_weight > 0 else 0
            slots = np.concatenate([w, np.full(z, self.zero_expert_weight)])
            out = (_Part(self._sampler(slots, self.top_k), np.concatenate([perm, np.full(z, -1)])),)
        self._layers[layer] = out
        return out

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
        ids = _layer_ids(layers)
        n = _tokens(tokens)
        out = np.zeros((len(ids), self.num_experts), dtype=np.int64)
        approx = self.exact_max_tokens is not None and n > self.exact_max_tokens
        # layers that share a sampler (all of them, without groups) are sampled in one call
        jobs: dict[TopKSampler, list[tuple[int, _Part]]] = {}
        for row, layer in enumerate(ids):
            for part in self._parts(layer):
                jobs.setdefault(part.sampler, []).append((row, part))
        for sampler, targets in jobs.items():
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

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        """``(tokens, top_k)`` int64 experts each token picks in MoE layer ``layer`` (always
        exact; ``-1`` for a zero-computation expert), e.g. for
        :func:`hwsim.perf.comm_moe.routing_counts`."""
        n = _tokens(tokens)
        parts = self._parts(_layer_ids([layer])[0])
        return np.concatenate([p.slot_expert[p.sampler.ids(rng, n, groups=p.groups)] for p in parts], axis=1)

    def popularity(self, layer: int = 0) -> np.ndarray:
        """(E,) relative popularity of each expert in MoE layer ``layer`` (sums to 1)."""
        out = np.empty(self.num_experts)
        out[self._rank_to_expert(_layer_ids([layer])[0])] = self._by_rank
        return out

    def inclusion(self, layer: int = 0) -> np.ndarray:
        """(E,) chance that a token picks each expert in MoE layer ``layer`` (sums to
        ``moe.real_experts_per_token``); exact except under group-limited routing, where it is
        a Monte Carlo estimate (standard error <= 0.0014)."""
        index = _layer_ids([layer])[0]
        if index not in self._inclusion:
            out = np.zeros(self.num_experts)
            for part in self._parts(index):
                real = part.slot_expert >= 0
                out[part.slot_expert[real]] += part.sampler.inclusion(part.groups)[real]
            out.setflags(write=False)
            self._inclusion[index] = out
        return self._inclusion[index]

    def expected_counts(self, tokens: float, layers: int | Sequence[int] = 1) -> np.ndarray:
        """``(len(layers), E)`` mean assignments of ``tokens`` tokens: ``tokens * inclusion``."""
        return np.stack([tokens * self.inclusion(layer) for layer in _layer_ids(layers)])


ROUTING_MODELS: Registry[type[PopularityRouting]] = Registry("routing model")


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
    PARAMS = ("skew", "seed_permutation", "hot_shift", "exact_max_tokens")

    def __init__(self, moe: MoESpec, *, skew: float, seed_permutation: int | None = 0,
                 hot_shift: int | None = None, exact_max_tokens: int | None = DEFAULT_EXACT_MAX_TOKENS) -> None:
        if not (math.isfinite(skew) and skew >= 0):
            raise ValueError(f"skew must be a finite number >= 0, got {skew}")
        self.skew = float(skew)
        self.seed_permutation = seed_permutation
        self.hot_shift = hot_shift
        super().__init__(moe, exact_max_tokens=exact_max_tokens)

    @classmethod
    def _parse(cls, params: Mapping[str, Any], path: str) -> dict[str, Any]:
        if "skew" not in params:
            raise SpecError("the zipf routing model needs a skew", path=join_path(path, "skew"),
                            expected="a number >= 0, e.g. skew: 1.1")
        skew = params["skew"]
        if isinstance(skew, bool) or not isinstance(skew, int | float) or not math.isfinite(skew) or skew < 0:
            raise SpecError("skew must be a finite number >= 0", path=join_path(path, "skew"),
                            expected="a number >= 0", found=skew)
        return {"skew": float(skew),
                "seed_permutation": _integer(params, "seed_permutation", path, default=0, minimum=0, nullable=True),
                "hot_shift": _integer(params, "hot_shift", path, default=None, minimum=None, nullable=True)}

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


def make_routing(ref: RoutingRef, moe: MoESpec, *, path: str = "experts.routing") -> PopularityRouting:
    """The routing model ``ref`` names, for the MoE layers ``moe`` describes.

    Raises
    ------
    SpecError
        An unknown model (listing the choices), an unknown or bad parameter (naming its path,
        e.g. ``experts.routing.skew``), or a MoE structure the model cannot serve.
    """
    cls = ROUTING_MODELS.get(ref.model, path=join_path(path, "model"))
    return cls.from_params(ref.params, moe, path=path)


# ---------------------------------------------------------------------- argument checks


def _integer(params: Mapping[str, Any], key: str, path: str, *, default: int | None,
             minimum: int | None, nullable: bool) -> int | None:
    if key not in params:
        return default
    value = params[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        what = "an integer" + (f" >= {minimum}" if minimum is not None else "") + (" or null" if nullable else "")
        raise SpecError(f"{key} must be {what}", path=join_path(path, key), expected=what, found=value)
    return value


def _layer_ids(layers: int | Sequence[int]) -> list[int]:
    if isinstance(layers, bool):
        raise ValueError("layers must be a count or a sequence of MoE-layer indices")
    if isinstance(layers, int | np.integer):
        if layers < 0:
            raise ValueError(f"layers must be >= 0, got {layers}")
        return list(range(int(layers)))
    ids = [int(x) for x in layers]
    if any(x < 0 for x in ids):
        raise ValueError(f"MoE-layer indices must be >= 0, got {ids}")
    return ids


def _tokens(tokens: int) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int | np.integer) or tokens < 0:
        raise ValueError(f"tokens must be an integer >= 0, got {tokens!r}")
    return int(tokens)
