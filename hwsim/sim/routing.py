"""Per-step expert loads for the simulator: routing model x expert placement, per EP rank.

Each engine step draws the expert loads of its tokens for one of ``SAMPLED_LAYERS``
representative MoE layers (taken in turn), spreads them over the pool's EP ranks by the
layer's placement (replicas split their expert's tokens equally; see
:mod:`hwsim.workload.routing_loads`) and reports busiest-rank load / mean load; the step cost
scales the expert GEMMs and dispatch by it.

* **Counts.** The routing model's ``step_counts``: for popularity models a multinomial of
  ``tokens x real experts per token`` picks over the layer's inclusion probabilities (exact
  means; it ignores only that one token's picks are distinct), for a recorded trace its next
  tokens. Under MoGE (Pangu Pro MoE) every token picks exactly ``top_k / groups`` experts of
  every group, so a popularity model's draw is one multinomial per group instead, and a
  placement with whole groups per rank is exactly balanced, as the MoGE paper
  (arXiv:2505.21411) designs it.
* **Placement per pool and layer** (``experts.placement``): ``contiguous``, ``round-robin`` or
  ``eplb`` (:mod:`hwsim.workload.placement`, from the routing model's expected loads of the
  sampled layers, with ``experts.redundant`` replicas and the pool's node layout), or ``file``
  (the scenario's loaded placement file).
* **Accumulated**: token-expert counts per (sampled layer, expert) in ``expert_load`` (the
  heatmap) and tokens per (sampled layer, EP rank) per pool (:meth:`ExpertSampling.rank_loads`).
* **EP traffic** (:meth:`ExpertSampling.ep_link_bytes`): per-link bytes of dispatch and
  combine under the skewed, placed pattern: every source rank's tokens pick experts with the
  run's sampled per-token pick rates, each pick lands on a replica's rank by the placement,
  and the per-(source, destination) token matrices (:func:`expected_routing_counts`) are
  costed on the cluster graph by :meth:`~hwsim.perf.collectives.Collectives.moe_from_counts`.
  Link bytes are linear in tokens, so each pool, mode and sampled layer is costed once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.perf.collectives import Collectives
from hwsim.perf.comm_moe import RoutingCounts
from hwsim.perf.plan import PoolGroups
from hwsim.sim.metrics import RankLoad
from hwsim.spec.deployment import Pool
from hwsim.spec.scenario import Scenario
from hwsim.workload.placement import place_layers
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_base import RoutingBase
from hwsim.workload.routing_loads import LayeredPlacement

__all__ = ["SAMPLED_LAYERS", "ExpertSampling", "imbalance_sampler_factory", "expected_routing_counts"]

SAMPLED_LAYERS = 2
"""MoE layers drawn per step (the first and the middle one: zipf makes layers differ)."""

Sampler = Callable[[np.random.Generator, int], float]


def imbalance_sampler_factory(scenario: Scenario, collectives: Collectives | None = None) -> ExpertSampling | None:
    """The per-pool imbalance samplers of ``scenario`` (None for dense models)."""
    if scenario.model.moe is None:
        return None
    return ExpertSampling(scenario, collectives)


class _PoolLoads:
    """One pool's placement per sampled layer and what its EP ranks served."""

    def __init__(self, placement: LayeredPlacement, layers: list[int]) -> None:
        self.placement = placement
        self.share = [placement.at(layer).share for layer in layers]
        ranks = placement.ranks
        # one copy per expert: a bincount over each expert's rank is cheaper than the product
        self.rank_of = [np.argmax(s, axis=1) if np.all(s.max(axis=1) == 1.0) else None for s in self.share]
        self.ranks = ranks
        self.tokens = np.zeros((len(layers), ranks))
        self.steps = np.zeros(len(layers), dtype=np.int64)


