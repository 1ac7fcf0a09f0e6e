"""Routing models: the law of the sampler, the models' structure, their errors, rank loads.

Statistical checks use fixed seeds, so they are deterministic; their bounds are several
standard deviations wide. Speed is not asserted here (see the module docstring of
``hwsim.workload.routing`` for measured rates).
"""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from hwsim.errors import SpecError
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import (
    ROUTING_MODELS,
    ExpertPlacement,
    RoutingModel,
    UniformRouting,
    ZipfRouting,
    contiguous_placement,
    imbalance,
    make_routing,
    rank_loads,
    round_robin_placement,
)
from hwsim.workload.routing_inclusion import approx_counts, inclusion_probabilities
from hwsim.workload.routing_sampler import TopKSampler


def _moe(**kw: object) -> MoESpec:
    base: dict[str, object] = {"num_experts": 256, "top_k": 8, "expert_ffn_dim": 2048}
    base.update(kw)
    return MoESpec(**base)  # type: ignore[arg-type]


def _zipf(skew: float, moe: MoESpec | None = None, **params: object) -> ZipfRouting:
    model = make_routing(RoutingRef(model="zipf", params={"skew": skew, **params}), moe or _moe())
    assert isinstance(model, ZipfRouting)
    return model


UNIFORM = RoutingRef(model="uniform")
DSV3 = {"num_expert_groups": 8, "topk_groups": 4}


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _chi2(observed: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    keep = expected > 0
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


def _assert_fits(observed: np.ndarray, expected: np.ndarray, sigmas: float = 5.0) -> None:
    stat, df = _chi2(observed, expected)
    assert stat < df + sigmas * np.sqrt(2 * df), f"chi-square {stat:.1f} for {df} degrees of freedom"


# ---------------------------------------------------------------- exact law, by enumeration


def _pl_sets(w: list[float], k: int, groups: list[int] | None = None, topk: int | None = None) -> dict:
    """Exact law of the picked set: enumerate race orders with their Plackett-Luce weight and
    apply the (group-limited) acceptance rule of the module docstring."""
    probs: Counter = Counter()
    for order in itertools.permutations(range(len(w))):
        p, left = 1.0, float(sum(w))
        for s in order:
            p *= w[s] / left
            left -= w[s]
        picked: list[int] = []
        opened: list[int] = []
        for s in order:
            if groups is not None and topk is not None and groups[s] not in opened:
                if len(opened) >= topk:
                    continue
                opened.append(groups[s])
            picked.append(s)
            if len(picked) == k:
                break
        probs[frozenset(picked)] += p
    return probs


def _set_frequencies(ids: np.ndarray) -> Counter:
    return Counter(frozenset(row.tolist()) for row in ids)


def _compare_sets(ids: np.ndarray, law: dict) -> None:
    freq = _set_frequencies(ids)
    keys = list(law)
    assert set(freq) <= set(keys), "a token picked a set the law forbids"
    observed = np.array([freq.get(key, 0) for key in keys], dtype=float)
    expected = np.array([law[key] for key in keys]) * len(ids)
    _assert_fits(observed, expected)


W6 = [5.0, 3.0, 2.0, 1.0, 1.0, 0.5]
G6 = [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("path", ["small", "rounds", "race-continuation", "race-only"])
@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "grouped"])
def test_sampler_matches_the_enumerated_law_on_every_path(path, grouped):
    kw = {"group_of_slot": np.array(G6), "topk_groups": 2} if grouped else {}
    smp = TopKSampler(np.array(W6), 3, **kw)  # type: ignore[arg-type]
    if path == "race-continuation":
        smp.cap = smp.first_round  # every token still short after the first round races
    if path == "race-only":
        smp.first_round = smp.cap = 0
    rng = _rng(11)
    if path == "small":
        ids = np.concatenate([smp.ids(rng, 200) for _ in range(150)])
    else:
        ids = smp.ids(rng, 30_000)
    assert all(len(set(row)) == 3 for row in ids.tolist())
    _compare_sets(ids, _pl_sets(W6, 3, G6 if grouped else None, 2 if grouped else None))


