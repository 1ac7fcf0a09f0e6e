"""Mixtures, node-limited routing, temporal locality and co-activation: conservation,
constraints, the laws they promise, and their parameter errors.

Statistical checks use fixed seeds (deterministic); their bounds are several standard
deviations wide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.errors import SpecError
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import CorrelatedRouting, MixtureRouting, make_routing
from hwsim.workload.routing_stream import RoutingStream, token_trace


def _moe(**kw: object) -> MoESpec:
    base: dict[str, object] = {"num_experts": 64, "top_k": 8, "expert_ffn_dim": 1024}
    base.update(kw)
    return MoESpec(**base)  # type: ignore[arg-type]


MIX = {"components": [{"weight": 0.7, "model": "zipf", "skew": 1.2},
                      {"weight": 0.3, "model": "uniform"}]}
DSV3 = {"num_expert_groups": 8, "topk_groups": 4}
MOGE = {"num_expert_groups": 4, "moge": True}

# (routing parameters, MoE overrides): every model and structure the stream serves
CASES = {
    "uniform": (RoutingRef(), {}),
    "zipf": (RoutingRef(model="zipf", params={"skew": 1.1}), {}),
    "mixture": (RoutingRef(model="mixture", params=MIX), {}),
    "nodes": (RoutingRef(model="zipf", params={"skew": 1.1, "max_nodes": 2, "nodes": 8}), {}),
    "groups": (RoutingRef(model="zipf", params={"skew": 1.1}), DSV3),
    "moge": (RoutingRef(model="zipf", params={"skew": 1.1}), MOGE),
    "zero": (RoutingRef(model="zipf", params={"skew": 1.1}), {"num_zero_experts": 16}),
    "locality": (RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.4}}), {}),
    "coactivation": (RoutingRef(model="zipf", params={"skew": 1.1, "coactivation": {"strength": 0.4}}), {}),
    "both-moge": (RoutingRef(model="zipf", params={"skew": 1.1, "locality": {"reuse": 0.4},
                                                     "coactivation": {"strength": 0.4}}), MOGE),
    "both-nodes": (RoutingRef(model="zipf", params={"skew": 1.1, "max_nodes": 3, "experts_per_node": 8,
                                                      "locality": {"reuse": 0.4},
                                                      "coactivation": {"strength": 0.4}}), {}),
    "both-zero": (RoutingRef(model="mixture", params={**MIX, "locality": {"reuse": 0.5},
                                                        "coactivation": {"strength": 0.5}}),
                  {"num_zero_experts": 16}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_model_conserves_picks_and_keeps_its_constraints(case):
    ref, overrides = CASES[case]
    moe = _moe(**overrides)
    model = make_routing(ref, moe)
    rng = np.random.default_rng(4)
    counts = model.expert_counts(rng, 500, 3)
    zero = moe.num_zero_experts > 0
    if zero:  # in expectation: the real experts per token
        assert counts.sum(axis=1).mean() == pytest.approx(500 * moe.real_experts_per_token, rel=0.05)
    else:
        assert counts.sum(axis=1).tolist() == [4000] * 3
    step = model.step_counts(rng, 100, 2)
    assert step.sum() == round(100 * moe.real_experts_per_token)
    ids = RoutingStream(model, rng, layers=4).ids(1, 400)
    real = np.where(ids >= 0, ids, 10_000 + np.arange(8))  # zero experts may repeat
    assert np.all(np.diff(np.sort(real, axis=-1), axis=-1) != 0), "a token picked an expert twice"
    if not zero:
        assert ids.min() >= 0
    if "moge" in case:  # exactly top_k / groups experts from every group, in its own slots
        assert np.all(ids.reshape(400, 4, 4, 2) // 16 == np.arange(4)[None, None, :, None])
    if case in ("nodes", "both-nodes"):
        node = ids * 8 // 64
        limit = 2 if case == "nodes" else 3
        assert max(len(set(row)) for row in node.reshape(-1, 8).tolist()) <= limit
    if case == "groups":
        assert max(len(set(row)) for row in (ids // 8).reshape(-1, 8).tolist()) <= 4


def test_mixture_inclusion_is_the_weighted_mix_and_counts_follow_it():
    moe = _moe()
    mix = make_routing(RoutingRef(model="mixture", params=MIX), moe)
    assert isinstance(mix, MixtureRouting)
    zipf = make_routing(RoutingRef(model="zipf", params={"skew": 1.2}), moe)
    uni = make_routing(RoutingRef(), moe)
    np.testing.assert_allclose(mix.inclusion(2), 0.7 * zipf.inclusion(2) + 0.3 * uni.inclusion(2))
    assert mix.inclusion(2).sum() == pytest.approx(8.0)
    tokens = 40_000
    counts = mix.expert_counts(np.random.default_rng(1), tokens, [2])[0]
    pi = mix.inclusion(2)
    # a mixture's counts vary more than one law's (the split is random): a loose bound
    z = (counts - tokens * pi) / np.sqrt(tokens * pi)
    assert np.abs(z).max() < 8
    ids = mix.expert_ids(np.random.default_rng(2), tokens, 2)
    freq = np.bincount(ids.ravel(), minlength=64) / tokens
    assert np.abs(freq - pi).max() < 0.02


def test_mixture_effective_skew_moves_with_the_mix():
    moe = _moe()

    def top_share(w: float) -> float:
        params = {"components": [{"weight": w, "model": "zipf", "skew": 1.5, "seed_permutation": None},
                                 {"weight": 1 - w + 1e-9, "model": "uniform"}]}
        return float(make_routing(RoutingRef(model="mixture", params=params), moe).inclusion(0).max())

    shares = [top_share(w) for w in (0.2, 0.5, 0.9)]
    assert shares[0] < shares[1] < shares[2]


def test_a_stream_sequence_keeps_its_domain():
    moe = _moe()
    params = {"components": [{"weight": 0.5, "model": "zipf", "skew": 3.0, "seed_permutation": None},
                             {"weight": 0.5, "model": "zipf", "skew": 3.0, "seed_permutation": None,
                              "hot_shift": 32}]}
    model = make_routing(RoutingRef(model="mixture", params=params), moe)
    # component 0's hottest expert is 0; component 1's is 32 in layer 1 (shift 32 per layer)
    stream = RoutingStream(model, np.random.default_rng(0), layers=2)
    domains = []
    for key in range(40):
        picks = stream.ids(key, 50)[:, 1]
        near0, near32 = (picks < 16).mean(), ((picks >= 32) & (picks < 48)).mean()
        assert max(near0, near32) > 0.9, "tokens of one sequence mixed domains"
        domains.append(near0 > near32)
    assert 10 < sum(domains) < 30  # both domains drawn, about half each


def _expected_overlap_uniform(p: float, k: int, e: int) -> float:
    """Mean share of a token's experts that the previous token also picked: m ~ Bin(k, p)
    kept, k - m fresh from the e - m others, of which k - m are the dropped ones."""
    total = 0.0
    for m in range(k + 1):
        prob = math.comb(k, m) * p**m * (1 - p) ** (k - m)
        total += prob * (m + (k - m) ** 2 / (e - m))
    return total / k


@pytest.mark.parametrize("reuse", [0.2, 0.6])
def test_locality_reuse_rate_matches_the_model(reuse):
    moe = _moe()
    model = make_routing(RoutingRef(params={"locality": {"reuse": reuse}}), moe)
    assert isinstance(model, CorrelatedRouting)
    trace = token_trace(model, np.random.default_rng(7), 6000, 4, sequence_tokens=500)
    ids = trace.ids.astype(np.int64)
    same = (ids[1:, :, :, None] == ids[:-1, :, None, :]).any(axis=3).mean(axis=2)   # (T-1, L)
    inside = np.ones(len(ids) - 1, dtype=bool)
    inside[trace.sequence_starts[1:] - 1] = False   # first tokens of sequences start fresh
    measured = float(same[inside].mean())
    expected = _expected_overlap_uniform(reuse, 8, 64)
    sd = math.sqrt(reuse * (1 - reuse) / 8 / (inside.sum() * 4)) * 3  # ~3x for token correlation
    assert abs(measured - expected) < 5 * sd
    # across sequences there is no carry-over: the first token of a sequence is fresh
    first = same[~inside].mean()
    assert first < expected - 0.1
    # marginal popularity stays uniform (exact by symmetry)
    freq = np.bincount(ids.ravel(), minlength=64) / ids.size
    assert np.abs(freq * 64 - 1).max() < 0.1


def test_locality_keeps_zipf_marginals_close():
    model = make_routing(RoutingRef(model="zipf", params={"skew": 1.2, "locality": {"reuse": 0.3}}), _moe())
    trace = token_trace(model, np.random.default_rng(3), 20_000, 2, sequence_tokens=1000)
    for layer in range(2):
        freq = np.bincount(trace.ids[:, layer].ravel(), minlength=64) / trace.tokens
        tv = 0.5 * np.abs(freq - model.inclusion(layer)).sum() / 8
        assert tv < 0.03


def test_coactivation_follows_the_affinity_map():
    moe = _moe(num_experts=256, top_k=4)
    q = 0.5
    model = make_routing(RoutingRef(model="zipf", params={"skew": 1.0, "coactivation": {"strength": q}}), moe)
    assert isinstance(model, CorrelatedRouting)
    ids = RoutingStream(model, np.random.default_rng(2), layers=3).ids(0, 5000).astype(np.int64)
    for layer in range(2):
        amap = model.affinity(layer)
        assert sorted(amap.tolist()) == list(range(256))  # a bijection
        # the popularity rank is preserved: the hottest expert maps to the hottest
        assert amap[np.argmax(model.popularity(layer))] == np.argmax(model.popularity(layer + 1))
        followed = (ids[:, layer + 1] == amap[ids[:, layer]]).mean()
        assert q - 0.03 < followed < q + 0.08
    independent = make_routing(RoutingRef(model="zipf", params={"skew": 1.0}), moe)
    ids0 = RoutingStream(independent, np.random.default_rng(2), layers=2).ids(0, 5000).astype(np.int64)
    assert (ids0[:, 1] == model.affinity(0)[ids0[:, 0]]).mean() < 0.1


def test_node_limit_matches_the_group_limited_law():
    moe = _moe()
    by_nodes = make_routing(RoutingRef(model="uniform", params={"max_nodes": 2, "experts_per_node": 16}), moe)
    by_groups = make_routing(RoutingRef(), _moe(num_expert_groups=4, topk_groups=2))
    a = by_nodes.expert_counts(np.random.default_rng(0), 4000, 1)
    b = by_groups.expert_counts(np.random.default_rng(0), 4000, 1)
    np.testing.assert_array_equal(a, b)
    loose = make_routing(RoutingRef(model="uniform", params={"max_nodes": 8, "nodes": 8}), moe)
    assert loose.topk_groups is None  # the limit cannot bind
    tighter = make_routing(RoutingRef(model="zipf", params={"skew": 1.0, "max_nodes": 2, "nodes": 8}),
                           _moe(**DSV3))
    assert tighter.topk_groups == 2


@pytest.mark.parametrize(
    ("ref", "overrides", "where", "words"),
    [
        (RoutingRef(params={"max_nodes": 2}), {}, "experts.routing.nodes", "exactly one of"),
        (RoutingRef(params={"nodes": 4}), {}, "experts.routing.max_nodes", "give max_nodes"),
        (RoutingRef(params={"max_nodes": 0, "nodes": 4}), {}, "experts.routing.max_nodes", ">= 1"),
        (RoutingRef(params={"max_nodes": 1, "experts_per_node": 5}), {}, "experts.routing", "must divide"),
        (RoutingRef(params={"max_nodes": 1, "nodes": 16}), {}, "experts.routing", "cannot fit"),
        (RoutingRef(params={"max_nodes": 2, "nodes": 4}), DSV3, "experts.routing", "expert groups"),
        (RoutingRef(params={"max_nodes": 2, "nodes": 4}), MOGE, "experts.routing", "MoGE"),
        (RoutingRef(params={"locality": {"reuse": 1.5}}), {}, "experts.routing.locality.reuse", "[0, 1]"),
        (RoutingRef(params={"locality": {"reuse": 0.2, "p": 1}}), {}, "experts.routing.locality.p", "unknown"),
        (RoutingRef(params={"locality": {}}), {}, "experts.routing.locality.reuse", "required"),
        (RoutingRef(params={"coactivation": {"strength": "high"}}), {}, "experts.routing.coactivation.strength",
         "number"),
        (RoutingRef(params={"coactivation": {"strength": 0.1, "seed": -1}}), {},
         "experts.routing.coactivation.seed", ">= 0"),
        (RoutingRef(model="mixture", params={}), {}, "experts.routing.components", "list of components"),
        (RoutingRef(model="mixture", params={"components": [{"model": "uniform"}]}), {},
         "experts.routing.components[0].weight", "required"),
        (RoutingRef(model="mixture", params={"components": [{"weight": -1, "model": "uniform"}]}), {},
         "experts.routing.components[0].weight", "(0, inf)"),
        (RoutingRef(model="mixture", params={"components": [{"weight": 1}]}), {},
         "experts.routing.components[0].model", "needs a model"),
        (RoutingRef(model="mixture", params={"components": [{"weight": 1, "model": "zipf"}]}), {},
         "experts.routing.components[0].skew", "needs a skew"),
        (RoutingRef(model="mixture", params={"components": [{"weight": 1, "model": "mixture"}]}), {},
         "experts.routing.components[0].model", "popularity model"),
        (RoutingRef(model="mixture", params={"components": [{"weight": 1, "model": "zipff", "skew": 1}]}), {},
         "experts.routing.components[0].model", "did you mean 'zipf'"),
        (RoutingRef(model="mixture", params={"components": [{"weight": 1, "model": "uniform",
                                                              "locality": {"reuse": 0.1}}]}), {},
         "experts.routing.components[0].locality", "whole mixture"),
    ],
)
def test_bad_parameters_name_their_path(ref, overrides, where, words):
    with pytest.raises(SpecError) as err:
        make_routing(ref, _moe(**overrides))
    assert err.value.path == where
    assert words in str(err.value)


def test_zero_strength_and_reuse_give_the_base_model():
    model = make_routing(RoutingRef(model="zipf", params={"skew": 1.0, "locality": {"reuse": 0.0}}), _moe())
    assert not isinstance(model, CorrelatedRouting)
