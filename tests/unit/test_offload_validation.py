"""Offload against published measurements: the routing assumption of the offload examples
reproduces moe-lrc's LRU expert-cache hit rates (validation case
moe-lrc-toy-lru-hit-and-offload-throughput, ../shared/validation/cases-offload-placement.yaml)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.perf.expert_cache import replay_trace
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_stream import token_trace

MOE_LRC_TOY_LRU_HIT = {1: 0.2937, 2: 0.4741, 3: 0.6141}
"""moe-lrc baseline toy model (64 experts, top-8, 8 layers): LRU hit rate of a per-layer cache of
m x top-k experts, m = 1, 2, 3 (src/D3_tp_plot.ipynb outputs, averaged over datasets)."""


def test_example_routing_reproduces_moe_lrc_lru_hit_rates():
    toy = MoESpec(num_experts=64, top_k=8, expert_ffn_dim=1024)
    routing = make_routing(RoutingRef(model="zipf", params={"skew": 0.8, "locality": {"reuse": 0.1}}), toy)
    trace = token_trace(routing, np.random.default_rng(0), 2000, 8, sequence_tokens=500)
    for m, measured in MOE_LRC_TOY_LRU_HIT.items():
        hwsim = replay_trace(trace.ids, 64, m * 8, "lru").hit_rate
        assert hwsim == pytest.approx(measured, abs=0.03), (m, hwsim)
    # and the fit is not trivially true: independent uniform routing misses it by far
    uniform = make_routing(RoutingRef(model="uniform"), toy)
    plain = token_trace(uniform, np.random.default_rng(0), 2000, 8, sequence_tokens=500)
    assert replay_trace(plain.ids, 64, 8, "lru").hit_rate < MOE_LRC_TOY_LRU_HIT[1] - 0.1
