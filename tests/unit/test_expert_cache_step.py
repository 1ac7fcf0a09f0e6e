"""ExpertCache, the simulator's per-step expert cache: conservation, miss records, prefetch."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.perf.expert_cache import CacheStep, ExpertCache


def _random_steps(rng: np.random.Generator, steps: int, layers: int, experts: int, k: int):
    for _ in range(steps):
        tokens = int(rng.integers(1, 6))
        ids = np.argsort(rng.random((tokens, layers, experts)), axis=2)[:, :, :k]
        ids[rng.random(ids.shape) < 0.1] = -1
        yield ids


@pytest.mark.parametrize("policy", ExpertCache.POLICIES)
@pytest.mark.parametrize("scope", ["layer", "device"])
def test_step_conserves_accesses_and_counts_miss_tokens(policy, scope):
    rng = np.random.default_rng(7)
    layers, experts, k = 3, 10, 3
    pop = rng.random((layers, experts))
    cache = ExpertCache(layers, experts, 4 if scope == "layer" else 9, policy, scope=scope,
                        window=2, popularity=pop)
    for ids in _random_steps(rng, 40, layers, experts, k):
        before = [cache.resident(layer).copy() for layer in range(layers)]
        out = cache.step(ids)
        assert isinstance(out, CacheStep)
        for layer in range(layers):
            picked = ids[:, layer, :]
            distinct = np.unique(picked[picked >= 0])
            assert out.hits[layer] + out.misses[layer] == distinct.size
            mine = out.miss_layer == layer
            missed = np.sort(out.miss_expert[mine])
            assert np.array_equal(missed, np.unique(missed))
            assert np.isin(missed, distinct).all()
            if scope == "layer":     # a device cache's earlier layers may evict this layer's experts
                assert out.hits[layer] == before[layer][distinct].sum()
                assert np.array_equal(missed, distinct[~before[layer][distinct]])
            else:
                assert not np.isin(distinct[~before[layer][distinct]], missed, invert=True).any()
            for e, n in zip(out.miss_expert[mine], out.miss_tokens[mine], strict=True):
                assert n == (picked == e).any(axis=1).sum()
        assert out.miss_tokens.sum() == sum(
            (ids[:, layer, :][:, :, None] == out.miss_expert[out.miss_layer == layer]).any(axis=1).sum()
            for layer in range(layers))
        cap = 4 if scope == "layer" else 9
        counts = [cache.resident(layer).sum() for layer in range(layers)]
        assert (max(counts) if scope == "layer" else sum(counts)) <= cap


def test_unbounded_cache_always_hits():
    cache = ExpertCache(2, 6, 6, "lru", warm=False)
    assert cache.unbounded
    out = cache.step(np.array([[[0, 5], [1, 2]], [[3, 4], [1, -1]]]))
    assert out.hits.tolist() == [4, 2] and out.misses.tolist() == [0, 0]
    assert out.miss_layer.size == 0
    device = ExpertCache(2, 6, 11, "lru", scope="device")
    assert not device.unbounded


def test_insert_prefetches_and_evicts_least_recent():
    cache = ExpertCache(1, 8, 2, "lru", warm=False)
    cache.step(np.array([[[0, 1]]]))
    assert cache.insert(0, np.array([1, 2])) == 1          # 1 already resident; 2 evicts 0
    assert np.flatnonzero(cache.resident(0)).tolist() == [1, 2]
    out = cache.step(np.array([[[0, 2]]]))
    assert out.hits.tolist() == [1] and out.miss_expert.tolist() == [0]


def test_static_keeps_its_popular_set():
    pop = np.array([[5.0, 1.0, 9.0, 0.0]])
    cache = ExpertCache(1, 4, 2, "static", popularity=pop)
    for _ in range(3):
        out = cache.step(np.array([[[1, 3]]]))
        assert out.misses.tolist() == [2]
    assert np.flatnonzero(cache.resident(0)).tolist() == [0, 2]
    assert cache.insert(0, np.array([1])) == 0
    with pytest.raises(ValueError, match="popularity"):
        ExpertCache(1, 4, 2, "static")


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown cache policy"):
        ExpertCache(1, 4, 2, "belady")
    with pytest.raises(ValueError, match="scope"):
        ExpertCache(1, 4, 2, scope="node")
    cache = ExpertCache(2, 4, 2)
    with pytest.raises(ValueError, match="expert ids"):
        cache.step(np.array([[[4], [0]]]))
    with pytest.raises(ValueError, match="shape"):
        cache.step(np.array([[0, 1]]))