class ExpertSampling:
    """Samplers of per-step EP-rank imbalance for the pools of one scenario (module docstring).

    ``factory(pool)`` gives the pool's sampler, ``sample(rng, tokens) -> busiest / mean``
    (None when ``ep == 1``); all replicas of a pool share it (each with its own generator).
    """

    def __init__(self, scenario: Scenario, collectives: Collectives | None = None) -> None:
        moe = scenario.model.moe
        if moe is None:
            raise ValueError(f"{scenario.model.name} is dense: no expert routing to sample")
        self.scenario = scenario
        self.moe = moe
        self._coll = collectives
        experts = scenario.deployment.experts
        self.routing = make_routing(experts.routing, moe)
        n_moe = scenario.model.num_moe_layers
        self.layers = sorted({0, n_moe // 2})[:SAMPLED_LAYERS]
        self.inclusion = np.stack([np.asarray(self.routing.inclusion(layer), dtype=float) for layer in self.layers])
        self.k = moe.real_experts_per_token
        self._group_probs = None
        if moe.moge and moe.num_expert_groups > 1 and _draws_from_inclusion(self.routing):
            g = self.inclusion.reshape(len(self.layers), moe.num_expert_groups, -1)
            self._group_probs = g / g.sum(axis=2, keepdims=True)
        self.expert_load = np.zeros((len(self.layers), moe.num_experts), np.int64)
        self._pools: dict[str, _PoolLoads] = {}

    # -- placement ------------------------------------------------------------------------------
    @property
    def collectives(self) -> Collectives:
        if self._coll is None:
            self._coll = Collectives(self.scenario.cluster)
        return self._coll

    def placement(self, pool: Pool) -> LayeredPlacement:
        """The placement of ``pool``'s EP ranks for the sampled layers (see the module docstring)."""
        ep = pool.parallelism.ep
        experts = self.scenario.deployment.experts
        if experts.placement == "file":
            table = self.scenario.placement
            if table is None:
                raise ValueError("placement 'file' needs the scenario's loaded placement file "
                                 "(hwsim.io.scenario.load_scenario reads it)")
            if table.ep != ep:
                raise ValueError(f"the placement file has ep={table.ep}, pool '{pool.name}' runs ep={ep}")
            return LayeredPlacement.from_table(table)
        rank_node = None
        if experts.placement == "eplb":
            rank_node = self.collectives.rank_nodes(PoolGroups.of(self.scenario.cluster, pool).ep)
        return place_layers(experts.placement, self.inclusion, self.layers, ep, redundant=experts.redundant,
                            rank_node=rank_node, num_groups=self.moe.num_expert_groups)

    def _pool(self, pool: Pool) -> _PoolLoads:
        if pool.name not in self._pools:
            self._pools[pool.name] = _PoolLoads(self.placement(pool), self.layers)
        return self._pools[pool.name]

    # -- sampling -------------------------------------------------------------------------------
    def step_counts(self, rng: np.random.Generator, tokens: int, i: int) -> np.ndarray:
        """``(E,)`` token-expert assignments of one step of ``tokens`` tokens in sampled layer ``i``."""
        if self._group_probs is not None:  # MoGE: exactly top_k / groups picks per group and token
            per_group = tokens * (self.moe.top_k // self.moe.num_expert_groups)
            return rng.multinomial(per_group, self._group_probs[i]).reshape(-1)
        return self.routing.step_counts(rng, tokens, self.layers[i])

    def __call__(self, pool: Pool) -> Sampler | None:
        if pool.parallelism.ep <= 1:
            return None
        state = self._pool(pool)
        turn = [0]

        def sample(rng: np.random.Generator, tokens: int) -> float:
            i = turn[0] = (turn[0] + 1) % len(self.layers)  # steps take the sampled layers in turn
            counts = self.step_counts(rng, max(1, int(tokens)), i)
            self.expert_load[i] += counts
            rank_of = state.rank_of[i]
            if rank_of is not None:
                loads = np.bincount(rank_of, weights=counts, minlength=state.ranks)
            else:
                loads = counts @ state.share[i]
            state.tokens[i] += loads
            state.steps[i] += 1
            mean = loads.mean()
            return float(loads.max() / mean) if mean > 0 else 1.0

        return sample

    # -- results --------------------------------------------------------------------------------
    def rank_loads(self) -> tuple[RankLoad, ...]:
        """What each pool's EP ranks served so far (pools in the order they were sampled)."""
        placement = self.scenario.deployment.experts.placement
        return tuple(RankLoad(pool=name, placement=placement, layers=tuple(self.layers), tokens=s.tokens.copy(),
                              steps=s.steps.copy()) for name, s in self._pools.items())

    def pick_rates(self) -> np.ndarray:
        """``(layers, E)`` experts picked per token in each sampled layer: from the run's sampled
        counts where the layer was sampled, else the routing model's inclusion."""
        out = self.inclusion.copy()
        totals = self.expert_load.sum(axis=1)
        for i, total in enumerate(totals):
            if total > 0:
                out[i] = self.expert_load[i] * (self.k / total)
        return np.clip(out, 0.0, 1.0)

    def ep_link_bytes(self, pool: Pool, tokens: dict[str, float], token_bytes: float) -> dict[tuple[str, str], float]:
        """Bytes per directed link of ``pool``'s EP dispatch and combine over all its MoE layers
        for ``tokens[mode]`` tokens per mode (``normal`` with prefill, ``low-latency`` decode),
        spread evenly over the EP ranks; each sampled layer stands for an equal share of layers."""
        if pool.parallelism.ep <= 1:
            return {}
        state = self._pool(pool)
        ranks = list(PoolGroups.of(self.scenario.cluster, pool).ep)
        coll = self.collectives
        rank_node = coll.rank_nodes(ranks)
        per_layer = self.scenario.model.num_moe_layers / len(self.layers)
        out: dict[tuple[str, str], float] = {}
        for i, pick in enumerate(self.pick_rates()):
            for mode, n in tokens.items():
                if n <= 0:
                    continue
                counts = expected_routing_counts(pick, state.share[i], n / len(ranks), rank_node)
                for combine in (False, True):
                    cost = coll.moe_from_counts(ranks, counts, token_bytes, mode, combine=combine, detail=True)
                    for edge, b in cost.link_bytes.items():
                        out[edge] = out.get(edge, 0.0) + b * per_layer
        return out


def _draws_from_inclusion(routing: object) -> bool:
    """Whether a routing model's per-step draw is the generic multinomial over its inclusion
    (which does not keep MoGE's exact per-group counts); a replayed trace keeps them itself."""
    base = getattr(routing, "base", routing)
    return getattr(type(base), "step_counts", None) is RoutingBase.step_counts


def expected_routing_counts(pick_rate: np.ndarray, share: np.ndarray, tokens_per_rank: float,
                            rank_node: np.ndarray) -> RoutingCounts:
    """Expected dispatch counts when every rank holds ``tokens_per_rank`` tokens, each picking
    expert ``e`` with probability ``pick_rate[e]`` and sending that pick to rank ``r`` with
    probability ``share[e, r]`` (picks treated as independent for the "at least one" counts).

    ``pairs_to_rank[i, j] = T sum_e p_e s_ej``; ``tokens_to_rank[i, j] = T (1 - prod_e (1 - p_e s_ej))``;
    ``tokens_to_node[i, b]`` the same with the node's summed shares. Rows are equal.

    >>> c = expected_routing_counts(np.array([1.0, 1.0]), np.eye(2), 10.0, np.array([0, 1]))
    >>> c.tokens_to_rank.tolist(), c.pairs_to_rank[0].tolist()
    ([[10.0, 10.0], [10.0, 10.0]], [10.0, 10.0])
    """
    p = np.clip(np.asarray(pick_rate, dtype=float), 0.0, 1.0)
    s = np.asarray(share, dtype=float)
    nodes = np.asarray(rank_node, dtype=np.int64)
    r = s.shape[1]
    onehot = np.zeros((r, int(nodes.max()) + 1))
    onehot[np.arange(r), nodes] = 1.0

    def reached(q: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 1.0 - np.exp(np.log1p(-np.clip(q, 0.0, 1.0)).sum(axis=0))

    q_rank = p[:, None] * s
    q_node = p[:, None] * (s @ onehot)
    t = float(tokens_per_rank)
    return RoutingCounts(tokens_to_rank=np.tile(t * reached(q_rank), (r, 1)),
                         pairs_to_rank=np.tile(t * q_rank.sum(axis=0), (r, 1)),
                         tokens_to_node=np.tile(t * reached(q_node), (r, 1)))
