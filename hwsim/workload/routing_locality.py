"""Temporal locality and cross-layer co-activation around any popularity law.

::

    routing: {model: zipf, skew: 1.1, locality: {reuse: 0.3}, coactivation: {strength: 0.2}}

Real routers are not independent from token to token or from layer to layer: consecutive
tokens of a sequence re-pick the same experts more often than chance (Jiang et al. 2024,
"Mixtral of Experts", section 5, routing analysis: repeated consecutive assignments well above
the 1/8 of random routing in later layers), and a token's expert in one layer predicts its
expert in the next (Yao et al. 2024, "Exploiting Inter-Layer Expert Affinity for Accelerating
Mixture-of-Experts Model Inference", IPDPS; ``docs/routing.md`` measures it on the OLMoE
cross-layer counts). Expert caches and prefetchers live on both effects.

The model, slot by slot (a token holds ``top_k`` slots per layer):

1. ``locality: {reuse: p}``: token ``t`` of a sequence keeps the expert of each slot of token
   ``t - 1`` in the same layer with probability ``p``.
2. ``coactivation: {strength: q, seed: s}``: a slot not kept follows, with probability ``q``,
   a fixed expert-to-expert affinity map from the same slot of the token's previous layer (as
   the OLMoE cross-layer counts pair experts rank by rank). The map pairs the experts of
   equal popularity rank in the two layers (ties broken by a permutation seeded by ``s``,
   default 0; within each group under MoGE), so a followed pick is as popular as a fresh one.
   A followed expert the token already holds in another slot is not taken twice.
3. The remaining slots are drawn fresh from the layer's law, excluding the experts already
   held: the Plackett-Luce continuation (the first new experts of a Gumbel-top-k race), under
   the model's constraints (MoGE: each group's own slots; group or node limit: the groups the
   held experts opened count, and held experts beyond the limit are dropped, kept ones last).

What is exact: every token holds ``top_k`` distinct experts (zero experts apart), MoGE's
experts per group and the group/node limit hold; a slot is kept with probability exactly
``p`` given a previous token; for the uniform law the marginal popularity stays exactly uniform
(symmetry). What is approximate: for a skewed law, the kept experts are a random subset of the
previous token's (not its first picks), so the continuation is not the exact conditional law
and the marginal popularity drifts a little from the base law (measured in docs/routing.md);
the overlap of consecutive tokens is ``p`` plus the chance that a fresh pick re-draws a
dropped expert. ``expert_counts``, ``step_counts``, ``expert_ids`` and ``inclusion`` are the
base law's (tokens of one step belong to different sequences).

Speed: fresh candidates and coin flips are drawn for all cells at once; the sequential part
runs over tokens (vectorised over layers) with locality only, over layers (vectorised over
tokens) with co-activation only, and over anti-diagonals of the (token, layer) grid with both.
Under a group or node limit each held cell races all experts (slower; see the benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hwsim.errors import SpecError, join_path
from hwsim.workload.routing_base import (
    RoutingBase,
    SequenceState,
    check_keys,
    integer_param,
    number_param,
)
from hwsim.workload.routing_popularity import PopularityRouting

__all__ = ["CorrelatedRouting", "parse_correlation", "affinity_map"]

#: Tokens whose fresh candidates are drawn at once (bounds memory on long calls).
CHUNK_TOKENS = 2048


def parse_correlation(params: Mapping[str, Any], path: str) -> tuple[float, float, int]:
    """(reuse p, strength q, seed) from the ``locality`` / ``coactivation`` mappings."""
    p = q = 0.0
    seed = 0
    if "locality" in params:
        here = join_path(path, "locality")
        loc = params["locality"]
        check_keys(loc, ("reuse",), "locality", here)
        p = number_param(loc, "reuse", here, default=None, low=0.0, high=1.0, example="0.3")
    if "coactivation" in params:
        here = join_path(path, "coactivation")
        co = params["coactivation"]
        check_keys(co, ("strength", "seed"), "coactivation", here)
        q = number_param(co, "strength", here, default=None, low=0.0, high=1.0, example="0.2")
        seed = integer_param(co, "seed", here, default=0, minimum=0, nullable=False) or 0
    return p, q, seed


def affinity_map(pop_from: np.ndarray, pop_to: np.ndarray, seed: int, groups: np.ndarray | None = None,
                 zero: int = 0) -> np.ndarray:
    """``(E + zero,)`` expert of the next layer paired with each expert of this layer: equal
    popularity rank (ties broken by a permutation seeded by ``seed``), within each group when
    ``groups`` is given; zero-computation ids ``E..E+zero-1`` map to themselves.

    >>> affinity_map(np.array([0.1, 0.6, 0.3]), np.array([0.5, 0.2, 0.3]), 0).tolist()
    [1, 0, 2]
    """
    e = len(pop_from)
    out = np.arange(e + zero, dtype=np.int64)
    rng = np.random.default_rng(seed)
    blocks = [np.arange(e)] if groups is None else [np.flatnonzero(groups == g) for g in np.unique(groups)]
    for b in blocks:
        out[b[_order(pop_from[b], rng)]] = b[_order(pop_to[b], rng)]
    return out


def _order(pop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    perm = rng.permutation(len(pop))
    return perm[np.argsort(-pop[perm], kind="stable")]


class CorrelatedRouting(RoutingBase):
    """A popularity law (or a mixture of them) with temporal locality and co-activation
    (see the module docstring); everything but :meth:`sequences` is the base law's."""

    def __init__(self, base: RoutingBase, *, reuse: float = 0.0, strength: float = 0.0, seed: int = 0) -> None:
        if not (0.0 <= reuse <= 1.0 and 0.0 <= strength <= 1.0):
            raise ValueError("reuse and strength must be in [0, 1]")
        self.base = base
        self.moe = base.moe
        self.num_experts = base.num_experts
        self.top_k = base.top_k
        self.reuse = float(reuse)
        self.strength = float(strength)
        self.seed = int(seed)
        comps = getattr(base, "components", None)
        if comps is None:
            if not isinstance(base, PopularityRouting):
                raise ValueError(f"locality and co-activation need a popularity model, not '{base.name}'")
            comps, weights = (base,), np.ones(1)
        else:
            weights = np.asarray(base.weights)  # type: ignore[attr-defined]
        self.components: tuple[PopularityRouting, ...] = tuple(comps)
        self.weights = weights

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.base.name

    def inclusion(self, layer: int = 0) -> np.ndarray:
        return self.base.inclusion(layer)

    def popularity(self, layer: int = 0) -> np.ndarray:
        return self.base.popularity(layer)  # type: ignore[attr-defined]

    def expert_counts(self, rng: np.random.Generator, tokens: int, layers: int | Sequence[int] = 1) -> np.ndarray:
        return self.base.expert_counts(rng, tokens, layers)  # type: ignore[attr-defined]

    def step_counts(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        return self.base.step_counts(rng, tokens, layer)

    def expert_ids(self, rng: np.random.Generator, tokens: int, layer: int = 0) -> np.ndarray:
        return self.base.expert_ids(rng, tokens, layer)  # type: ignore[attr-defined]

    def layer_ids(self, rng: np.random.Generator, tokens: int, layers: int | Sequence[int],
                  *, zero_ids: bool = False) -> np.ndarray:
        return self.base.layer_ids(rng, tokens, layers, zero_ids=zero_ids)  # type: ignore[attr-defined]

    def sequences(self, layers: int) -> CorrelatedSource:
        return CorrelatedSource(self, layers)

    def affinity(self, layer: int, component: int = 0) -> np.ndarray:
        """``(E,)`` the expert of MoE layer ``layer + 1`` that co-activation pairs with each
        expert of ``layer`` (for ``component`` of a mixture)."""
        model = self.components[component]
        groups = model.group_of_expert if model.topk_groups is None else None
        return affinity_map(model.popularity(layer), model.popularity(layer + 1), self.seed + layer, groups)


class _Law:
    """One component's per-layer tables for the stream: affinity maps, slot ranges of the
    parts and, under a group or node limit, what the race needs."""

    def __init__(self, model: PopularityRouting, layers: int, seed: int) -> None:
        self.model = model
        e = model.num_experts
        parts = model.parts(0)
        self.zero = sum(int((p.slot_expert < 0).sum()) for p in parts)
        self.ranges = [(p.offset, p.sampler.k) for p in parts]
        pops = [model.popularity(layer) for layer in range(layers)]
        moge_groups = model.group_of_expert if model.topk_groups is None else None
        maps = [affinity_map(pops[layer], pops[layer + 1], seed + layer, moge_groups, self.zero)
                for layer in range(layers - 1)]
        self.maps = np.stack(maps) if maps else np.zeros((0, e + self.zero), dtype=np.int64)
        self.limit = model.topk_groups
        if self.limit is not None:
            group = np.asarray(model.group_of_expert)
            self.group = group
            self.bits = np.left_shift(np.int64(1), group)
            self.starts = np.flatnonzero(np.diff(group, prepend=-1))
            self.inv_pop = 1.0 / np.stack(pops)


class CorrelatedSource:
    """Sequences of correlated tokens (see the module docstring)."""

    def __init__(self, model: CorrelatedRouting, layers: int) -> None:
        self.model = model
        self.layers = int(layers)
        self._ids = list(range(self.layers))
        self._laws: dict[int, _Law] = {}

    def _law(self, c: int) -> _Law:
        if c not in self._laws:
            self._laws[c] = _Law(self.model.components[c], self.layers, self.model.seed)
        return self._laws[c]

    def start(self, rng: np.random.Generator) -> SequenceState:
        comps = self.model.components
        return SequenceState(component=int(rng.choice(len(comps), p=self.model.weights)) if len(comps) > 1 else 0)

    def next(self, rng: np.random.Generator, state: SequenceState, tokens: int) -> np.ndarray:
        return self.next_many(rng, [state], tokens)[0]

    def next_many(self, rng: np.random.Generator, states: Sequence[SequenceState], tokens: int) -> np.ndarray:
        """``(len(states), tokens, L, k)``: the next ``tokens`` tokens of several sequences,
        sampled together (cheaper than one call each)."""
        out = np.empty((len(states), tokens, self.layers, self.model.top_k), dtype=np.int64)
        by_component: dict[int, list[int]] = {}
        for i, st in enumerate(states):
            by_component.setdefault(st.component, []).append(i)
        for c, rows in by_component.items():
            law = self._law(c)
            have = [states[i].last is not None for i in rows]
            for flag in (False, True):
                sel = [i for i, h in zip(rows, have, strict=True) if h == flag]
                if not sel:
                    continue
                last = np.stack([states[i].last for i in sel]) if flag else None  # type: ignore[misc]
                for start in range(0, tokens, CHUNK_TOKENS):
                    t = min(CHUNK_TOKENS, tokens - start)
                    block = self._block(rng, law, last, len(sel), t)
                    out[sel, start: start + t] = block
                    last = block[:, -1].copy()
                for j, i in enumerate(sel):
                    states[i].last = last[j].copy() if tokens else states[i].last  # type: ignore[index]
        out[out >= self.model.num_experts] = -1
        return out

    def _block(self, rng: np.random.Generator, law: _Law, last: np.ndarray | None, b: int, t: int) -> np.ndarray:
        """``(b, t, L, k)`` ids (zero experts numbered from E) of ``b`` sequences continuing
        ``last`` ``(b, L, k)`` (None: new sequences)."""
        m = self.model
        layers, k = self.layers, m.top_k
        fresh = None
        if law.limit is None:
            fresh = law.model.layer_ids(rng, b * t, self._ids, zero_ids=True).reshape(b, t, layers, k)
        keep = rng.random((b, t, layers, k)) < m.reuse if m.reuse > 0 else None
        follow = rng.random((b, t, layers, k)) < m.strength if m.strength > 0 and layers > 1 else None
        if keep is not None and follow is None and fresh is not None:
            return _locality_only(fresh, keep, last, law.ranges)
        if t == 1 and fresh is not None:
            return _one_token(fresh, keep, follow, last, law)
        out = np.empty((b, t, layers, k), dtype=np.int64)
        for ts, ls in _waves(t, layers, keep is not None, follow is not None):
            n = len(ts)
            pins = np.full((b, n, k), -1, dtype=np.int64)
            kept = np.zeros((b, n, k), dtype=bool)
            if keep is not None:
                first = ts == 0
                prev = out[:, np.maximum(ts - 1, 0), ls]
                if last is not None:
                    prev = np.where(first[None, :, None], last[:, ls], prev)
                    kept = keep[:, ts, ls]
                else:
                    kept = keep[:, ts, ls] & ~first[None, :, None]
                pins = np.where(kept, prev, -1)
            if follow is not None:
                up = ls > 0
                if up.any():
                    below = np.maximum(ls - 1, 0)
                    above = np.where(up[None, :, None], out[:, ts, below], 0)
                    target = law.maps[below[None, :, None], above]
                    taken = (target[..., None] == pins[..., None, :]).any(axis=-1)
                    use = follow[:, ts, ls] & up[None, :, None] & (pins < 0) & ~taken
                    pins = np.where(use, target, pins)
            flat = pins.reshape(b * n, k)
            if fresh is not None:
                filled = _fill_prefix(flat, fresh[:, ts, ls].reshape(b * n, k), law.ranges)
            else:
                cell_layers = np.broadcast_to(ls, (b, n)).reshape(-1)
                filled = _fill_race(rng, law, cell_layers, _limit_groups(law, flat, kept.reshape(b * n, k)))
            out[:, ts, ls] = filled.reshape(b, n, k)
        return out


def _one_token(fresh: np.ndarray, keep: np.ndarray | None, follow: np.ndarray | None,
               last: np.ndarray | None, law: _Law) -> np.ndarray:
    """One token of each sequence (decoding), layer after layer, without a group limit."""
    b, _, layers, k = fresh.shape
    out = np.empty_like(fresh)
    for layer in range(layers):
        pins = np.full((b, k), -1, dtype=np.int64)
        if keep is not None and last is not None:
            pins = np.where(keep[:, 0, layer], last[:, layer], -1)
        if follow is not None and layer > 0:
            target = law.maps[layer - 1][out[:, 0, layer - 1]]
            taken = (target[:, :, None] == pins[:, None, :]).any(axis=2)
            pins = np.where(follow[:, 0, layer] & (pins < 0) & ~taken, target, pins)
        out[:, 0, layer] = _fill_prefix(pins, fresh[:, 0, layer], law.ranges)
    return out


def _locality_only(fresh: np.ndarray, keep: np.ndarray, last: np.ndarray | None,
                   ranges: list[tuple[int, int]]) -> np.ndarray:
    """Temporal locality without co-activation and without a group limit: one token after the
    other, every sequence and layer at once (the per-token work is a few array operations)."""
    b, t, layers, k = fresh.shape
    out = np.empty_like(fresh)
    if last is None:
        out[:, 0] = fresh[:, 0]
        prev = out[:, 0].reshape(b * layers, k)
        begin = 1
    else:
        prev = last.reshape(b * layers, k)
        begin = 0
    single = len(ranges) == 1
    for i in range(begin, t):
        kept = keep[:, i].reshape(b * layers, k)
        f = fresh[:, i].reshape(b * layers, k)
        pins = np.where(kept, prev, -1)
        if single:
            free = ~kept
            valid = ~(f[:, :, None] == pins[:, None, :]).any(axis=2)
            take = valid & (np.cumsum(valid, axis=1) <= free.sum(axis=1, keepdims=True))
            pins[free] = f[take]
        else:
            pins = _fill_prefix(pins, f, ranges)
        out[:, i] = pins.reshape(b, layers, k)
        prev = pins
    return out


def _waves(t: int, layers: int, locality: bool, follow: bool):
    """Groups of (token, layer) cells that depend only on earlier groups."""
    if not follow:  # each token's layers at once (or all tokens at once without locality)
        if not locality:
            ts, ls = np.divmod(np.arange(t * layers), layers)
            yield ts, ls
            return
        lay = np.arange(layers)
        for i in range(t):
            yield np.full(layers, i), lay
    elif not locality:
        tok = np.arange(t)
        for layer in range(layers):
            yield tok, np.full(t, layer)
    else:
        for d in range(t + layers - 1):
            ts = np.arange(max(0, d - layers + 1), min(t - 1, d) + 1)
            yield ts, d - ts


def _fill_prefix(pins: np.ndarray, fresh: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Free slots (``-1``) of each part take, in order, the part's fresh candidates that are not
    pinned (a ``k``-prefix of a race always holds enough: at most ``m`` of its ``k`` distinct
    candidates are among ``m`` pins)."""
    out = pins.copy()
    for off, kp in ranges:
        p, f = pins[:, off: off + kp], fresh[:, off: off + kp]
        free = p < 0
        if not free.any():
            continue
        valid = ~(f[:, :, None] == p[:, None, :]).any(axis=2)
        need = free.sum(axis=1)
        take = valid & (np.cumsum(valid, axis=1) <= need[:, None])
        sub = out[:, off: off + kp]
        sub[free] = f[take]
    return out


def _limit_groups(law: _Law, pins: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Drop held experts beyond the group (node) limit: kept ones first claim their groups."""
    assert law.limit is not None
    n, k = pins.shape
    order = np.argsort(~kept, axis=1, kind="stable")         # kept slots first
    mask = np.zeros(n, dtype=np.int64)
    opened = np.zeros(n, dtype=np.int64)
    out = pins.copy()
    rows = np.arange(n)
    for j in range(k):
        slot = order[:, j]
        e = pins[rows, slot]
        held = e >= 0
        bit = np.where(held, law.bits[np.maximum(e, 0)], 0)
        known = (mask & bit) != 0
        ok = held & (known | (opened < law.limit))
        new = ok & ~known
        mask |= np.where(new, bit, 0)
        opened += new
        out[rows[held & ~ok], slot[held & ~ok]] = -1
    return out


def _fill_race(rng: np.random.Generator, law: _Law, ls: np.ndarray, pins: np.ndarray) -> np.ndarray:
    """Free slots take the first new experts of a race over all experts of the cell's layer,
    under the group limit: open groups (those of the held experts, then new ones in the order
    the race reaches them, up to the limit) admit experts, other groups are skipped."""
    assert law.limit is not None
    n, k = pins.shape
    free = pins < 0
    if not free.any():
        return pins
    e = law.inv_pop.shape[1]
    keys = rng.standard_exponential((n, e)) * law.inv_pop[ls]
    rows = np.repeat(np.arange(n), k)
    held = pins.reshape(-1) >= 0
    keys[rows[held], pins.reshape(-1)[held]] = np.inf
    group_key = np.minimum.reduceat(keys, law.starts, axis=1)         # when each group opens
    g = len(law.starts)
    pre = np.zeros((n, g), dtype=bool)
    pre[rows[held], law.group[pins.reshape(-1)[held]]] = True
    group_key[pre] = -np.inf
    rank = np.argsort(np.argsort(group_key, axis=1, kind="stable"), axis=1)
    allowed = rank < law.limit
    keys[~allowed[:, law.group]] = np.inf
    need = free.sum(axis=1)
    best = np.argsort(keys, axis=1)[:, :k]
    take = np.arange(k)[None, :] < need[:, None]
    out = pins.copy()
    out[free] = best[take]
    return out


def wrap(base: RoutingBase, params: Mapping[str, Any], path: str) -> RoutingBase:
    """``base`` with the ``locality`` / ``coactivation`` of ``params`` (itself when both are 0)."""
    p, q, seed = parse_correlation(params, path)
    if p == 0 and q == 0:
        return base
    try:
        return CorrelatedRouting(base, reuse=p, strength=q, seed=seed)
    except ValueError as err:
        raise SpecError(str(err), path=join_path(path, "locality" if "locality" in params else "coactivation"),
                        expected="a uniform, zipf, mixture or histogram-trace routing model") from None
