"""The tiering knapsack: brute force on tiny instances, capacities respected, more HBM never worse."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hwsim.solvers.tiering import expected_fetch_s, plan_tiering

from hwsim.errors import InfeasibleError

COST = (0.0, 2e-3, 9e-3)


def brute_force(freq, size, capacity, cost):
    best = np.inf
    for choice in itertools.product(range(3), repeat=freq.size):
        tier = np.array(choice).reshape(freq.shape)
        if all(size[tier == t].sum() <= capacity[t] + 1e-9 for t in range(3)):
            best = min(best, expected_fetch_s(freq, tier, cost))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force_with_unequal_sizes(seed):
    rng = np.random.default_rng(seed)
    freq = rng.random((2, 3))
    size = rng.integers(1, 5, size=(2, 3)).astype(float)
    capacity = (5.0, 4.0, np.inf)
    plan = plan_tiering(freq, size, capacity, COST, time_limit_s=10)
    assert plan.objective == pytest.approx(brute_force(freq, size, capacity, COST), rel=1e-6, abs=1e-12)
    for t in range(3):
        assert size[plan.tier == t].sum() <= capacity[t] + 1e-9


def test_capacities_respected_and_hottest_in_hbm():
    rng = np.random.default_rng(5)
    freq = rng.zipf(1.3, size=(4, 16)).astype(float)
    plan = plan_tiering(freq, 1.0, (10.0, 20.0, np.inf), COST)
    counts = plan.counts()
    assert counts["hbm"] <= 10 and counts["dram"] <= 20
    assert freq[plan.tier == 0].min() >= freq[plan.tier == 1].max() - 1e-12
    assert freq[plan.tier == 1].min() >= freq[plan.tier == 2].max() - 1e-12


def test_more_hbm_never_worse():
    rng = np.random.default_rng(9)
    freq = rng.random((3, 8))
    values = [plan_tiering(freq, 1.0, (float(h), 6.0, np.inf), COST).objective for h in range(0, 25, 4)]
    assert all(b <= a + 1e-12 for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < values[0]


def test_infeasible_names_capacity_groups():
    with pytest.raises(InfeasibleError, match="cap_hbm"):
        plan_tiering(np.ones((2, 4)), 1.0, (2.0, 2.0, 1.0), COST)