@pytest.mark.parametrize("path", ["small", "rounds", "race-continuation"])
def test_each_block_follows_its_own_group_table(path):
    default, other = np.array(G6), np.array([1, 2, 0, 2, 1, 0])  # same group sizes
    smp = TopKSampler(np.array(W6), 3, group_of_slot=default, topk_groups=2)
    if path == "race-continuation":
        smp.cap = smp.first_round
    rng = _rng(5)
    tables = np.stack([default, other])
    if path == "small":
        counts = sum(smp.counts(rng, 100, 2, groups=tables) for _ in range(200))
        tokens = 20_000
    else:
        tokens = 20_000
        counts = smp.counts(rng, tokens, 2, groups=tables)
    for row, table in zip(counts, tables, strict=True):
        law = _pl_sets(W6, 3, table.tolist(), 2)
        pi = np.array([sum(p for s, p in law.items() if i in s) for i in range(6)])
        assert row.sum() == 3 * tokens
        z = (row - tokens * pi) / np.sqrt(tokens * pi * (1 - pi) + 1e-12)
        assert np.abs(z).max() < 5
    _compare_sets(smp.ids(_rng(2), 20_000, groups=other), _pl_sets(W6, 3, other.tolist(), 2))
    with pytest.raises(ValueError, match="group sizes"):
        smp.counts(rng, 10, 1, groups=np.array([[0, 0, 0, 1, 1, 2]]))


def test_group_limit_with_one_group_picks_a_whole_group():
    w = [3.0, 1.0, 2.0, 2.0]
    smp = TopKSampler(np.array(w), 2, group_of_slot=np.array([0, 0, 1, 1]), topk_groups=1)
    ids = smp.ids(_rng(), 20_000)
    assert {frozenset(r) for r in ids.tolist()} == {frozenset({0, 1}), frozenset({2, 3})}
    # the group with the best expert: max-score groups race with their total weight
    share0 = np.mean(np.isin(ids[:, 0], [0, 1]))
    assert share0 == pytest.approx(4 / 8, abs=0.015)


def test_sampler_never_picks_zero_weight_slots_and_takes_all_when_it_must():
    smp = TopKSampler(np.array([1.0, 0.0, 2.0, 3.0, 0.0]), 2)
    assert not np.isin(smp.ids(_rng(), 5000), [1, 4]).any()
    every = TopKSampler(np.array([1.0, 0.0, 2.0, 3.0]), 3)
    assert every.counts(_rng(), 10).tolist() == [10, 0, 10, 10]
    assert sorted(every.ids(_rng(), 1)[0].tolist()) == [0, 2, 3]


def test_heavy_skew_still_gives_distinct_experts():
    # skew 3 on 16 experts with k = 12: rejection is hopeless, the race takes over
    model = _zipf(3.0, _moe(num_experts=16, top_k=12))
    ids = model.expert_ids(_rng(), 3000)
    assert all(len(set(row)) == 12 for row in ids.tolist())
    counts = model.expert_counts(_rng(), 3000, 1)[0]
    assert counts.sum() == 3000 * 12 and counts.max() <= 3000


# ---------------------------------------------------------------- determinism, shapes


@pytest.mark.parametrize("ref", [UNIFORM, RoutingRef(model="zipf", params={"skew": 1.1})], ids=["uniform", "zipf"])
def test_same_seed_same_counts_other_seed_other_counts(ref):
    model = make_routing(ref, _moe(**DSV3))
    a = model.expert_counts(_rng(5), 1000, 3)
    b = make_routing(ref, _moe(**DSV3)).expert_counts(_rng(5), 1000, 3)
    c = model.expert_counts(_rng(6), 1000, 3)
    assert a.shape == (3, 256) and a.dtype == np.int64
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(model.expert_ids(_rng(1), 50, 2), model.expert_ids(_rng(1), 50, 2))


