"""Invariants of expert-cache replay: LRU is a stack algorithm, Belady is optimal, an
unbounded cache misses only on first use."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.perf import expert_cache as ec

traces = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "tokens": st.integers(1, 60),
    "layers": st.integers(1, 3),
    "experts": st.integers(2, 12),
    "k": st.integers(1, 4),
    "step": st.integers(1, 3),
    "scope": st.sampled_from(ec.SCOPES),
    "skew": st.floats(0.0, 2.0),
})


def _ids(t: dict) -> np.ndarray:
    rng = np.random.default_rng(t["seed"])
    k = min(t["k"], t["experts"])
    weights = np.arange(1, t["experts"] + 1, dtype=float) ** -t["skew"]
    keys = rng.random((t["tokens"], t["layers"], t["experts"])) ** (1.0 / weights)
    ids = np.argsort(-keys, axis=2)[:, :, :k].astype(np.int32)
    ids[rng.random(ids.shape) < 0.1] = -1
    return ids


@settings(max_examples=60, deadline=None)
@given(t=traces, a=st.integers(0, 40), b=st.integers(0, 40))
def test_a_larger_lru_cache_never_hits_less(t, a, b):
    ids = _ids(t)
    small, large = sorted((a, b))
    kw = {"scope": t["scope"], "tokens_per_step": t["step"]}
    lo = ec.replay_trace(ids, t["experts"], small, "lru", **kw)
    hi = ec.replay_trace(ids, t["experts"], large, "lru", **kw)
    assert hi.hits.sum() >= lo.hits.sum()
    if t["scope"] == "layer":                    # per-layer caches are independent
        assert (hi.hits >= lo.hits).all()


@settings(max_examples=60, deadline=None)
@given(t=traces, cap=st.integers(0, 30), warm=st.booleans(), window=st.integers(1, 4))
def test_belady_hits_at_least_every_on_demand_policy(t, cap, warm, window):
    ids = _ids(t)
    pop = ec.trace_counts(ids, t["experts"])[:, ::-1].copy()      # some popularity, not the truth
    kw = {"scope": t["scope"], "tokens_per_step": t["step"], "popularity": pop, "warm": warm}
    best = ec.replay_trace(ids, t["experts"], cap, "belady", **kw).hits.sum()
    for policy in ("lru", "lfu", "fifo", "window"):
        assert best >= ec.replay_trace(ids, t["experts"], cap, policy, window=window, **kw).hits.sum(), policy
    if warm:                                      # static starts from the same warm set
        assert best >= ec.replay_trace(ids, t["experts"], cap, "static", **kw).hits.sum()


@settings(max_examples=40, deadline=None)
@given(t=traces, policy=st.sampled_from(("lru", "lfu", "fifo", "belady", "window")))
def test_an_unbounded_cache_misses_only_on_first_use(t, policy):
    ids = _ids(t)
    experts, layers = t["experts"], t["layers"]
    cap = experts if t["scope"] == "layer" else experts * layers
    kw = {"scope": t["scope"], "tokens_per_step": t["step"], "window": 10**6}
    cold = ec.replay_trace(ids, experts, cap, policy, **kw)
    first_uses = [np.unique(ids[:, layer][ids[:, layer] >= 0]).size for layer in range(layers)]
    assert cold.misses.tolist() == first_uses
    warm = ec.replay_trace(ids, experts, cap, policy, popularity=np.ones((layers, experts)),
                           warm=True, **kw)
    assert warm.misses.sum() == 0
    assert warm.hits.sum() == cold.hits.sum() + cold.misses.sum()


@settings(max_examples=40, deadline=None)
@given(t=traces, cap=st.integers(0, 30), m=st.integers(1, 8))
def test_segment_bound_grows_with_the_cache_and_shrinks_with_the_segment(t, cap, m):
    ids = _ids(t)
    kw = {"scope": t["scope"]}
    base = ec.replay_trace(ids, t["experts"], cap, "segment", segment_tokens=m, **kw)
    assert ec.replay_trace(ids, t["experts"], cap + 1, "segment", segment_tokens=m, **kw).hits.sum() >= base.hits.sum()
    # one-token segments, the finest, give the oracle the most
    assert ec.replay_trace(ids, t["experts"], cap, "segment", segment_tokens=1, **kw).hits.sum() >= base.hits.sum()
