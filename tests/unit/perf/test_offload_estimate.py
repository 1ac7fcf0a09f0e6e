"""Expected expert-cache misses in the closed-form estimate: Che's approximation against the
cache simulator, and the estimate against the serving simulator on the offload example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.io.scenario import load_scenario
from hwsim.perf.estimate import estimate
from hwsim.perf.expert_cache import ExpertCache
from hwsim.perf.offload_estimate import dram_probabilities, hit_probabilities

REPO = Path(__file__).resolve().parents[3]
OFFLOAD = REPO / "examples" / "mixtral-offload-24gb"
FLASH = REPO / "examples" / "flash-bundling"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.001, 0.999), min_size=2, max_size=40), st.integers(0, 45))
def test_lru_holds_capacity_experts_on_average(access, capacity):
    a = np.array(access)
    h = hit_probabilities(a, capacity, "lru")
    assert np.all((h >= 0) & (h <= 1 + 1e-12))
    assert h.sum() == pytest.approx(min(capacity, a.size), abs=1e-6)
    # more often touched, more often resident
    order = np.argsort(a)
    assert np.all(np.diff(h[order]) >= -1e-9)
    if capacity < a.size:
        assert np.all(hit_probabilities(a, capacity + 1, "lru") >= h - 1e-12)


def test_static_pins_the_most_touched():
    a = np.array([0.2, 0.9, 0.5, 0.1])
    np.testing.assert_array_equal(hit_probabilities(a, 2, "static"), [0, 1, 1, 0])
    np.testing.assert_array_equal(hit_probabilities(a, 2, "lfu"), [0, 1, 1, 0])
    np.testing.assert_array_equal(hit_probabilities(a, 9, "lru"), [1, 1, 1, 1])
    np.testing.assert_array_equal(hit_probabilities(a, 0, "lru"), [0, 0, 0, 0])


@pytest.mark.parametrize(("tokens", "capacity", "skew"), [(1, 2, 0.0), (4, 16, 0.0), (1, 8, 1.0), (8, 24, 0.8)])
def test_che_matches_the_lru_cache_simulator(tokens, capacity, skew):
    experts, k, steps = 64, 4, 4000
    rng = np.random.default_rng(7)
    w = 1.0 / np.arange(1, experts + 1) ** skew
    w /= w.sum()
    # top-k without replacement, weighted (Gumbel top-k), for every token of every step at once
    keys = np.log(w) + rng.gumbel(size=(steps * tokens, experts))
    picks = np.argpartition(-keys, k - 1, axis=1)[:, :k].reshape(steps, tokens, 1, k)
    cache = ExpertCache(1, experts, capacity, "lru", warm=False)
    hits = touched = 0
    for i in range(steps):
        res = cache.step(picks[i])
        if i >= 200:                      # past the cold start
            hits += int(res.hits.sum())
            touched += int(res.hits.sum() + res.misses.sum())
    # per-token inclusion of the same draw, estimated from the draws
    inc = np.bincount(picks.ravel(), minlength=experts) / (steps * tokens)
    a = 1.0 - (1.0 - inc) ** tokens
    h = hit_probabilities(a, capacity, "lru")
    assert (a * h).sum() / a.sum() == pytest.approx(hits / touched, abs=0.03)


@pytest.mark.parametrize("config", ["lru", "no-cache", "int4-lru"])
def test_estimate_prices_misses_like_the_simulator(config):
    from hwsim.sim.run import simulate
    from hwsim.workload.request import Request
    from hwsim.workload.routing import make_routing

    sc = load_scenario(OFFLOAD / f"{config}.yaml")
    moe = sc.model.moe
    routing = make_routing(sc.deployment.experts.routing, moe)
    inc = np.stack([routing.inclusion(layer) for layer in range(sc.model.num_moe_layers)])
    est = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=32, output_tokens=64, batch=1,
                   expert_inclusion=inc)
    (pool,) = est.pools
    assert pool.offload is not None and pool.offload.time_s > 0
    res = simulate(sc, [Request(request_id=0, arrival_s=0.0, input_tokens=32, output_tokens=64)], seed=0)
    r = res.requests
    tpot = (r["finish_s"][0] - r["first_token_s"][0]) / (r["generated_tokens"][0] - 1)
    assert est.tpot_s == pytest.approx(tpot, rel=0.2)


def test_without_offload_nothing_is_added():
    sc = load_scenario(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml")
    est = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=512, output_tokens=64)
    assert est.pools[0].offload is None
    assert est.pools[0].step_s == pytest.approx(est.pools[0].step.time_s)


def test_a_deployment_wide_cache_costs_only_the_pool_that_overflows():
    """SGLang's GB200 part II layout: the 4-rank prefill pool holds 140 GB of its experts and
    prefetches the rest from Grace memory; the 48-rank decode pool holds all of its own."""
    from dataclasses import replace

    sc = load_scenario(REPO / "validation" / "scenarios" / "sglang-dsv3-gb200-nvl72-part2-b.yaml")
    est = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=2000, output_tokens=100)
    prefill, decode = est.pools
    assert decode.offload is not None
    assert decode.offload.misses == 0 and decode.offload.time_s == 0 and decode.offload.hit_rate == 1
    assert prefill.offload is not None
    assert prefill.offload.misses > 0 and 0.5 < prefill.offload.hit_rate < 1
    # a prefill step touches every expert: each miss fetches a whole expert
    assert prefill.offload.fetched_bytes > 20e9
    # fetched during the previous layer's compute, which is longer: nothing is exposed
    assert prefill.offload.time_s == pytest.approx(0, abs=1e-6)
    # without the prefetch the same misses wait on the host link
    cache = sc.deployment.experts.offload
    assert cache is not None
    no_prefetch = replace(sc.deployment, experts=replace(sc.deployment.experts,
                          offload=replace(cache, prefetch=replace(cache.prefetch, source="none"))))
    slow = estimate(sc.cluster, sc.model, no_prefetch, input_tokens=2000, output_tokens=100).pools[0]
    assert slow.offload is not None and slow.offload.time_s > 0.05 * slow.step_s
    assert slow.step_s > prefill.step_s


def test_dram_window_of_a_pinned_cache_is_the_chance_of_a_recent_touch():
    a = np.array([0.9, 0.5, 0.1])
    # static: the misses are the unpinned experts; any touch in the last W steps keeps them in DRAM
    np.testing.assert_allclose(dram_probabilities(a, 1, "static", 3), 1 - (1 - a) ** 3)
    assert np.all(dram_probabilities(a, 1, "lru", 0) == 0)
    assert np.all(dram_probabilities(a, 3, "lru", 5) == 0)          # everything resident: no misses
    # LRU: a miss means no touch for t_c steps; only a longer window finds it in DRAM
    short = dram_probabilities(np.full(8, 0.25), 4, "lru", 2)
    longer = dram_probabilities(np.full(8, 0.25), 4, "lru", 6)
    assert np.all(short == 0) and np.all((longer > 0) & (longer < 1))


@pytest.mark.parametrize(("capacity", "window"), [(8, 6), (16, 12), (4, 3)])
def test_dram_window_matches_the_lru_cache_simulator(capacity, window):
    """Share of LRU misses whose expert was used in the previous ``window`` steps (the
    simulator's DRAM window) against Che's prediction, on skewed single-token steps."""
    experts, k, steps = 64, 4, 6000
    rng = np.random.default_rng(11)
    w = 1.0 / np.arange(1, experts + 1) ** 0.9
    w /= w.sum()
    keys = np.log(w) + rng.gumbel(size=(steps, experts))
    picks = np.argpartition(-keys, k - 1, axis=1)[:, :k].reshape(steps, 1, 1, k)
    cache = ExpertCache(1, experts, capacity, "lru", warm=False)
    last_used = np.full(experts, -(10**9))
    in_window = missed = 0
    for i in range(steps):
        res = cache.step(picks[i])
        if i >= 300:
            missed += res.miss_expert.size
            in_window += int((last_used[res.miss_expert] >= i - window).sum())
        last_used[picks[i].ravel()] = i
    inc = np.bincount(picks.ravel(), minlength=experts) / steps
    a = inc                                    # one token per step: touch chance = inclusion
    h = hit_probabilities(a, capacity, "lru")
    m = a * (1 - h)
    predicted = float((m * dram_probabilities(a, capacity, "lru", window)).sum() / m.sum())
    assert predicted == pytest.approx(in_window / missed, abs=0.05)


def test_estimate_credits_the_dram_window_like_the_simulator():
    """LLM in a flash's windowing on the flash-bundling example: the estimate's share of misses
    read from flash is the simulator's share of fetched bytes, and the window shortens the step."""
    from hwsim.sim.run import simulate
    from hwsim.workload.request import Request
    from hwsim.workload.routing import make_routing

    def run(config: str):
        sc = load_scenario(FLASH / f"{config}.yaml", extra=[FLASH / "hardware"])
        routing = make_routing(sc.deployment.experts.routing, sc.model.moe)
        inc = np.stack([routing.inclusion(layer) for layer in range(sc.model.num_moe_layers)])
        est = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=1, output_tokens=10_000, batch=1,
                       expert_inclusion=inc)
        return sc, est.pools[0]

    _, full = run("expert")
    sc, windowed = run("expert-window")
    assert full.offload is not None and windowed.offload is not None
    assert full.offload.flash_share == 1.0
    assert 0.3 < windowed.offload.flash_share < 0.9
    assert windowed.step_s < 0.85 * full.step_s
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=128, output_tokens=64) for i in range(2)]
    res = simulate(sc, reqs, seed=0)
    assert res.offload is not None
    flash = float(res.offload.steps["flash_bytes"].sum())
    fetched = float(res.offload.steps["fetched_bytes"].sum())
    assert windowed.offload.flash_share == pytest.approx(flash / fetched, abs=0.05)