def test_layers_may_be_a_count_or_indices():
    model = _zipf(1.0)
    both = model.expert_counts(_rng(), 100, [0, 7])
    assert both.shape == (2, 256)
    assert model.expert_counts(_rng(), 0, 2).tolist() == np.zeros((2, 256), int).tolist()
    assert model.expert_counts(_rng(), 10, 0).shape == (0, 256)
    with pytest.raises(ValueError, match="tokens"):
        model.expert_counts(_rng(), -1, 1)
    with pytest.raises(ValueError, match="layer"):
        model.expert_counts(_rng(), 10, [-1])


def _example_params(name: str, folder) -> dict:
    if name == "zipf":
        return {"skew": 1.0}
    if name == "mixture":
        return {"components": [{"weight": 1, "model": "uniform"}]}
    if name == "trace":
        path = folder / "counts.npz"
        np.savez(path, counts=np.ones((2, 256)))
        return {"file": str(path), "mode": "histogram"}
    return {}


def test_models_satisfy_the_protocol(tmp_path):
    for name in ROUTING_MODELS:
        model = make_routing(RoutingRef(model=name, params=_example_params(name, tmp_path)), _moe())
        assert isinstance(model, RoutingModel)
        assert (model.num_experts, model.top_k) == (256, 8)
        assert model.step_counts(_rng(), 10, 1).sum() == 80


# ---------------------------------------------------------------- uniform and zipf


def test_uniform_counts_sum_to_assignments_and_are_flat():
    tokens = 50_000
    counts = make_routing(UNIFORM, _moe()).expert_counts(_rng(), tokens, 4)
    assert (counts.sum(axis=1) == tokens * 8).all()
    for row in counts:
        # per-expert counts are Binomial(T, k/E): chi-square / df about 1 - k/E
        stat, df = _chi2(row.astype(float), np.full(256, tokens * 8 / 256))
        assert 0.65 < stat / df < 1.3


def test_zipf_skew_zero_is_uniform():
    zipf0, uniform = _zipf(0.0), make_routing(UNIFORM, _moe())
    a = zipf0.expert_counts(_rng(3), 20_000, 2)
    b = uniform.expert_counts(_rng(3), 20_000, 2)
    # the same draws, only the expert labels permuted
    assert np.array_equal(np.sort(a, axis=1), np.sort(b, axis=1))
    assert np.allclose(zipf0.inclusion(0), 8 / 256)


def test_larger_skew_gives_larger_max_over_mean():
    tokens, place = 20_000, contiguous_placement(256, 32)
    peaks, ranks = [], []
    for skew in (0.0, 0.5, 1.0, 1.5):
        counts = _zipf(skew).expert_counts(_rng(), tokens, 4)
        peaks.append(float(np.mean(counts.max(axis=1) / counts.mean(axis=1))))
        ranks.append(imbalance(rank_loads(counts, place)))
    assert peaks == sorted(peaks) and peaks[-1] > 10 * peaks[0] / 1.2
    assert ranks == sorted(ranks)


def test_uniform_imbalance_over_32_ranks_approaches_one():
    model = make_routing(RoutingRef(model="uniform", params={"exact_max_tokens": None}), _moe())
    few = imbalance(rank_loads(model.expert_counts(_rng(), 256, 4), contiguous_placement(256, 32)))
    many = imbalance(rank_loads(model.expert_counts(_rng(), 1_000_000, 2), contiguous_placement(256, 32)))
    assert many < 1.01 < few


