"""Per-sequence routing streams, synthetic token traces and per-step counts."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_stream import RoutingStream, token_trace
from hwsim.workload.routing_trace import RoutingTrace

ZIPF = RoutingRef(model="zipf", params={"skew": 1.2})


def _moe(**kw: object) -> MoESpec:
    base: dict[str, object] = {"num_experts": 64, "top_k": 8, "expert_ffn_dim": 1024}
    base.update(kw)
    return MoESpec(**base)  # type: ignore[arg-type]


def _distinct_per_token(ids: np.ndarray) -> bool:
    s = np.sort(ids, axis=-1)
    return bool(np.all(np.diff(s, axis=-1) != 0))


def test_stream_shapes_types_and_distinct_experts():
    stream = RoutingStream(make_routing(ZIPF, _moe()), np.random.default_rng(1), layers=5)
    ids = stream.ids(3, 40)
    assert ids.shape == (40, 5, 8) and ids.dtype == np.int32
    assert ids.min() >= 0 and ids.max() < 64
    assert _distinct_per_token(ids)
    assert stream.ids(3, 0).shape == (0, 5, 8)
    assert len(stream) == 1
    stream.forget(3)
    stream.forget(99)  # unknown keys are ignored
    assert len(stream) == 0


def test_stream_is_deterministic_for_a_seed_and_differs_across_seeds():
    model = make_routing(ZIPF, _moe())

    def run(seed: int) -> list[np.ndarray]:
        s = RoutingStream(model, np.random.default_rng(seed), layers=3)
        return [s.ids(key, n) for key, n in [(0, 4), (1, 2), (0, 3), (2, 1)]]

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_stream_ids_follow_the_layer_law():
    model = make_routing(ZIPF, _moe())
    ids = RoutingStream(model, np.random.default_rng(2), layers=2).ids(0, 20_000)
    for layer in range(2):
        counts = np.bincount(ids[:, layer].ravel(), minlength=64)
        pi = model.inclusion(layer)
        z = (counts - 20_000 * pi) / np.sqrt(20_000 * pi * (1 - pi / 8) + 1e-9)
        assert np.abs(z).max() < 5


def test_zero_experts_appear_as_minus_one_in_the_stream():
    moe = _moe(num_experts=32, num_zero_experts=16, top_k=6)
    ids = RoutingStream(make_routing(RoutingRef(), moe), np.random.default_rng(0), layers=2).ids(0, 5000)
    zero = (ids == -1).sum(axis=-1)
    assert zero.max() > 1  # a token may pick several zero experts
    real = ids[ids >= 0].reshape(-1)
    assert real.max() < 32
    assert (6 - zero).mean() == pytest.approx(moe.real_experts_per_token, rel=0.03)
    for row in ids.reshape(-1, 6):
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == len(kept)


def test_token_trace_cuts_sequences_and_counts_agree():
    model = make_routing(ZIPF, _moe())
    trace = token_trace(model, np.random.default_rng(0), 1000, 3, sequence_tokens=300)
    assert isinstance(trace, RoutingTrace)
    assert trace.ids.shape == (1000, 3, 8)
    assert trace.sequence_starts.tolist() == [0, 300, 600, 900]
    assert trace.sequence_lengths().tolist() == [300, 300, 300, 100]
    assert trace.counts().sum(axis=1).tolist() == [8000, 8000, 8000]
    assert trace.num_experts == 64
    assert token_trace(model, np.random.default_rng(0), 10, 2).sequence_starts.tolist() == [0]
    with pytest.raises(ValueError, match="sequence_tokens"):
        token_trace(model, np.random.default_rng(0), 10, 2, sequence_tokens=0)


@pytest.mark.parametrize("ref", [RoutingRef(), ZIPF])
def test_step_counts_conserve_assignments_and_follow_the_inclusion(ref):
    model = make_routing(ref, _moe())
    rng = np.random.default_rng(3)
    total = np.zeros(64)
    for _ in range(200):
        c = model.step_counts(rng, 100, layer=1)
        assert c.shape == (64,) and c.dtype == np.int64 and c.sum() == 800
        total += c
    pi = model.inclusion(1)
    expected = 200 * 100 * pi
    assert np.abs(total - expected).max() < 5 * np.sqrt(expected.max()) + 1
    assert model.step_counts(rng, 0).sum() == 0


def test_step_counts_with_zero_experts_use_the_real_experts_per_token():
    moe = _moe(num_experts=32, num_zero_experts=16, top_k=6, expected_real_experts=4.5)
    model = make_routing(RoutingRef(model="zipf", params={"skew": 1.0}), moe)
    assert model.step_counts(np.random.default_rng(0), 10).sum() == 45


def test_stream_rejects_bad_layers():
    with pytest.raises(ValueError, match="layers"):
        RoutingStream(make_routing(ZIPF, _moe()), np.random.default_rng(0), layers=0)


@pytest.mark.parametrize("params", [
    {"skew": 1.2},
    {"skew": 1.2, "locality": {"reuse": 0.6}},
    {"skew": 1.2, "locality": {"reuse": 0.6}, "coactivation": {"strength": 0.3}},
])
def test_ids_many_serves_several_sequences_and_they_continue(params):
    model = make_routing(RoutingRef(model="zipf", params=params), _moe())
    stream = RoutingStream(model, np.random.default_rng(0), layers=3)
    first = stream.ids_many([4, 9, 2], 5)
    assert first.shape == (3, 5, 3, 8) and first.dtype == np.int32
    assert _distinct_per_token(first)
    later = [stream.ids_many([4, 9, 2], 1)[:, 0] for _ in range(300)] + [stream.ids(9, 1)[0][None]]
    assert later[-1].shape == (1, 3, 8)
    steps = np.stack(later[:-1], axis=1)   # (3 sequences, 300 tokens, 3 layers, 8)
    overlap = (steps[:, 1:, :, :, None] == steps[:, :-1, :, None, :]).any(axis=-1).mean()
    if "locality" in params:
        assert overlap > 0.6   # consecutive tokens of each sequence keep their experts
    else:
        assert overlap < 0.6
    again = RoutingStream(model, np.random.default_rng(0), layers=3).ids_many([4, 9, 2], 5)
    np.testing.assert_array_equal(first, again)
    with pytest.raises(ValueError, match="distinct"):
        stream.ids_many([1, 1], 1)
    assert stream.ids_many([], 3).shape == (0, 3, 3, 8)


def test_ids_many_on_a_mixture_keeps_each_sequence_in_its_domain():
    params = {"components": [{"weight": 0.5, "model": "zipf", "skew": 3.0, "seed_permutation": None},
                             {"weight": 0.5, "model": "zipf", "skew": 3.0, "seed_permutation": None,
                              "hot_shift": 32}]}
    stream = RoutingStream(make_routing(RoutingRef(model="mixture", params=params), _moe()),
                           np.random.default_rng(1), layers=2)
    ids = stream.ids_many(list(range(30)), 40)[:, :, 1]  # layer 1: domain 1's hot experts are 32..
    low = (ids < 16).mean(axis=(1, 2))
    assert np.all((low > 0.9) | (low < 0.1))
    assert 0 < (low > 0.9).sum() < 30
