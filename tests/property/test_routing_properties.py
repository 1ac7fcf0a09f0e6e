"""Invariants of the routing models over random MoE shapes and parameters (hypothesis):
picks per token conserved, distinct experts per token, group / node / MoGE constraints held,
with and without temporal locality and co-activation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_stream import RoutingStream


@st.composite
def routed(draw):
    groups = draw(st.sampled_from([1, 2, 4]))
    per_group = draw(st.sampled_from([2, 4, 8]))
    e = groups * per_group
    structure = draw(st.sampled_from(["plain", "moge", "limited", "nodes"] if groups > 1 else ["plain", "nodes"]))
    moe_kw: dict = {"num_experts": e, "expert_ffn_dim": 16}
    params: dict = {"skew": draw(st.floats(0.0, 2.5))}
    limit = None
    if structure == "moge":
        moe_kw.update(num_expert_groups=groups, moge=True, top_k=groups * draw(st.integers(1, per_group - 1)))
    elif structure == "limited":
        limit = draw(st.integers(1, groups - 1))
        moe_kw.update(num_expert_groups=groups, topk_groups=limit, top_k=draw(st.integers(1, limit * per_group - 1)))
    elif structure == "nodes":
        nodes = draw(st.sampled_from([n for n in (2, 4) if e % n == 0 and e // n >= 1]))
        limit = draw(st.integers(1, nodes))
        moe_kw["top_k"] = draw(st.integers(1, min(e - 1, limit * (e // nodes))))
        params.update(max_nodes=limit, nodes=nodes)
        groups = nodes
    else:
        moe_kw["top_k"] = draw(st.integers(1, e - 1))
    if draw(st.booleans()):
        params["locality"] = {"reuse": draw(st.floats(0.0, 1.0))}
    if draw(st.booleans()):
        params["coactivation"] = {"strength": draw(st.floats(0.0, 1.0))}
    return MoESpec(**moe_kw), params, structure, groups, limit


@settings(max_examples=40, deadline=None)
@given(case=routed(), seed=st.integers(0, 2**16), tokens=st.integers(1, 40), layers=st.integers(1, 4))
def test_streams_and_counts_keep_every_invariant(case, seed, tokens, layers):
    moe, params, structure, groups, limit = case
    model = make_routing(RoutingRef(model="zipf", params=params), moe)
    rng = np.random.default_rng(seed)
    assert model.expert_counts(rng, tokens, layers).sum(axis=1).tolist() == [tokens * moe.top_k] * layers
    assert model.step_counts(rng, tokens, 0).sum() == tokens * moe.top_k
    stream = RoutingStream(model, rng, layers)
    ids = np.concatenate([stream.ids(0, tokens), stream.ids_many([0, 1], 2).reshape(-1, layers, moe.top_k)])
    e, k = moe.num_experts, moe.top_k
    assert ids.min() >= 0 and ids.max() < e
    assert np.all(np.diff(np.sort(ids, axis=-1), axis=-1) != 0)
    group_of = ids * groups // e
    if structure == "moge":
        per = k // groups
        assert np.all(group_of.reshape(*ids.shape[:2], groups, per) == np.arange(groups)[:, None])
    if structure in ("limited", "nodes"):
        distinct = [len(set(row)) for row in group_of.reshape(-1, k).tolist()]
        assert max(distinct) <= limit