def test_zipf_layers_differ_and_permutations_are_seeded():
    model = _zipf(1.2)
    hot = [int(np.argmax(model.popularity(layer))) for layer in range(8)]
    assert len(set(hot)) > 4
    assert np.array_equal(model.popularity(3), _zipf(1.2).popularity(3))
    assert not np.array_equal(model.popularity(3), _zipf(1.2, seed_permutation=9).popularity(3))
    same = _zipf(1.2, hot_shift=0)
    assert np.array_equal(same.popularity(0), same.popularity(5))
    shifted = _zipf(1.2, hot_shift=3)
    assert np.array_equal(np.roll(shifted.popularity(0), 3), shifted.popularity(1))
    sorted_model = _zipf(1.2, seed_permutation=None)
    assert np.all(np.diff(sorted_model.popularity(4)) < 0)
    assert model.popularity(2).sum() == pytest.approx(1.0)


def test_layers_sampled_together_keep_their_own_hot_experts():
    model = _zipf(1.3, exact_max_tokens=None)
    counts = model.expert_counts(_rng(), 20_000, 6)
    assert (counts.sum(axis=1) == 160_000).all()
    hot = [int(np.argmax(model.popularity(layer))) for layer in range(6)]
    assert np.argmax(counts, axis=1).tolist() == hot
    approx = _zipf(1.3, exact_max_tokens=0).expert_counts(_rng(), 20_000, 6)
    assert (approx.sum(axis=1) == 160_000).all() and np.argmax(approx, axis=1).tolist() == hot


def test_counts_follow_the_popularity():
    model = _zipf(1.1, exact_max_tokens=None)
    counts = model.expert_counts(_rng(), 100_000, [2])[0]
    pi = model.inclusion(2)
    assert pi.sum() == pytest.approx(8.0)
    assert np.argmax(counts) == np.argmax(model.popularity(2))
    z = (counts - 100_000 * pi) / np.sqrt(100_000 * pi * (1 - pi))
    assert np.abs(z).max() < 5


# ---------------------------------------------------------------- MoE structure


def test_group_limited_tokens_use_at_most_topk_groups():
    for ref in (UNIFORM, RoutingRef(model="zipf", params={"skew": 1.1})):
        model = make_routing(ref, _moe(**DSV3))
        ids = model.expert_ids(_rng(), 2000, 1)
        groups = ids // 32
        assert all(len(set(row)) <= 4 for row in groups.tolist())
        assert all(len(set(row)) == 8 for row in ids.tolist())


def test_group_limited_counts_stay_exact_above_the_threshold():
    model = make_routing(UNIFORM, _moe(**DSV3))
    a = model.expert_counts(_rng(), 6000, 1)
    b = make_routing(RoutingRef(model="uniform", params={"exact_max_tokens": None}),
                     _moe(**DSV3)).expert_counts(_rng(), 6000, 1)
    assert np.array_equal(a, b)


