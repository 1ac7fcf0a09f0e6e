"""Per-step expert-load imbalance for the simulator, from the deployment's routing model.

Each engine step draws the expert loads of its tokens for one of ``SAMPLED_LAYERS``
representative MoE layers (taken in turn) and reports busiest-EP-rank load / mean load; the step cost
scales the expert GEMMs and dispatch by it. Per step the counts are drawn as a multinomial of
``tokens x real experts per token`` picks over the layer's exact per-expert inclusion
probabilities (computed once per layer): the means are exact, and the spread ignores only that
one token's picks are distinct (negligible for load imbalance; the exact per-token sampler in
:mod:`hwsim.workload.routing` serves offline analyses). Placement ``contiguous`` and
``round-robin`` map experts to ranks; ``eplb`` and ``file`` placements are not simulated yet
and fall back to contiguous. The sampled counts accumulate in ``factory.expert_load``
(sampled layers x experts) for the expert-load heatmap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.spec.deployment import Pool
from hwsim.spec.scenario import Scenario
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_loads import contiguous_placement, round_robin_placement

SAMPLED_LAYERS = 2
"""MoE layers drawn per step (the first and the middle one: zipf makes layers differ)."""

Sampler = Callable[[np.random.Generator, int], float]


def imbalance_sampler_factory(scenario: Scenario) -> Callable[[Pool], Sampler | None] | None:
    """A factory giving each pool its imbalance sampler (None for dense models)."""
    moe = scenario.model.moe
    if moe is None:
        return None
    experts = scenario.deployment.experts
    routing = make_routing(experts.routing, moe)
    n_moe = scenario.model.num_moe_layers
    layers = sorted({0, n_moe // 2})[:SAMPLED_LAYERS]
    probs = []
    for layer in layers:
        p = np.asarray(routing.inclusion(layer), dtype=float)
        probs.append(p / p.sum())
    k = moe.real_experts_per_token
    expert_load = np.zeros((len(probs), moe.num_experts), np.int64)

    def factory(pool: Pool) -> Sampler | None:
        ep = pool.parallelism.ep
        if ep <= 1:
            return None
        place = round_robin_placement if experts.placement == "round-robin" else contiguous_placement
        rank_of = np.argmax(place(moe.num_experts, ep).share, axis=1)  # one rank per expert here
        turn = [0]

        def sample(rng: np.random.Generator, tokens: int) -> float:
            i = turn[0] = (turn[0] + 1) % len(probs)  # steps take the sampled layers in turn
            counts = rng.multinomial(max(1, round(tokens * k)), probs[i])
            expert_load[i] += counts
            loads = np.bincount(rank_of, weights=counts, minlength=ep)
            return float(loads.max() / loads.mean())

        return sample

    factory.expert_load = expert_load  # type: ignore[attr-defined]
    return factory
