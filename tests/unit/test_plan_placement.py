"""The placement planner: MILP and heuristic against brute force, bounds, infeasibility, co-activation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hwsim.solvers.common import solve
from hwsim.solvers.placement import (
    coactivation,
    cross_node_share,
    device_loads,
    layer_model,
    lower_bound,
    plan_placement,
)

from hwsim.errors import InfeasibleError
from hwsim.workload.placement import eplb


def brute_force(w: np.ndarray, ranks: int, redundant: int) -> float:
    """The least busiest-device load over every placement (distinct experts per device, every
    expert placed, equal split of an expert's load over its copies)."""
    e = len(w)
    slots = (e + redundant) // ranks
    combos = list(itertools.combinations(range(e), slots))
    best = np.inf
    for choice in itertools.product(combos, repeat=ranks):
        table = np.array(choice)
        if len(np.unique(table)) < e:
            continue
        best = min(best, float(device_loads(w, table).max()))
    return best


TINY = [
    (np.array([3.0, 3.0, 2.0]), 2, 1),        # the greedy replica rule alone is not optimal here
    (np.array([5.0, 1.0, 1.0, 1.0]), 2, 2),
    (np.array([4.0, 3.0, 2.0, 1.0]), 2, 2),
    (np.array([9.0, 1.0, 1.0, 1.0, 1.0, 1.0]), 3, 3),
    (np.array([2.0, 2.0, 2.0, 2.0, 1.0, 1.0]), 3, 0),
]


@pytest.mark.parametrize(("w", "ranks", "redundant"), TINY)
def test_milp_equals_brute_force(w, ranks, redundant):
    opt = brute_force(w, ranks, redundant)
    plan = plan_placement(w[None], ranks, redundant, method="milp", gap=0.0, time_limit_s=20)
    layer = plan.layers[0]
    assert layer.makespan == pytest.approx(opt, rel=1e-6)
    assert lower_bound(w, ranks, redundant) <= opt + 1e-9
    # every slot filled, every expert placed, copies on distinct devices
    assert layer.slots.shape == (ranks, (len(w) + redundant) // ranks)
    assert set(layer.slots.ravel().tolist()) == set(range(len(w)))
    assert all(len(set(row)) == len(row) for row in layer.slots.tolist())


@pytest.mark.parametrize("seed", range(4))
def test_auto_within_reported_gap_of_brute_force(seed):
    rng = np.random.default_rng(seed)
    w = rng.zipf(1.6, size=6).astype(float)
    opt = brute_force(w, 3, 3)
    layer = plan_placement(w[None], 3, 3, gap=0.0, time_limit_s=20).layers[0]
    assert opt - 1e-9 <= layer.makespan
    assert layer.bound <= opt + 1e-9
    assert layer.makespan <= opt * (1 + 1e-6) or layer.gap > 0


def test_beats_or_ties_eplb_on_skewed_loads():
    rng = np.random.default_rng(7)
    loads = np.stack([rng.permutation(1.0 / np.arange(1, 65) ** 1.2) for _ in range(6)])  # Zipf-skewed experts
    plan = plan_placement(loads, 16, 16, time_limit_s=2)
    ours = [p.max_over_mean for p in plan.layers]
    theirs = [device_loads(w, eplb(w, 16, redundant=16)).max() / (w.sum() / 16) for w in loads]
    assert all(a <= b + 1e-9 for a, b in zip(ours, theirs, strict=True))
    assert np.mean(ours) < np.mean(theirs)
    assert all(p.bound <= p.makespan + 1e-12 for p in plan.layers)


def test_infeasible_names_the_constraint_groups():
    with pytest.raises(InfeasibleError, match="'slots'.*'budget'|'copies'"):
        plan_placement(np.ones((1, 8)), 2, 0, slots_per_rank=3)
    with pytest.raises(InfeasibleError, match="'copies'"):
        plan_placement(np.ones((1, 8)), 2, -4, slots_per_rank=2)


def test_milp_constraints_named_and_infeasible_model_detected(tmp_path):
    prob, _ = layer_model(np.array([3.0, 2.0, 1.0, 1.0]), 2, 1, 0)   # 2 slots for 4 experts
    groups = {name.rsplit("_", 2)[0] if name.count("_") else name for name in prob.constraints}
    assert {"copies", "count", "slots", "budget", "makespan"} <= {g.split("_")[0] for g in groups}
    with pytest.raises(InfeasibleError):
        solve(prob, time_limit_s=10, write_lp=tmp_path / "m.lp")
    assert "slots_0" in (tmp_path / "m.lp").read_text()


def test_coactivation_pass_keeps_balance_and_cuts_cross_node_traffic():
    rng = np.random.default_rng(3)
    tokens, layers, k, e = 4000, 3, 2, 8
    first = np.stack([rng.choice(e, size=k, replace=False) for _ in range(tokens)])
    ids = np.stack([first, (first + 1) % e, (first + 2) % e], axis=1)    # e at l -> e+1 at l+1
    coact = coactivation(ids, e)
    assert coact.shape == (2, e, e) and coact[0].sum() == tokens * k * k
    loads = np.stack([np.bincount(ids[:, i].ravel(), minlength=e) for i in range(layers)]).astype(float)
    rank_node = np.array([0, 0, 1, 1])
    plain = plan_placement(loads, 4, 0)
    aligned = plan_placement(loads, 4, 0, coact=coact, rank_node=rank_node)
    assert aligned.cross_node_after <= aligned.cross_node_before
    assert aligned.cross_node_after == pytest.approx(
        cross_node_share([p.slots for p in aligned.layers], coact, e, rank_node))
    for a, b in zip(plain.layers, aligned.layers, strict=True):
        assert a.makespan == pytest.approx(b.makespan)