def test_moge_takes_top_k_over_groups_from_every_group():
    moe = _moe(num_experts=64, num_expert_groups=8, moge=True)
    model = _zipf(1.5, moe)
    ids = model.expert_ids(_rng(), 500, 3)
    assert all(sorted(set(row)) == list(range(8)) for row in (ids // 8).tolist())
    counts = model.expert_counts(_rng(), 10_000, 2)
    assert (counts.reshape(2, 8, 8).sum(axis=2) == 10_000).all()
    balanced = imbalance(rank_loads(counts, contiguous_placement(64, 8)))
    assert balanced == pytest.approx(1.0)


def test_one_pick_per_token_counts_are_multinomial():
    smp = TopKSampler(np.array([4.0, 2.0, 1.0, 1.0]), 1)
    counts = smp.counts(_rng(), 80_000, 3)
    assert (counts.sum(axis=1) == 80_000).all()
    _assert_fits(counts.sum(axis=0).astype(float), 3 * 80_000 * np.array([0.5, 0.25, 0.125, 0.125]))
    pangu = make_routing(UNIFORM, _moe(num_experts=64, num_expert_groups=8, moge=True))
    assert (pangu.expert_counts(_rng(), 1000, 2).reshape(2, 8, 8).sum(axis=2) == 1000).all()


def test_zero_experts_take_slots_but_no_load():
    longcat = _moe(num_experts=512, top_k=12, num_zero_experts=256)
    uniform = make_routing(UNIFORM, longcat)
    ids = uniform.expert_ids(_rng(), 4000)
    assert ids.min() == -1 and ids.max() < 512
    real = (ids >= 0).sum(axis=1)
    assert real.mean() == pytest.approx(8.0, abs=0.05)  # 12 x 512 / 768
    skewed = _zipf(1.0, longcat)
    counts = skewed.expert_counts(_rng(), 20_000, 1)
    assert counts.sum() / 20_000 == pytest.approx(8.0, abs=0.05)
    assert skewed.inclusion(0).sum() == pytest.approx(8.0, abs=1e-6)
    published = make_routing(UNIFORM, _moe(num_experts=512, top_k=12, num_zero_experts=256,
                                           expected_real_experts=9.5))
    assert published.expert_counts(_rng(), 20_000, 1).sum() / 20_000 == pytest.approx(9.5, abs=0.05)


# ---------------------------------------------------------------- inclusion and approximation


def test_inclusion_probabilities_match_a_hand_computation():
    # w = (2, 1, 1), k = 2: pi_0 = 1/2 + 2 * (1/4)(2/3) = 5/6, pi_1 = pi_2 = 7/12
    assert inclusion_probabilities(np.array([2.0, 1.0, 1.0]), 2) == pytest.approx([5 / 6, 7 / 12, 7 / 12], abs=1e-8)
    w = np.array(W6)
    law = _pl_sets(W6, 3)
    exact = np.array([sum(p for s, p in law.items() if i in s) for i in range(6)])
    assert inclusion_probabilities(w, 3) == pytest.approx(exact, abs=1e-8)
    assert inclusion_probabilities(w, 1) == pytest.approx(w / w.sum())
    skewed = inclusion_probabilities(np.arange(1, 769) ** -1.3, 12)
    assert skewed.sum() == pytest.approx(12, abs=1e-6) and np.all(np.diff(skewed) <= 0)


def test_approximate_counts_keep_the_total_and_the_mean():
    pi = inclusion_probabilities(np.arange(1, 257) ** -1.1, 8)
    draws = np.stack([approx_counts(_rng(i), 8192, pi, 8) for i in range(300)])
    assert (draws.sum(axis=1) == 8192 * 8).all() and draws.max() <= 8192
    z = (draws.mean(axis=0) - 8192 * pi) / np.sqrt(8192 * pi * (1 - pi) / 300 + 1e-12)
    assert np.abs(z).max() < 5


def test_approximation_agrees_with_the_exact_sampler():
    # the same layer, 150 steps of 8192 tokens each way: mean, spread and rank imbalance
    exact = _zipf(1.1, exact_max_tokens=None)
    approx = _zipf(1.1, exact_max_tokens=0)
    place = contiguous_placement(256, 32)
    a = np.stack([exact.expert_counts(_rng(i), 8192, [1])[0] for i in range(150)])
    b = np.stack([approx.expert_counts(_rng(i), 8192, [1])[0] for i in range(150)])
    pi = exact.inclusion(1)
    for draws in (a, b):
        z = (draws.mean(axis=0) - 8192 * pi) / np.sqrt(8192 * pi * (1 - pi) / 150 + 1e-12)
        assert np.abs(z).max() < 5
    hot = np.argsort(pi)[-20:]  # the hottest experts, where the approximation differs most
    ratio = b[:, hot].std(axis=0).mean() / a[:, hot].std(axis=0).mean()
    assert 0.8 < ratio < 1.25
    imb_a = np.mean([imbalance(rank_loads(c, place)) for c in a])
    imb_b = np.mean([imbalance(rank_loads(c, place)) for c in b])
    assert imb_b == pytest.approx(imb_a, rel=0.02)


def test_one_million_tokens_run():
    # a smoke run of the exact sampler at scale (its speed is measured, not asserted)
    model = _zipf(1.1, exact_max_tokens=None)
    counts = model.expert_counts(_rng(), 1_000_000, 1)
    assert counts.sum() == 8_000_000 and counts.max() <= 1_000_000


# ---------------------------------------------------------------- errors


def test_unknown_model_lists_the_choices():
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="zpif"), _moe())
    text = str(err.value)
    assert "experts.routing.model" in text and "uniform, zipf" in text and "did you mean 'zipf'" in text
    assert {"uniform", "zipf", "mixture"} <= set(ROUTING_MODELS.names())


