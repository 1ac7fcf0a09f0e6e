"""Placement strategies and layered placements: every expert placed, slots add up, EPLB balances."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import SpecError
from hwsim.workload.placement import (
    PLACEMENT_STRATEGIES,
    balanced_packing,
    place_layer,
    place_layers,
    replica_counts,
)
from hwsim.workload.routing_loads import (
    ExpertPlacement,
    LayeredPlacement,
    imbalance,
    rank_loads,
    slots_per_rank,
)

STRATEGIES = ("contiguous", "round-robin", "eplb")


def zipf_load(num_experts: int, skew: float, seed: int) -> np.ndarray:
    """Per-expert load of rank ``r ** -skew`` popularity, hot experts at random ids."""
    w = np.arange(1, num_experts + 1, dtype=float) ** -skew
    return w[np.random.default_rng(seed).permutation(num_experts)]


def test_registry_holds_the_strategies_and_names_the_choices():
    assert PLACEMENT_STRATEGIES.names() == sorted(STRATEGIES)
    with pytest.raises(SpecError, match="unknown placement strategy 'epbl'.*did you mean 'eplb'"):
        place_layer("epbl", np.ones(8), 2)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("experts", "ranks", "redundant", "nodes"),
                         [(64, 8, 0, 1), (64, 8, 8, 1), (256, 32, 32, 4), (60, 8, 4, 2), (16, 16, 0, 2)])
def test_every_expert_placed_and_slots_add_up(strategy, experts, ranks, redundant, nodes):
    load = zipf_load(experts, 1.0, seed=experts + redundant)
    rank_node = np.repeat(np.arange(nodes), ranks // nodes)
    p = place_layer(strategy, load, ranks, redundant=redundant, rank_node=rank_node, num_groups=4)
    assert p.slots is not None
    assert p.slots.shape == (ranks, (experts + redundant) // ranks)  # equal slots on every rank
    assert (p.slots >= 0).all()
    assert (p.replicas >= 1).all()  # every expert placed
    assert p.replicas.sum() == experts + redundant
    np.testing.assert_allclose(p.share.sum(axis=1), 1.0)
    # the load is conserved: the ranks serve exactly the experts' total
    assert rank_loads(load, p).sum() == pytest.approx(load.sum())


@pytest.mark.parametrize("skew", [0.6, 1.0, 1.4])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("redundant", "nodes"), [(0, 1), (0, 4), (32, 1), (32, 4)])
def test_eplb_is_never_worse_than_contiguous_on_a_skewed_law(skew, seed, redundant, nodes):
    load = zipf_load(256, skew, seed)
    rank_node = np.repeat(np.arange(nodes), 32 // nodes)
    ratio = {s: imbalance(rank_loads(load, place_layer(s, load, 32, redundant=redundant, rank_node=rank_node,
                                                         num_groups=8)))
             for s in ("contiguous", "eplb")}
    assert ratio["eplb"] <= ratio["contiguous"] + 1e-12
    assert ratio["eplb"] < ratio["contiguous"]  # on these laws the greedy is strictly better


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("experts", "ranks", "nodes"), [(64, 8, 1), (256, 32, 4), (128, 16, 2)])
def test_zero_skew_gives_perfect_balance(strategy, experts, ranks, nodes):
    load = zipf_load(experts, 0.0, seed=0)
    p = place_layer(strategy, load, ranks, rank_node=np.repeat(np.arange(nodes), ranks // nodes), num_groups=8)
    assert imbalance(rank_loads(load, p)) == pytest.approx(1.0, abs=1e-12)


def test_replicas_go_to_the_hottest_experts_and_cut_the_peak():
    load = np.array([8.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    assert replica_counts(load, 10).tolist() == [3, 1, 1, 1, 1, 1, 1, 1]
    plain = imbalance(rank_loads(load, place_layer("eplb", load, 2)))
    with_copies = place_layer("eplb", load, 2, redundant=2)
    assert imbalance(rank_loads(load, with_copies)) < plain
    # the hot expert's copies sit on both ranks, splitting its tokens
    assert (with_copies.share[0] > 0).all()


@pytest.mark.parametrize("skew", [0.8, 1.2])
def test_eplb_keeps_copies_of_one_expert_on_different_ranks(skew):
    load = zipf_load(64, skew, seed=3)
    p = place_layer("eplb", load, 8, redundant=16)
    assert p.slots is not None
    for row in p.slots:
        per_expert = np.bincount(row, minlength=64)
        # a rank holds two copies of an expert only when it has more copies than there are ranks
        assert (per_expert <= -(-p.replicas // 8)).all()


def test_strategies_are_deterministic():
    load = zipf_load(128, 1.1, seed=5)
    for s in STRATEGIES:
        a = place_layer(s, load, 16, redundant=16, rank_node=np.repeat([0, 1], 8), num_groups=8)
        b = place_layer(s, load.copy(), 16, redundant=16, rank_node=np.repeat([0, 1], 8), num_groups=8)
        np.testing.assert_array_equal(a.slots, b.slots)


def test_hierarchical_eplb_keeps_whole_groups_on_a_node():
    load = zipf_load(64, 1.0, seed=4)
    rank_node = np.repeat([0, 1], 4)
    p = place_layer("eplb", load, 8, rank_node=rank_node, num_groups=4)  # 4 groups of 16, 2 nodes
    assert p.slots is not None
    for g in range(4):
        nodes = {int(rank_node[r]) for r in range(8) if set(p.slots[r].tolist()) & set(range(16 * g, 16 * g + 16))}
        assert len(nodes) == 1


def test_contiguous_without_redundancy_matches_the_classic_layout():
    p = place_layer("contiguous", np.ones(8), 4)
    assert p.rank_lists() == ((0, 1), (2, 3), (4, 5), (6, 7))
    q = place_layer("round-robin", np.ones(8), 4)
    assert q.rank_lists() == ((0, 4), (1, 5), (2, 6), (3, 7))


def test_slots_per_rank_must_be_whole_and_the_error_names_redundant():
    assert slots_per_rank(256, 32, 32) == 9
    with pytest.raises(ValueError, match=r"experts\.redundant 3"):
        slots_per_rank(256, 3, 32)
    with pytest.raises(ValueError, match=r"experts\.redundant"):
        place_layer("eplb", np.ones(256), 32, redundant=3)


def test_split_rules():
    equal = ExpertPlacement.from_rank_slots([[0, 1], [0, 2]], 3)
    assert equal.share[0].tolist() == [0.5, 0.5]
    cap = ExpertPlacement.from_rank_slots([[0, 1], [0, 2]], 3, split="capacity", rank_capacity=np.array([3.0, 1.0]))
    assert cap.share[0].tolist() == [0.75, 0.25]
    assert cap.share[1].tolist() == [1.0, 0.0]  # a single copy serves all its tokens whatever the capacity
    same = ExpertPlacement.from_rank_slots([[0, 1], [0, 2]], 3, split="capacity")
    np.testing.assert_allclose(same.share, equal.share)
    with pytest.raises(ValueError, match="split must be one of"):
        ExpertPlacement.from_rank_slots([[0, 1]], 2, split="proportional")
    with pytest.raises(ValueError, match=r"experts \[2\] have no slot"):
        ExpertPlacement.from_rank_slots([[0, 1], [0, 1]], 3)


def test_layered_placement_default_and_per_layer():
    loads = np.stack([zipf_load(32, 1.0, seed=s) for s in range(3)])
    lp = place_layers("eplb", loads, [0, 5, 9], 4, redundant=4)
    assert set(lp.layers) == {0, 5, 9} and lp.default is None
    with pytest.raises(KeyError):
        lp.at(1)
    for layer, w in zip([0, 5, 9], loads, strict=True):
        assert imbalance(rank_loads(w, lp.at(layer))) <= imbalance(rank_loads(w, place_layer("contiguous", w, 4,
                                                                                              redundant=4)))
    plain = place_layers("round-robin", loads, [0, 5, 9], 4)
    assert plain.layers == {} and plain.at(7) is plain.default
    with pytest.raises(ValueError, match="same"):
        LayeredPlacement(default=place_layer("contiguous", np.ones(8), 2), layers={1: place_layer("contiguous",
                                                                                                  np.ones(8), 4)})


def test_table_round_trip():
    loads = np.stack([zipf_load(16, 1.0, seed=s) for s in range(2)])
    lp = place_layers("eplb", loads, [0, 1], 4, redundant=4)
    table = lp.to_table(model="toy", source="test")
    assert table.ep == 4 and table.slots_per_rank == 5 and table.physical_experts == 20
    back = LayeredPlacement.from_table(table)
    for layer in (0, 1):
        np.testing.assert_array_equal(back.at(layer).share, lp.at(layer).share)


def test_balanced_packing_fills_bins_exactly():
    w = np.array([9.0, 7.0, 6.0, 5.0, 5.0, 4.0, 3.0, 1.0])
    bins = balanced_packing(w, 4, 2)
    assert np.bincount(bins, minlength=4).tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="do not fill"):
        balanced_packing(w, 3, 2)


@settings(max_examples=40, deadline=None)
@given(experts=st.integers(2, 48), ranks_pow=st.integers(0, 3), extra=st.integers(0, 3),
       seed=st.integers(0, 2**16), skew=st.floats(0.0, 2.0))
def test_eplb_invariants_hold_for_any_law(experts, ranks_pow, extra, seed, skew):
    ranks = 2**ranks_pow
    physical = -(-experts // ranks) * ranks + extra * ranks  # a whole number of slots per rank
    if ranks > experts:
        return
    load = zipf_load(experts, skew, seed)
    p = place_layer("eplb", load, ranks, redundant=physical - experts)
    assert p.replicas.sum() == physical and (p.replicas >= 1).all()
    r = rank_loads(load, p)
    assert r.sum() == pytest.approx(load.sum())
    # the busiest rank never carries more than an even share plus the heaviest single copy
    heaviest = (load / p.replicas).max()
    assert r.max() <= load.sum() / ranks + heaviest + 1e-9
