"""Expert-cache replay kernels: equal to their pure-Python twins, and hand-computed traces."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hwsim.perf import expert_cache as ec
from hwsim.perf import expert_cache_reference as ref

SEED = 20250611
CACHE_POLICIES = ("lru", "lfu", "fifo", "static", "window", "belady")


def random_ids(rng: np.random.Generator, tokens: int, layers: int, experts: int, k: int,
               holes: float = 0.1, skew: float = 0.0) -> np.ndarray:
    """Top-k ids (distinct per token and layer), some -1, optionally Zipf-skewed."""
    weights = (np.arange(1, experts + 1) ** -skew)
    keys = rng.random((tokens, layers, experts)) ** (1.0 / weights)    # weighted sampling w/o replacement
    ids = np.argsort(-keys, axis=2)[:, :, :k].astype(np.int32)
    ids[rng.random(ids.shape) < holes] = -1
    return ids


@pytest.mark.parametrize("scope", ec.SCOPES)
@pytest.mark.parametrize("policy", CACHE_POLICIES)
def test_replay_matches_reference(policy, scope):
    rng = np.random.default_rng(SEED + CACHE_POLICIES.index(policy))
    for _ in range(40):
        layers, experts = int(rng.integers(1, 4)), int(rng.integers(2, 10))
        k = int(rng.integers(1, min(experts, 4) + 1))
        ids = random_ids(rng, int(rng.integers(1, 40)), layers, experts, k, skew=float(rng.uniform(0, 1.5)))
        total = experts * (layers if scope == "device" else 1)
        cap = int(rng.integers(0, total + 2))
        step, window, warm = int(rng.integers(1, 4)), int(rng.integers(1, 4)), bool(rng.random() < 0.5)
        pop = rng.integers(0, 5, size=(layers, experts)).astype(float)
        got = ec.replay_trace(ids, experts, cap, policy, scope=scope, tokens_per_step=step,
                              window=window, popularity=pop, warm=warm)
        prefill = ref.popular_first(pop, cap, scope) if (warm or policy == "static") else []
        hits, misses = ref.replay(ids, experts, cap, policy, scope, step, window, prefill)
        assert got.hits.tolist() == hits and got.misses.tolist() == misses, (policy, scope, cap, step)


@pytest.mark.parametrize("scope", ec.SCOPES)
def test_segment_bound_matches_reference(scope):
    rng = np.random.default_rng(SEED + 99)
    for _ in range(60):
        layers, experts = int(rng.integers(1, 4)), int(rng.integers(2, 10))
        k = int(rng.integers(1, min(experts, 4) + 1))
        tokens = int(rng.integers(1, 50))
        ids = random_ids(rng, tokens, layers, experts, k)
        starts = sorted({0, *rng.integers(0, tokens, 2).tolist()})
        cap, m = int(rng.integers(0, experts + 2)), int(rng.integers(1, 9))
        got = ec.replay_trace(ids, experts, cap, "segment", scope=scope, segment_tokens=m,
                              sequence_starts=np.array(starts))
        hits, uses = ref.segment_hits(ids, starts, m, experts, cap, scope)
        assert got.hits.tolist() == hits
        assert (got.hits + got.misses).tolist() == uses


@pytest.mark.parametrize("scope", ec.SCOPES)
@pytest.mark.parametrize("policy", ec.ExpertCache.POLICIES)
def test_expert_cache_steps_match_reference(policy, scope):
    """The stateful cache, step by step with varying batches, equals the reference cache."""
    rng = np.random.default_rng(SEED + 7)
    layers, experts, k = 3, 8, 2
    cap = 3 if scope == "layer" else 7
    pop = rng.random((layers, experts))
    cache = ec.ExpertCache(layers, experts, cap, policy, scope=scope, window=2, popularity=pop)
    model = ref.ReferenceCache(experts, cap, policy, scope, window=2)
    model.prefill(ref.popular_first(pop, cap, scope))
    for _ in range(60):
        ids = random_ids(rng, int(rng.integers(0, 4)), layers, experts, k, skew=1.0)
        out = cache.step(ids)
        for layer in range(layers):
            hits, missed = model.access(layer, ids[:, layer, :].ravel().tolist())
            assert out.hits[layer] == hits
            mine = out.miss_layer == layer
            assert out.miss_expert[mine].tolist() == [e for _, e in missed]
        model.end_step()
        for layer in range(layers):
            held = sorted(e for part in model.parts.values() for (lay, e) in part if lay == layer)
            assert np.flatnonzero(cache.resident(layer)).tolist() == held


# -- hand-computed -------------------------------------------------------------------------
# one layer, four experts, top-1: expert 0 four times, 1 twice, 2 and 3 once
TINY = np.array([0, 0, 1, 2, 0, 1, 3, 0], dtype=np.int32).reshape(8, 1, 1)


def test_static_with_true_frequencies_holds_the_two_most_used():
    counts = np.array([[4.0, 2.0, 1.0, 1.0]])
    got = ec.replay_trace(TINY, 4, 2, "static", popularity=counts)
    assert got.hits.tolist() == [6] and got.misses.tolist() == [2]      # uses of 0 and 1
    assert got.hit_rate == pytest.approx(6 / 8)
    # without a popularity the trace's own counts are used: the same set
    assert ec.replay_trace(TINY, 4, 2, "static").hit_rate == pytest.approx(6 / 8)


def test_lru_and_belady_by_hand():
    # LRU, 2 slots: 0m 0h 1m 2m(-0) 0m(-1) 1m(-2) 3m(-0) 0m(-1): one hit
    assert ec.replay_trace(TINY, 4, 2, "lru").hits.tolist() == [1]
    # Belady keeps what is needed soonest: 0m 0h 1m 2m(dropped) 0h 1h 3m(drops 1) 0h
    assert ec.replay_trace(TINY, 4, 2, "belady").hits.tolist() == [4]
    # FIFO: 0m 0h 1m 2m(-0) 0m(-1) 1m(-2) 3m(-0) 0m(-1)
    assert ec.replay_trace(TINY, 4, 2, "fifo").hits.tolist() == [1]
    # LFU keeps 0 (most used) once it has two uses: 0m 0h 1m 2m(-1) 0h 1m(-2) 3m(-1) 0h
    assert ec.replay_trace(TINY, 4, 2, "lfu").hits.tolist() == [3]


def test_segment_bound_by_hand():
    # segments of 4: {0,0,1,2} best pair covers 3, {0,1,3,0} covers 3
    assert ec.replay_trace(TINY, 4, 2, "segment", segment_tokens=4).hits.tolist() == [6]
    # segments of 2 with 1 slot: 2 + 1 + 1 + 1
    assert ec.replay_trace(TINY, 4, 1, "segment", segment_tokens=2).hits.tolist() == [5]
    # a sequence starting at token 3: segments {0,0,1} | {2,0,1,3} {0}
    got = ec.replay_trace(TINY, 4, 1, "segment", segment_tokens=4, sequence_starts=np.array([0, 3]))
    assert got.hits.tolist() == [2 + 1 + 1]


def test_window_forgets_what_the_last_steps_did_not_use():
    # window of 2 steps, room for everything: a miss only when the last use is 2+ steps back
    ids = np.array([0, 1, 0, 2, 2, 1], dtype=np.int32).reshape(6, 1, 1)
    got = ec.replay_trace(ids, 4, 4, "window", window=2)
    assert got.hits.tolist() == [2]          # 0 at step 2, 2 at step 4; 1 at step 5 expired
    assert ec.replay_trace(ids, 4, 4, "lru").hits.tolist() == [3]


def test_batched_step_fetches_an_expert_once():
    ids = np.array([[[0, 1]], [[1, 2]], [[0, 1]], [[3, -1]]], dtype=np.int32)
    got = ec.replay_trace(ids, 4, 4, "lru", tokens_per_step=2)
    # step 1: {0, 1, 2} three misses; step 2: {0, 1, 3}: 0 and 1 hit
    assert got.misses.tolist() == [4] and got.hits.tolist() == [2]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="expert ids"):
        ec.replay_trace(TINY, 3, 2)
    with pytest.raises(ValueError, match="unknown cache policy"):
        ec.replay_trace(TINY, 4, 2, "mru")
    with pytest.raises(ValueError, match="shape"):
        ec.replay_trace(TINY[:, 0], 4, 2)
    with pytest.raises(ValueError, match="popularity"):
        ec.replay_trace(TINY, 4, 2, "static", popularity=np.ones((2, 4)))


def test_kernels_run_as_plain_python_with_jit_disabled():
    code = (
        "import numpy as np\n"
        "from hwsim.perf import expert_cache as ec, expert_cache_reference as ref\n"
        "assert not hasattr(ec.run, 'py_func')\n"
        "rng = np.random.default_rng(3)\n"
        "ids = np.argsort(rng.random((30, 2, 6)), axis=2)[:, :, :2].astype(np.int32)\n"
        "for policy in ('lru', 'lfu', 'fifo', 'window', 'belady'):\n"
        "    for scope in ('layer', 'device'):\n"
        "        got = ec.replay_trace(ids, 6, 3, policy, scope=scope, tokens_per_step=2, window=2)\n"
        "        want = ref.replay(ids, 6, 3, policy, scope, 2, 2)\n"
        "        assert (got.hits.tolist(), got.misses.tolist()) == want, policy\n"
        "seg = ec.replay_trace(ids, 6, 2, 'segment', segment_tokens=4)\n"
        "assert seg.hits.tolist() == ref.segment_hits(ids, [0], 4, 6, 2)[0]\n"
        "cache = ec.ExpertCache(2, 6, 2, 'lru')\n"
        "out = cache.step(ids[:3])\n"
        "assert (out.hits + out.misses).tolist() == [len(set(ids[:3, l].ravel())) for l in range(2)]\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
