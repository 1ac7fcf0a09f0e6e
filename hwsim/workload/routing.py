"""Routing models: which experts the tokens of an engine step pick, per MoE layer.

A deployment names its model under ``experts.routing``::

    experts: {routing: {model: zipf, skew: 1.1}}

and :func:`make_routing` turns that :class:`~hwsim.spec.deployment.RoutingRef` and the
model's :class:`~hwsim.spec.moe.MoESpec` into a routing model (the protocol is
:class:`~hwsim.workload.routing_base.RoutingModel`): ``expert_counts(rng, tokens, layers)``
returns the ``(layers, num_experts)`` token-expert assignments of independent tokens,
``step_counts(rng, tokens, layer)`` one engine step's assignments (fast, for the simulator),
``sequences(layers)`` the per-sequence generator behind
:class:`~hwsim.workload.routing_stream.RoutingStream`; :func:`rank_loads` and
:func:`imbalance` turn counts into per-rank loads. Layers are numbered among the MoE layers
(0 is the first MoE layer). docs/routing.md describes every model with examples.

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
``mixture`` (``components``)
    Traffic domains: each token belongs to one component drawn by weight
    (:mod:`hwsim.workload.routing_mixture`).
``trace`` (``file``, ``mode: ids | histogram``)
    Replays recorded routing (:mod:`hwsim.workload.routing_replay`).

``uniform`` and ``zipf`` take ``exact_max_tokens`` (default 4096; ``null``: always exact):
above it, counts are drawn from their exact per-expert probabilities without per-token work
(see :mod:`hwsim.workload.routing_inclusion`), except under group-limited routing; and a node
limit, ``max_nodes`` with ``nodes`` or ``experts_per_node``
(:mod:`hwsim.workload.routing_popularity`). Any model but ``trace`` takes ``locality:
{reuse: p}`` and ``coactivation: {strength: q}`` (:mod:`hwsim.workload.routing_locality`).

The law: each token picks ``top_k`` distinct experts, each pick proportional to the popularity
of the experts left (Gumbel-top-k on log-popularity; :mod:`hwsim.workload.routing_sampler`).
The MoE spec's structure is honoured: group-limited routing (``topk_groups``), MoGE (``moge``:
exactly ``top_k / groups`` experts from every group), and zero-computation experts
(LongCat-Flash), see :mod:`hwsim.workload.routing_popularity`.

Speed, measured on this project's 2-core AMD EPYC VM, one core (the VM is noisy: ranges over
repeated runs). Exact sampler, one call of 1M tokens, E=256, k=8: uniform 23-40M
token-expert assignments/s, zipf 1.1 19-21M/s, zipf 2.0 7-9M/s; DeepSeek-V3 group-limited
(4 of 8 groups) 20-24M/s uniform, 11-18M/s zipf 1.1; LongCat-Flash zipf 1.1 (512 + 256 zero
experts, k=12) 21-33M/s. A call costs at least ~0.1-0.3 ms of numpy overhead, so ask for all
the layers of a step in one call: 58 layers x 256 tokens of zipf 1.1 take ~10 ms (~11M/s),
with or without groups. Above ``exact_max_tokens`` a layer costs ~0.1-0.3 ms whatever the
token count. ``benchmarks/bench_routing.py`` measures every model and the stream.
"""

from __future__ import annotations

import numpy as np

from hwsim.errors import join_path
from hwsim.spec.deployment import Deployment, RoutingRef
from hwsim.spec.model import Model
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing_base import ROUTING_MODELS, RoutingBase, RoutingModel
from hwsim.workload.routing_loads import (
    ExpertPlacement,
    contiguous_placement,
    imbalance,
    rank_loads,
    round_robin_placement,
)
from hwsim.workload.routing_locality import CorrelatedRouting, wrap
from hwsim.workload.routing_mixture import WRAPPER_KEYS, MixtureRouting
from hwsim.workload.routing_popularity import PopularityRouting, UniformRouting, ZipfRouting
from hwsim.workload.routing_replay import HistogramRouting, TraceRouting

__all__ = [
    "RoutingModel",
    "RoutingBase",
    "PopularityRouting",
    "UniformRouting",
    "ZipfRouting",
    "MixtureRouting",
    "CorrelatedRouting",
    "TraceRouting",
    "HistogramRouting",
    "ROUTING_MODELS",
    "make_routing",
    "inclusion_table",
    "offload_inclusion",
    "ExpertPlacement",
    "contiguous_placement",
    "round_robin_placement",
    "rank_loads",
    "imbalance",
]


def make_routing(ref: RoutingRef, moe: MoESpec, *, path: str = "experts.routing") -> RoutingBase:
    """The routing model ``ref`` names, for the MoE layers ``moe`` describes.

    Raises
    ------
    SpecError
        An unknown model (listing the choices), an unknown or bad parameter (naming its path,
        e.g. ``experts.routing.skew``), or a MoE structure the model cannot serve.
    """
    cls = ROUTING_MODELS.get(ref.model, path=join_path(path, "model"))
    params = dict(ref.params)
    extra = {key: params.pop(key) for key in WRAPPER_KEYS if key in params}
    base = cls.from_params(params, moe, path=path)
    return wrap(base, extra, path) if extra else base


def inclusion_table(ref: RoutingRef, moe: MoESpec, layers: int) -> np.ndarray:
    """``(layers, E)`` chance that a token picks each expert in each MoE layer under the routing
    model ``ref`` (what the closed-form estimate prices expert-cache misses with)."""
    routing = make_routing(ref, moe)
    return np.stack([np.asarray(routing.inclusion(layer), dtype=float) for layer in range(layers)])


def offload_inclusion(deployment: Deployment, model: Model) -> np.ndarray | None:
    """:func:`inclusion_table` of the deployment's routing when its experts are offloaded (what
    ``estimate(expert_inclusion=...)`` prices cache misses with); None otherwise."""
    if deployment.experts.offload is None or model.moe is None:
        return None
    return inclusion_table(deployment.experts.routing, model.moe, model.num_moe_layers)
