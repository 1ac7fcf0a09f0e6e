"""Memory tiering of experts as a knapsack MILP: which experts of a device live in HBM, host DRAM
or flash, to minimise the expected expert-fetch time per token.

The model (one device; items are its (MoE layer, expert) pairs, each of ``bytes`` on the
device; ``f[l, e]`` the expected picks per token of expert ``e`` at layer ``l``, from the
routing model's inclusion or a routing trace's counts):

* ``a[l, e, t]`` binary: the expert lives in tier ``t`` (``hbm``, ``dram``, ``flash``);
* ``tier_<l>_<e>``: exactly one tier each;
* ``cap_<t>``: the bytes in tier ``t`` fit its capacity (HBM left after the dense weights and
  the KV reserve; the device's share of host DRAM; flash);
* minimise ``sum f[l, e] * cost[t] * a[l, e, t]``, ``cost[t]`` the time to bring one expert
  from tier ``t`` into HBM (0 for HBM; a host-link fetch for DRAM; for flash the longer of the
  flash read, latency- or bandwidth-bound at the read size, and the host-link leg, the two
  legs overlapping as in :mod:`hwsim.perf.offload`, whose cost model the caller uses).

The expected fetch time counts every pick of a non-resident expert as a fetch (no reuse
between tokens): the static tiering the plan describes; an LRU cache also keeps recently used
experts, which the simulation check shows. With equal expert sizes and costs ordered
``hbm < dram < flash`` the optimum fills HBM with the most frequent experts and DRAM with the
next ones; the MILP also covers unequal sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulp
from hwsim.solvers.common import SolveReport, solve

from hwsim.errors import InfeasibleError

__all__ = ["TIERS", "TieringPlan", "plan_tiering", "tiering_model", "expected_fetch_s"]

TIERS = ("hbm", "dram", "flash")


@dataclass(frozen=True, slots=True, eq=False)
class TieringPlan:
    """``tier[l, e]``: index into :data:`TIERS` of each expert of the device; the expected
    fetch seconds per token (``objective``), tier bytes used, and the solver's report."""

    tier: np.ndarray
    objective: float
    used_bytes: tuple[float, float, float]
    capacity_bytes: tuple[float, float, float]
    cost_s: tuple[float, float, float]
    report: SolveReport

    def counts(self) -> dict[str, int]:
        return {t: int(np.count_nonzero(self.tier == i)) for i, t in enumerate(TIERS)}

    def as_dict(self) -> dict[str, object]:
        return {"objective_s_per_token": self.objective, "counts": self.counts(),
                "used_bytes": dict(zip(TIERS, self.used_bytes, strict=True)),
                "capacity_bytes": {t: (None if math.isinf(c) else c) for t, c in zip(TIERS, self.capacity_bytes,
                                                                                    strict=True)},
                "cost_s": dict(zip(TIERS, self.cost_s, strict=True)), "solver": self.report.as_dict(),
                "tier": self.tier.tolist()}


def expected_fetch_s(freq: np.ndarray, tier: np.ndarray, cost_s: tuple[float, float, float]) -> float:
    """Expected fetch seconds per token of an assignment ``tier[l, e]``."""
    return float(np.sum(np.asarray(freq, dtype=float) * np.asarray(cost_s)[np.asarray(tier)]))


def tiering_model(freq: np.ndarray, expert_bytes: float | np.ndarray, capacity: tuple[float, float, float],
                  cost_s: tuple[float, float, float], *,
                  name: str = "tiering") -> tuple[pulp.LpProblem, dict[tuple[int, int, int], pulp.LpVariable]]:
    """The MILP (module docstring) and its ``a[l, e, t]`` variables."""
    f = np.atleast_2d(np.asarray(freq, dtype=float))
    size = np.broadcast_to(np.asarray(expert_bytes, dtype=float), f.shape)
    scale = float(size.max()) if size.size and size.max() > 0 else 1.0
    prob = pulp.LpProblem(name, pulp.LpMinimize)
    a = {(layer, e, t): pulp.LpVariable(f"a_{layer}_{e}_{TIERS[t]}", cat="Binary")
         for layer in range(f.shape[0]) for e in range(f.shape[1]) for t in range(3)}
    cmax = max(max(cost_s), 1e-30)
    prob += pulp.lpSum(float(f[k[0], k[1]] * cost_s[k[2]] / cmax) * v for k, v in a.items() if cost_s[k[2]] > 0)
    for layer in range(f.shape[0]):
        for e in range(f.shape[1]):
            prob += pulp.lpSum(a[layer, e, t] for t in range(3)) == 1, f"tier_{layer}_{e}"
    for t in range(3):
        if math.isfinite(capacity[t]):
            prob += (pulp.lpSum(float(size[k[0], k[1]] / scale) * v for k, v in a.items() if k[2] == t)
                     <= capacity[t] / scale), f"cap_{TIERS[t]}"
    return prob, a


def plan_tiering(freq: np.ndarray, expert_bytes: float | np.ndarray, capacity: tuple[float, float, float],
                 cost_s: tuple[float, float, float], *, backend: str = "cbc", time_limit_s: float = 30.0,
                 gap: float = 0.0001, write_lp: str | Path | None = None, name: str = "tiering") -> TieringPlan:
    """Solve the tiering MILP for one device (``freq`` ``(L, E)`` picks per token).

    Raises :class:`~hwsim.errors.InfeasibleError` naming the ``cap_*`` group when the tiers
    cannot hold every expert.
    """
    f = np.atleast_2d(np.asarray(freq, dtype=float))
    if np.any(f < 0) or not np.all(np.isfinite(f)):
        raise ValueError("frequencies must be finite and non-negative")
    size = np.broadcast_to(np.asarray(expert_bytes, dtype=float), f.shape)
    if sum(capacity) < size.sum():
        raise InfeasibleError(f"the tiering model '{name}' is infeasible: the 'cap_hbm', 'cap_dram' and "
                              f"'cap_flash' groups hold {sum(capacity):.4g} bytes, the experts need {size.sum():.4g}")
    prob, a = tiering_model(f, size, capacity, cost_s, name=name)
    try:
        report = solve(prob, backend=backend, time_limit_s=time_limit_s, gap=gap, write_lp=write_lp)
    except InfeasibleError:
        raise InfeasibleError(f"the tiering model '{name}' is infeasible: the capacity groups cap_hbm, cap_dram, "
                              "cap_flash cannot hold every expert (group 'tier')") from None
    tier = np.zeros(f.shape, dtype=np.int64)
    for (layer, e, t), v in a.items():
        if (v.value() or 0.0) > 0.5:
            tier[layer, e] = t
    used = tuple(float(size[tier == t].sum()) for t in range(3))
    return TieringPlan(tier=tier, objective=expected_fetch_s(f, tier, cost_s), used_bytes=used,  # type: ignore[arg-type]
                       capacity_bytes=tuple(float(c) for c in capacity), cost_s=tuple(cost_s),  # type: ignore[arg-type]
                       report=report)
