"""The power-oversubscription MILP against brute force, its violation limit and its errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hwsim.solvers.power import ServerGroup, plan_power, violation_fraction

from hwsim.errors import InfeasibleError


def _groups(rng: np.random.Generator, s: int = 12) -> list[ServerGroup]:
    hi = 5000 + 2000 * rng.random(s)                    # uncapped: high, noisy
    lo = np.minimum(hi, 4200.0) * (0.9 + 0.05 * rng.random(s))  # capped: flatter, lower
    return [ServerGroup(name="main@uncapped", pool="main", cap_w=None, servers=1, tokens_per_s=100.0,
                        tdp_power_w=8000.0, power_w=hi),
            ServerGroup(name="main@500W", pool="main", cap_w=500.0, servers=1, tokens_per_s=88.0,
                        tdp_power_w=8000.0, power_w=lo)]


def _brute(groups: list[ServerGroup], budget: float, violation: float, bound: int = 12) -> float:
    power = np.stack([g.power_w for g in groups])
    allowed = int(np.floor(violation * power.shape[1] + 1e-9))
    best = -1.0
    for counts in itertools.product(range(bound + 1), repeat=len(groups)):
        if sum(counts) < 1:
            continue
        over = int(np.sum(np.asarray(counts) @ power > budget))
        if over <= allowed:
            best = max(best, sum(c * g.tokens_per_s for c, g in zip(counts, groups, strict=True)))
    return best


@pytest.mark.parametrize(("seed", "violation"), [(0, 0.0), (1, 0.1), (2, 0.25)])
def test_milp_matches_brute_force(seed: int, violation: float) -> None:
    groups = _groups(np.random.default_rng(seed))
    budget = 40_000.0
    plan = plan_power(groups, budget_w=budget, violation=violation, gap=0.0)
    assert plan.tokens_per_s == pytest.approx(_brute(groups, budget, violation))
    power = np.stack([g.power_w for g in groups])
    assert plan.in_sample_violation == violation_fraction(plan.counts, power, budget)
    assert plan.in_sample_violation <= violation + 1e-12


def test_oversubscription_beats_tdp_provisioning() -> None:
    plan = plan_power(_groups(np.random.default_rng(3)), budget_w=40_000.0, violation=0.1, gap=0.0)
    assert plan.tdp_servers == 5
    assert plan.servers > plan.tdp_servers
    assert plan.servers_gained == plan.servers - 5
    assert plan.solve.optimal


def test_violation_limit_binds() -> None:
    groups = _groups(np.random.default_rng(4), s=40)
    strict = plan_power(groups, budget_w=40_000.0, violation=0.0, gap=0.0)
    loose = plan_power(groups, budget_w=40_000.0, violation=0.3, gap=0.0)
    assert strict.in_sample_violation == 0.0
    assert loose.in_sample_violation <= 0.3
    assert loose.tokens_per_s >= strict.tokens_per_s


def test_ratio_of_disaggregated_pools_is_kept() -> None:
    rng = np.random.default_rng(5)
    groups = [ServerGroup(name=f"{pool}@{cap}", pool=pool, cap_w=cap, servers=1, tokens_per_s=tp, tdp_power_w=8000.0,
                          power_w=base * (0.8 + 0.2 * rng.random(10)))
              for pool, tp, base in (("prefill", 50.0, 7000.0), ("decode", 60.0, 5000.0))
              for cap in (None, 500.0)]
    plan = plan_power(groups, budget_w=60_000.0, violation=0.1, pool_replicas={"prefill": 1, "decode": 2}, gap=0.0)
    prefill = plan.count_of("prefill@None") + plan.count_of("prefill@500.0")
    decode = plan.count_of("decode@None") + plan.count_of("decode@500.0")
    assert prefill >= 1 and decode == 2 * prefill


def test_budget_below_idle_names_the_constraint_groups() -> None:
    groups = _groups(np.random.default_rng(6))
    with pytest.raises(InfeasibleError, match=r"budget_\*.*violations.*min_servers_\*"):
        plan_power(groups, budget_w=1000.0, violation=0.05)


def test_write_lp_names_every_constraint(tmp_path) -> None:
    lp = tmp_path / "power.lp"
    plan_power(_groups(np.random.default_rng(7), s=5), budget_w=30_000.0, violation=0.2, write_lp=lp, max_servers=4)
    text = lp.read_text()
    for name in ("budget_0", "budget_4", "violations", "min_servers_0", "max_servers"):
        assert name in text


def test_dominance_screening_is_exact() -> None:
    rng = np.random.default_rng(8)
    load = rng.random(30) ** 2
    groups = [ServerGroup(name=f"g{k}", pool="main", cap_w=cap, servers=1, tokens_per_s=tp, tdp_power_w=8000.0,
                          power_w=np.minimum(cap_wall, 3000 + 4000 * load + 100 * rng.random(30)))
              for k, (cap, tp, cap_wall) in enumerate(((None, 100.0, 9e9), (500.0, 90.0, 5500.0), (400.0, 80.0, 4500.0)))]
    screened = plan_power(groups, budget_w=30_000.0, violation=0.1, gap=0.0)
    full = plan_power(groups, budget_w=30_000.0, violation=0.1, gap=0.0, screen=False)
    assert screened.tokens_per_s == pytest.approx(full.tokens_per_s)
    assert screened.tokens_per_s == pytest.approx(_brute(groups, 30_000.0, 0.1, bound=10))