@pytest.mark.parametrize(
    ("params", "where", "words"),
    [
        ({"skew": -1}, "experts.routing.skew", ">= 0"),
        ({"skew": "1.1"}, "experts.routing.skew", "number"),
        ({"skew": True}, "experts.routing.skew", "number"),
        ({"skew": float("nan")}, "experts.routing.skew", "finite"),
        ({}, "experts.routing.skew", "needs a skew"),
        ({"skew": 1, "skwe": 2}, "experts.routing.skwe", "did you mean 'skew'"),
        ({"skew": 1, "hot_shift": 1.5}, "experts.routing.hot_shift", "integer"),
        ({"skew": 1, "seed_permutation": -2}, "experts.routing.seed_permutation", ">= 0"),
        ({"skew": 1, "exact_max_tokens": "many"}, "experts.routing.exact_max_tokens", "integer"),
    ],
)
def test_bad_zipf_parameters_name_their_path(params, where, words):
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="zipf", params=params), _moe())
    assert err.value.path == where
    assert words in str(err.value)


def test_uniform_takes_no_skew_and_paths_can_be_prefixed():
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="uniform", params={"skew": 1}), _moe(), path="deployment.experts.routing")
    assert err.value.path == "deployment.experts.routing.skew"
    assert "known: exact_max_tokens" in str(err.value)


def test_unsupported_structures_are_spec_errors():
    with pytest.raises(SpecError, match="zero-computation"):
        make_routing(UNIFORM, _moe(num_zero_experts=8, **DSV3))
    with pytest.raises(SpecError, match="not reachable"):
        make_routing(UNIFORM, _moe(num_experts=16, top_k=4, num_zero_experts=2, expected_real_experts=1.0))


# ---------------------------------------------------------------- placements and loads


def test_placements():
    assert np.argmax(contiguous_placement(8, 4).share, axis=1).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert np.argmax(round_robin_placement(8, 4).share, axis=1).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert np.argmax(contiguous_placement(10, 4).share, axis=1).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        contiguous_placement(4, 8)


def test_rank_loads_split_replicas_equally():
    counts = np.array([[8, 4, 2, 2], [0, 0, 0, 0]])
    # 2 ranks x 3 slots: expert 0 on both ranks, -1 is an empty slot
    placement = ExpertPlacement.from_slots(np.array([0, 1, -1, 0, 2, 3]), ranks=2)
    assert placement.replicas.tolist() == [2, 1, 1, 1]
    loads = rank_loads(counts, placement)
    assert loads.tolist() == [[8.0, 8.0], [0.0, 0.0]]
    assert imbalance(loads) == 1.0
    assert rank_loads(counts[0], np.array([0, 0, 1, 1])).tolist() == [12.0, 4.0]
    assert imbalance(np.array([12.0, 4.0])) == 1.5
    with pytest.raises(ValueError, match="no slot"):
        ExpertPlacement.from_slots(np.array([0, 1, 1, 0]), ranks=2, num_experts=3)
    with pytest.raises(ValueError, match="experts"):
        rank_loads(counts, contiguous_placement(8, 2))


def test_uniform_model_is_registered_class():
    assert ROUTING_MODELS.get("uniform") is UniformRouting
    assert ROUTING_MODELS.get("zipf") is ZipfRouting
