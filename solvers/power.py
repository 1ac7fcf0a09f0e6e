"""Power oversubscription: how many servers of each group a power budget holds, and at which cap.

The idea is POLCA's (Patel et al., "POLCA: Power Oversubscription in LLM Cloud Providers",
2023): LLM inference servers rarely draw their nameplate power all at once, so a power domain
provisioned for the *typical* draw holds more servers than one provisioned at TDP, and the
rare moments above the budget are absorbed by power caps (a small, bounded throughput loss).

The model (a scenario-based chance-constrained MILP)::

    maximise    sum_g n_g x tput_g
    subject to  sum_g n_g x P_g(s) <= budget + M_s x z_s        budget_<s>     for each scenario s
                sum_s z_s <= floor(violation x S)                violations
                sum_{g in pool p} n_g >= 1                       min_servers_<p>
                R_0 x sum_{g in p} n_g = R_p x sum_{g in p0} n_g ratio_<p>      (disaggregated pools)
                sum_g n_g x servers_g <= max_servers             max_servers    (when given)
                n_g integer >= 0, z_s binary

A *group* ``g`` is one replica of a pool of the deployment running at one cap level (or
uncapped); ``servers_g`` is the number of servers (nodes) one replica occupies (a fraction
when several replicas share a node). ``P_g(s)`` is the wall power of one replica in scenario
``s`` and ``tput_g`` its output tokens/s. A scenario is a moment of the served trace: the
caller samples every group at the same simulated time, so groups that see the same load peak
peak together (the arrival process is shared); within a group, ``n_g`` replicas are assumed to
draw the same per-replica power (the mean over the simulated replicas at that moment), which
is conservative: independent replicas would smooth each other's peaks.

``M_s = sum_g ub_g x P_g(s) - budget`` with ``ub_g`` the most replicas of ``g`` whose lowest
sampled power fits the budget, so a violated scenario is never over-constrained.

Infeasible inputs (the budget below the draw of the smallest deployment in too many
scenarios) raise :class:`~hwsim.errors.InfeasibleError` naming the constraint groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pulp
from hwsim.solvers.common import SolveReport, solve

from hwsim.errors import InfeasibleError, SpecError

__all__ = ["ServerGroup", "PowerPlan", "plan_power", "violation_fraction"]


@dataclass(frozen=True, kw_only=True, eq=False)
class ServerGroup:
    """One replica of a pool at one cap: its power in each scenario and its throughput.

    ``power_w[s]`` is the replica's wall power (W) in scenario ``s``; ``tokens_per_s`` its
    output tokens/s; ``servers`` the nodes it occupies; ``tdp_power_w`` its wall power with
    every device at TDP (what provisioning at TDP reserves).
    """

    name: str
    pool: str
    cap_w: float | None
    servers: float
    tokens_per_s: float
    tdp_power_w: float
    power_w: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        p = np.asarray(self.power_w, dtype=np.float64)
        if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError(f"group {self.name}: power_w must be a non-empty 1-D array of finite values >= 0")
        if self.servers <= 0 or self.tokens_per_s < 0 or self.tdp_power_w <= 0:
            raise ValueError(f"group {self.name}: servers and tdp_power_w must be > 0, tokens_per_s >= 0")
        object.__setattr__(self, "power_w", p)


@dataclass(frozen=True, kw_only=True)
class PowerPlan:
    """The chosen replica counts per group and what they give."""

    budget_w: float
    violation_limit: float
    groups: tuple[str, ...]
    counts: tuple[int, ...]
    servers: float
    tokens_per_s: float
    tdp_servers: int
    in_sample_violation: float
    scenarios: int
    solve: SolveReport

    @property
    def servers_gained(self) -> float:
        """Servers held beyond what provisioning every server at TDP allows."""
        return self.servers - self.tdp_servers

    def count_of(self, name: str) -> int:
        return self.counts[self.groups.index(name)]

    def as_dict(self) -> dict[str, object]:
        return {"budget_w": self.budget_w, "violation_limit": self.violation_limit,
                "counts": dict(zip(self.groups, self.counts, strict=True)), "servers": self.servers,
                "tokens_per_s": self.tokens_per_s, "tdp_servers": self.tdp_servers,
                "servers_gained": self.servers_gained, "in_sample_violation": self.in_sample_violation,
                "scenarios": self.scenarios, "solve": self.solve.as_dict()}


def violation_fraction(counts: np.ndarray | Sequence[int], power_w: np.ndarray, budget_w: float) -> float:
    """Fraction of scenarios (columns of ``power_w``, shape ``(groups, S)``) whose total exceeds the budget."""
    total = np.asarray(counts, dtype=np.float64) @ np.asarray(power_w, dtype=np.float64)
    return float(np.mean(total > budget_w * (1 + 1e-9)))


def _check(groups: list[ServerGroup], budget_w: float, violation: float) -> int:
    if not groups:
        raise SpecError("no server groups to plan", path="groups", expected="at least one group")
    if budget_w <= 0:
        raise SpecError("the power budget must be > 0", path="budget", expected="a power > 0", found=budget_w)
    if not 0.0 <= violation < 1.0:
        raise SpecError("the violation fraction must be in [0, 1)", path="violation", expected="0 <= f < 1",
                        found=violation)
    sizes = {g.power_w.size for g in groups}
    if len(sizes) != 1:
        raise ValueError("every group needs the same number of scenarios")
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ValueError("group names must be unique")
    return sizes.pop()


def plan_power(groups: list[ServerGroup], *, budget_w: float, violation: float = 0.01,
               pool_replicas: dict[str, int] | None = None, max_servers: float | None = None,
               node_tdp_w: float | None = None, backend: str = "cbc", time_limit_s: float = 30.0,
               gap: float = 0.01, write_lp: str | Path | None = None, screen: bool = True) -> PowerPlan:
    """Solve the oversubscription MILP (module docstring) for ``groups`` under ``budget_w``.

    ``pool_replicas`` (pool -> configured replicas) keeps the pools' ratio for disaggregated
    deployments; ``node_tdp_w`` (one server's wall power at TDP) gives the TDP-provisioning
    baseline ``floor(budget / node_tdp_w)`` (default: the largest per-server TDP power of the groups).
    ``screen`` applies the exact dominance screening of :func:`_screen` (off: every scenario gets a ``z``).
    """
    s_count = _check(groups, budget_w, violation)
    power = np.stack([g.power_w for g in groups])                   # (G, S)
    pools = list(dict.fromkeys(g.pool for g in groups))
    allowed = int(math.floor(violation * s_count + 1e-9))
    ub = [max(0, int(budget_w // max(float(g.power_w.min()), 1e-9))) for g in groups]
    if max_servers is not None:
        ub = [min(u, int(max_servers // g.servers)) for u, g in zip(ub, groups, strict=True)]
    ub = [max(u, 1) for u in ub]

    prob = pulp.LpProblem("power_oversubscription", pulp.LpMaximize)
    n = [pulp.LpVariable(f"n_{i}", lowBound=0, upBound=u, cat="Integer") for i, u in enumerate(ub)]
    prob += pulp.lpSum(g.tokens_per_s * v for g, v in zip(groups, n, strict=True)), "throughput"
    hard, soft, order = _screen(power, allowed) if screen else (set(), set(range(s_count)), [])
    z = {s: pulp.LpVariable(f"z_{s}", cat="Binary") for s in soft}
    for s in sorted(hard | soft):
        lhs = pulp.lpSum(float(power[i, s]) * n[i] for i in range(len(groups)))
        if s in soft:
            big_m = max(0.0, float(np.dot(ub, power[:, s])) - budget_w)
            prob += lhs <= budget_w + big_m * z[s], f"budget_{s}"
        else:
            prob += lhs <= budget_w, f"budget_{s}"
    for k, (hi, lo) in enumerate(order):
        prob += z[hi] >= z[lo], f"dominance_{k}"
    prob += pulp.lpSum(z.values()) <= allowed, "violations"
    for pi, pool in enumerate(pools):
        members = [v for g, v in zip(groups, n, strict=True) if g.pool == pool]
        prob += pulp.lpSum(members) >= 1, f"min_servers_{pi}"
    if pool_replicas and len(pools) > 1:
        first = pools[0]
        base = [v for g, v in zip(groups, n, strict=True) if g.pool == first]
        for pi, pool in enumerate(pools[1:], start=1):
            members = [v for g, v in zip(groups, n, strict=True) if g.pool == pool]
            prob += (pool_replicas[first] * pulp.lpSum(members) == pool_replicas[pool] * pulp.lpSum(base)), \
                f"ratio_{pi}"
    if max_servers is not None:
        prob += pulp.lpSum(g.servers * v for g, v in zip(groups, n, strict=True)) <= max_servers, "max_servers"
    try:
        report = solve(prob, backend=backend, time_limit_s=time_limit_s, gap=gap, write_lp=write_lp)
    except InfeasibleError:
        raise InfeasibleError(_explain(groups, pools, power, budget_w, allowed, s_count, max_servers)) from None
    counts = tuple(int(round(v.value() or 0.0)) for v in n)
    servers = float(sum(c * g.servers for c, g in zip(counts, groups, strict=True)))
    tput = float(sum(c * g.tokens_per_s for c, g in zip(counts, groups, strict=True)))
    node_tdp = node_tdp_w if node_tdp_w is not None else max(g.tdp_power_w / g.servers for g in groups)
    return PowerPlan(budget_w=budget_w, violation_limit=violation, groups=tuple(g.name for g in groups),
                     counts=counts, servers=servers, tokens_per_s=tput, tdp_servers=int(budget_w // node_tdp),
                     in_sample_violation=violation_fraction(counts, power, budget_w), scenarios=s_count,
                     solve=report)


def _screen(power: np.ndarray, allowed: int, max_order: int = 20_000) -> tuple[set[int], set[int], list[tuple[int, int]]]:
    """Scenario screening by dominance (exact; the quantile-cut idea of chance-constrained MILPs).

    With ``n >= 0``, a scenario ``a`` whose power is >= that of ``b`` in every group is violated
    whenever ``b`` is. So ``b`` can be violated only with its ``d_b`` dominators: when
    ``d_b >= allowed`` it never is (a hard constraint without ``z``), and a hard scenario
    dominated by another hard one is redundant (dropped). Returns (hard kept, soft, ordering
    pairs ``(a, b)`` meaning ``z_a >= z_b`` between soft scenarios, at most ``max_order``).
    Ties (equal vectors) are broken by index so that equal scenarios count once for each other.
    """
    g, s_count = power.shape
    geq = np.ones((s_count, s_count), dtype=bool)         # geq[a, b]: a >= b in every group
    for i in range(g):
        geq &= power[i][:, None] >= power[i][None, :]
    np.fill_diagonal(geq, False)
    equal = geq & geq.T
    upper = np.triu(np.ones((s_count, s_count), dtype=bool), 1)
    dom = geq & ~(equal & upper.T)     # of two equal scenarios, only the lower index dominates the higher
    dominators = dom.sum(axis=0)
    hard_mask = dominators >= allowed
    hard = {b for b in np.flatnonzero(hard_mask) if not np.any(dom[hard_mask, b])}
    soft_idx = np.flatnonzero(~hard_mask)
    soft = {int(b) for b in soft_idx}
    order: list[tuple[int, int]] = []
    for b in soft_idx:
        for a in np.flatnonzero(dom[:, b] & ~hard_mask):
            if len(order) >= max_order:
                break
            order.append((int(a), int(b)))
    return {int(b) for b in hard}, soft, order


def _explain(groups: list[ServerGroup], pools: list[str], power: np.ndarray, budget_w: float, allowed: int,
             s_count: int, max_servers: float | None) -> str:
    """Why the model is infeasible, by constraint group."""
    # the smallest deployment: one replica per pool, each at its least-power group, per scenario
    least = np.zeros(s_count)
    for pool in pools:
        rows = [i for i, g in enumerate(groups) if g.pool == pool]
        least += power[rows].min(axis=0)
    over = int(np.sum(least > budget_w))
    msg = (f"power plan infeasible: constraint groups 'budget_*' (budget {budget_w:.6g} W in each of {s_count} "
           f"scenarios), 'violations' (at most {allowed} may exceed it) and 'min_servers_*' (at least one replica "
           f"of every pool) conflict: the smallest deployment draws {least.min():.6g}-{least.max():.6g} W and "
           f"exceeds the budget in {over} scenarios")
    if max_servers is not None:
        msg += f"; 'max_servers' allows {max_servers:g} servers"
    return msg
