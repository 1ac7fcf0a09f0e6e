"""Expert placement as a MILP: which experts (and how many copies) each device holds, per MoE layer.

The model (one MoE layer; ``E`` experts with expected loads ``w_e``, ``D`` identical devices
of ``S`` slots each, ``E + R = D * S`` physical copies):

* ``x[e, d]`` binary: device ``d`` holds a copy of expert ``e`` (copies of one expert sit on
  different devices; a second copy on the same device would serve nothing new);
* ``z[e, k]`` binary: expert ``e`` has exactly ``k`` copies (``k = 1 .. min(D, R + 1)``);
* ``p[e, d] >= 0``: the load device ``d`` takes of expert ``e``: ``w_e / k`` when it holds one
  of its ``k`` copies (the simulator's ``equal`` split, :meth:`ExpertPlacement.from_rank_slots`:
  a router spreading an expert's tokens evenly over its replicas, as DeepSeek's EPLB assumes);
* minimise ``T`` with ``T >= sum_e p[e, d]`` for every device.

Constraint groups (every constraint is named ``<group>_<index>``): ``copies_e`` (the copies
of ``e`` are the chosen count), ``count_e`` (one count per expert), ``slots_d`` (``S``
slots per device, the HBM slot limit), ``budget`` (``E + R`` copies in all: the replica budget),
``share_e_d`` (``p[e, d] >= w_e / k - w_e (1 - x[e, d])``, the equal split, linearised) and
``makespan_d`` (``T`` bounds every device's load).

Layers are independent in this objective (the slowest device of each layer; their sum is the
MoE time of a step), so the plan decomposes by layer exactly. Each layer is first solved by a
heuristic: EPLB's replica rule and balanced packing (:mod:`hwsim.workload.placement`) followed
by a swap local search that lowers the busiest device; a lower bound that holds for every
placement, ``max(sum w / D, V + the S - 1 smallest w_e / min(D, R + 1))`` with
``V = min over replica counts of max_e w_e / n_e`` (by the greedy replica rule, which is optimal
for that min-max: the device holding the largest copy holds ``S - 1`` other experts' copies),
proves the gap. Only layers
whose gap exceeds the limit go to the MILP (or every layer with ``method="milp"``); the better
of the two solutions is kept and the best bound of both is reported.

Cross-layer co-activation (MoETuner, Go & Mahajan, arXiv:2502.06643: experts that tokens pick
in consecutive layers belong on the same node): a token routed to expert ``e`` at layer ``l``
and ``e'`` at ``l + 1`` crosses nodes with the probability that the two experts' copies sit on
different nodes. Permuting a layer's device loads among identical devices keeps its makespan,
so after balancing, each layer's device contents are assigned to devices to minimise the
co-activation traffic crossing nodes given the previous layer (a linear assignment, solved
exactly; layers in order). The plan is thus lexicographic: balance first (exact to the
reported gap), cross-node traffic second (exact for each layer given the previous one).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pulp
from hwsim.solvers.common import SolveReport, solve

from hwsim.errors import InfeasibleError, SolverError
from hwsim.workload.placement import balanced_packing, replica_counts
from hwsim.workload.routing_loads import ExpertPlacement, LayeredPlacement

__all__ = ["LayerPlan", "PlacementPlan", "plan_placement", "layer_model", "lower_bound", "coactivation",
           "cross_node_share", "device_loads"]

GROUPS = ("copies", "count", "slots", "budget", "share", "makespan")


@dataclass(frozen=True, slots=True, eq=False)
class LayerPlan:
    """One MoE layer: ``slots`` (D, S) expert ids, its busiest device's expected load
    (``makespan``, in the loads' units), the mean device load, the best lower bound and how it
    was found (``heuristic`` or ``milp``); ``report`` is the MILP's when it ran."""

    layer: int
    slots: np.ndarray
    makespan: float
    mean: float
    bound: float
    method: str
    report: SolveReport | None = None

    @property
    def gap(self) -> float:
        return max(0.0, self.makespan - self.bound) / max(self.makespan, 1e-300)

    @property
    def max_over_mean(self) -> float:
        return self.makespan / self.mean if self.mean > 0 else 1.0


@dataclass(frozen=True, slots=True, eq=False)
class PlacementPlan:
    """Per-layer plans on ``ranks`` devices of ``slots_per_rank`` slots (``redundant`` extra
    copies), plus the co-activation traffic crossing nodes before and after the device
    assignment pass (``None`` without co-activation counts or with one node)."""

    layers: tuple[LayerPlan, ...]
    num_experts: int
    ranks: int
    slots_per_rank: int
    redundant: int
    time_limit_s: float
    gap_limit: float
    wall_s: float
    cross_node_before: float | None = None
    cross_node_after: float | None = None

    def placement(self) -> LayeredPlacement:
        return LayeredPlacement(layers={p.layer: ExpertPlacement.from_rank_slots(p.slots, self.num_experts)
                                        for p in self.layers})

    @property
    def gap(self) -> float:
        """The worst layer's proven gap."""
        return max(p.gap for p in self.layers)

    @property
    def optimal(self) -> bool:
        return self.gap <= self.gap_limit + 1e-12

    def as_dict(self) -> dict[str, object]:
        return {
            "num_experts": self.num_experts, "ranks": self.ranks, "slots_per_rank": self.slots_per_rank,
            "redundant": self.redundant, "time_limit_s": self.time_limit_s, "gap_limit": self.gap_limit,
            "gap": self.gap, "optimal": self.optimal, "cross_node_before": self.cross_node_before,
            "cross_node_after": self.cross_node_after,
            "layers": [{"layer": p.layer, "makespan": p.makespan, "mean": p.mean, "bound": p.bound, "gap": p.gap,
                        "max_over_mean": p.max_over_mean, "method": p.method,
                        "solver": None if p.report is None else p.report.as_dict(),
                        "ranks": p.slots.tolist()} for p in self.layers],
        }


# ---------------------------------------------------------------------- pieces


def device_loads(w: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """(D,) expected load of each device under the equal split (``slots`` (D, S) expert ids)."""
    w = np.asarray(w, dtype=float)
    copies = np.bincount(slots.ravel(), minlength=len(w))
    per_copy = np.divide(w, copies, out=np.zeros_like(w), where=copies > 0)
    return per_copy[slots].sum(axis=1)


def lower_bound(w: np.ndarray, ranks: int, redundant: int) -> float:
    """A bound on the busiest device's load that every placement of ``E + R`` copies on
    ``ranks`` devices (``S`` slots each) respects: the mean device load, or the device holding
    the largest copy, ``V = min_n max_e w_e / n_e``, with ``S - 1`` copies of other experts, each
    at least ``w_e / min(D, R + 1)``: ``V`` plus the ``S - 1`` smallest of those."""
    w = np.asarray(w, dtype=float)
    n = replica_counts(w, len(w) + redundant)
    slots = (len(w) + redundant) // ranks
    smallest = np.sort(w / min(ranks, redundant + 1))[: max(slots - 1, 0)].sum()
    return float(max(w.sum() / ranks, np.max(w / n) + smallest))


def _check(num_experts: int, ranks: int, redundant: int, slots_per_rank: int | None) -> int:
    physical = num_experts + redundant
    s = physical // ranks if slots_per_rank is None else slots_per_rank
    problems = []
    if ranks * s != physical:
        problems.append(f"'slots' ({ranks} devices x {s} slots = {ranks * s}) and 'budget' "
                        f"({num_experts} experts + {redundant} redundant = {physical} copies) disagree")
    if ranks * s < num_experts:
        problems.append(f"'copies' needs every one of {num_experts} experts on a device but 'slots' holds "
                        f"{ranks * s}")
    if problems:
        raise InfeasibleError("the placement model is infeasible: " + "; ".join(problems))
    return s


def _heuristic(w: np.ndarray, ranks: int, slots: int, redundant: int, *, sweeps: int = 2000) -> np.ndarray:
    """EPLB-style replicas + balanced packing, then swaps that lower the busiest device."""
    counts = np.minimum(replica_counts(w, len(w) + redundant), ranks)
    while counts.sum() < ranks * slots:  # copies capped by the device count go to the next hottest
        room = np.where(counts < ranks, w / counts, -np.inf)
        counts[int(np.argmax(room))] += 1
    items = np.repeat(np.arange(len(w)), counts)
    per_copy = w[items] / counts[items]
    bins = balanced_packing(per_copy, ranks, slots, keys=items)
    table = np.stack([items[bins == d] for d in range(ranks)])
    item_w = np.stack([per_copy[bins == d] for d in range(ranks)])
    table = _improve(table, item_w, sweeps)
    for _ in range(len(w) + redundant):
        moved = _move_replica(w, table, ranks)
        if moved is None:
            break
        copies = np.bincount(moved.ravel(), minlength=len(w))
        table = _improve(moved, (w / copies)[moved], sweeps)
    return table


def _move_replica(w: np.ndarray, table: np.ndarray, ranks: int) -> np.ndarray | None:
    """The table with one copy on the busiest device given to another expert (not yet on that
    device), the move that lowers the busiest load most; ``None`` when none lowers it."""
    e_count = len(w)
    copies = np.bincount(table.ravel(), minlength=e_count)
    held = np.zeros((e_count, ranks), dtype=bool)
    held[table, np.arange(ranks)[:, None]] = True
    per = w / copies
    load = per[table].sum(axis=1)
    a_dev = int(np.argmax(load))
    top = load[a_dev]
    # a new copy of b: its holders lose per_b - w_b / (n_b + 1); the busiest device gains w_b / (n_b + 1)
    gain_b = w / (copies + 1)
    drop_b = per - gain_b
    best, best_val = None, top * (1 - 1e-9)
    for i, a in enumerate(table[a_dev]):
        if copies[a] < 2:
            continue
        base = load.copy()
        base[held[a]] += w[a] / (copies[a] - 1) - per[a]
        base[a_dev] = top - per[a]
        cand = base[None, :] - drop_b[:, None] * held                   # (E, D) after the new copy of b
        cand[:, a_dev] = base[a_dev] + gain_b
        cand[held[:, a_dev]] = np.inf                                    # b already on the busiest device
        cand[a] = np.inf
        worst = cand.max(axis=1)
        b = int(np.argmin(worst))
        if worst[b] < best_val:
            best, best_val = (i, b), float(worst[b])
    if best is None:
        return None
    out = table.copy()
    out[a_dev, best[0]] = best[1]
    return out


def _improve(table: np.ndarray, item_w: np.ndarray, sweeps: int) -> np.ndarray:
    """Swap an item of the busiest device with one of another device while that lowers the
    pair's larger load below the busiest load (no device ends with two copies of an expert)."""
    table, item_w = table.copy(), item_w.copy()
    for _ in range(sweeps):
        load = item_w.sum(axis=1)
        a = int(np.argmax(load))
        top = load[a]
        # delta[i, b, j]: move item i of a to b, item j of b to a
        delta = item_w[a][:, None, None] - item_w[None, :, :]           # (S, D, S)
        new_a = top - delta
        new_b = load[None, :, None] + delta
        worst = np.maximum(new_a, new_b)
        worst[:, a, :] = np.inf
        held_a = set(table[a].tolist())
        order = np.argsort(worst, axis=None)
        moved = False
        for flat in order[:64]:
            i, b, j = np.unravel_index(flat, worst.shape)
            if worst[i, b, j] >= top - 1e-12 * max(top, 1.0):
                break
            ei, ej = table[a, i], table[b, j]
            if ei == ej or (ej in held_a) or (ei in set(table[b].tolist())):
                continue
            table[a, i], table[b, j] = ej, ei
            item_w[a, i], item_w[b, j] = item_w[b, j], item_w[a, i]
            moved = True
            break
        if not moved:
            break
    return np.sort(table, axis=1)


def layer_model(w: np.ndarray, ranks: int, slots: int, redundant: int, *,
                name: str = "placement") -> tuple[pulp.LpProblem, dict[tuple[int, int], pulp.LpVariable]]:
    """The MILP of one layer (module docstring) and its ``x[e, d]`` variables."""
    w = np.asarray(w, dtype=float)
    e_count = len(w)
    scale = float(w.max()) if w.size and w.max() > 0 else 1.0
    ws = w / scale  # well-conditioned coefficients; the objective is rescaled by the caller
    kmax = max(1, min(ranks, redundant + 1))
    prob = pulp.LpProblem(name, pulp.LpMinimize)
    x = {(e, d): pulp.LpVariable(f"x_{e}_{d}", cat="Binary") for e in range(e_count) for d in range(ranks)}
    z = {(e, k): pulp.LpVariable(f"z_{e}_{k}", cat="Binary") for e in range(e_count) for k in range(1, kmax + 1)}
    p = {(e, d): pulp.LpVariable(f"p_{e}_{d}", lowBound=0) for e in range(e_count) for d in range(ranks)}
    t = pulp.LpVariable("T", lowBound=float(ws.sum() / ranks))
    prob += t
    for e in range(e_count):
        prob += (pulp.lpSum(x[e, d] for d in range(ranks))
                 == pulp.lpSum(k * z[e, k] for k in range(1, kmax + 1))), f"copies_{e}"
        prob += pulp.lpSum(z[e, k] for k in range(1, kmax + 1)) == 1, f"count_{e}"
        if ws[e] > 0:
            for d in range(ranks):
                prob += (p[e, d] >= pulp.lpSum(float(ws[e] / k) * z[e, k] for k in range(1, kmax + 1))
                         - float(ws[e]) * (1 - x[e, d])), f"share_{e}_{d}"
    for d in range(ranks):
        prob += pulp.lpSum(x[e, d] for e in range(e_count)) == slots, f"slots_{d}"
        prob += pulp.lpSum(p[e, d] for e in range(e_count)) <= t, f"makespan_{d}"
    prob += pulp.lpSum(x.values()) == e_count + redundant, "budget"
    return prob, x


def _solve_milp(w: np.ndarray, ranks: int, slots: int, redundant: int, *, backend: str, time_limit_s: float,
                gap: float, write_lp: str | Path | None, name: str) -> tuple[np.ndarray, float, SolveReport]:
    prob, x = layer_model(w, ranks, slots, redundant, name=name)
    try:
        report = solve(prob, backend=backend, time_limit_s=time_limit_s, gap=gap, write_lp=write_lp)
    except InfeasibleError:
        raise InfeasibleError(f"the placement model '{name}' is infeasible: check the constraint groups "
                              f"{', '.join(GROUPS)} (slots per device, replica budget, one copy per expert)") from None
    held = np.array([[x[e, d].value() or 0.0 for e in range(len(w))] for d in range(ranks)]) > 0.5
    table = np.stack([np.flatnonzero(row) for row in held])
    scale = float(w.max()) if w.size and w.max() > 0 else 1.0
    bound = report.bound * scale if not math.isnan(report.bound) else math.nan
    return np.sort(table, axis=1), bound, report


# ---------------------------------------------------------------------- co-activation


def coactivation(ids: np.ndarray, num_experts: int, *, max_tokens: int = 20000) -> np.ndarray:
    """``(L - 1, E, E)`` counts of tokens picking ``e`` at MoE layer ``l`` and ``e'`` at ``l + 1``
    (from a routing trace's ``(T, L, k)`` ids; the first ``max_tokens`` tokens; ``-1`` ignored)."""
    ids = np.asarray(ids)[:max_tokens]
    t, layers, k = ids.shape
    out = np.zeros((max(layers - 1, 0), num_experts, num_experts))
    for layer in range(layers - 1):
        a = ids[:, layer, :][:, :, None].repeat(k, axis=2)
        b = ids[:, layer + 1, :][:, None, :].repeat(k, axis=1)
        ok = (a >= 0) & (b >= 0)
        flat = a[ok].astype(np.int64) * num_experts + b[ok]
        out[layer] = np.bincount(flat, minlength=num_experts * num_experts).reshape(num_experts, num_experts)
    return out


def _node_share(slots: np.ndarray, num_experts: int, rank_node: np.ndarray, nodes: int) -> np.ndarray:
    """(E, nodes): the share of each expert's tokens served on each node (equal split)."""
    share = np.zeros((num_experts, nodes))
    for d, row in enumerate(slots):
        np.add.at(share, (row, rank_node[d]), 1.0)
    return share / share.sum(axis=1, keepdims=True)


def cross_node_share(tables: list[np.ndarray], coact: np.ndarray, num_experts: int, rank_node: np.ndarray) -> float:
    """Fraction of consecutive-layer co-activations whose two experts are served on different
    nodes (both copies' nodes drawn by the equal split, independently)."""
    node = np.unique(rank_node, return_inverse=True)[1]
    nodes = int(node.max()) + 1
    total = crossing = 0.0
    for layer in range(len(tables) - 1):
        s0 = _node_share(tables[layer], num_experts, node, nodes)
        s1 = _node_share(tables[layer + 1], num_experts, node, nodes)
        c = coact[layer]
        same = float(np.sum(c * (s0 @ s1.T)))
        total += c.sum()
        crossing += c.sum() - same
    return crossing / total if total > 0 else 0.0


def _align(tables: list[np.ndarray], coact: np.ndarray, num_experts: int, rank_node: np.ndarray) -> list[np.ndarray]:
    """Reorder each layer's device contents (after the first) to minimise co-activations
    crossing nodes given the previous layer (linear assignment of contents to devices)."""
    from scipy.optimize import linear_sum_assignment

    node = np.unique(rank_node, return_inverse=True)[1]
    nodes = int(node.max()) + 1
    out = [tables[0]]
    for layer in range(1, len(tables)):
        prev = _node_share(out[-1], num_experts, node, nodes)
        c = coact[layer - 1]
        away = c.sum(axis=0)[:, None] - c.T @ prev            # (E', nodes): picks of e' crossing if e' on node
        cur = tables[layer]
        copies = np.bincount(cur.ravel(), minlength=num_experts)
        per_node = (away / np.maximum(copies, 1)[:, None])[cur].sum(axis=1)   # (bins, nodes)
        cost = per_node[:, node]                                           # (bins, devices)
        rows, cols = linear_sum_assignment(cost)
        new = np.empty_like(cur)
        new[cols] = cur[rows]
        out.append(new)
    return out


# ---------------------------------------------------------------------- the plan


def plan_placement(loads: np.ndarray, ranks: int, redundant: int, *, layers: list[int] | None = None,
                   slots_per_rank: int | None = None, rank_node: np.ndarray | None = None,
                   coact: np.ndarray | None = None, method: str = "auto", backend: str = "cbc",
                   time_limit_s: float = 30.0, gap: float = 0.01,
                   write_lp: str | Path | None = None) -> PlacementPlan:
    """Plan every layer of ``loads`` (``(L, E)`` expected picks per token of each expert).

    ``method``: ``auto`` (heuristic, MILP for layers whose proven gap exceeds ``gap``) or
    ``milp`` (the MILP on every layer, the heuristic's solution kept when it is better).
    ``time_limit_s`` bounds the whole plan; layers with identical loads are solved once.
    ``write_lp`` dumps the first layer's MILP. ``coact`` ``(L - 1, E, E)`` and ``rank_node``
    (the node of each device) enable the cross-node pass.
    """
    if method not in ("auto", "milp"):
        raise ValueError(f"method must be 'auto' or 'milp', got {method!r}")
    w_all = np.atleast_2d(np.asarray(loads, dtype=float))
    num_layers, num_experts = w_all.shape
    layer_ids = list(range(num_layers)) if layers is None else [int(v) for v in layers]
    if len(layer_ids) != num_layers:
        raise ValueError(f"{num_layers} load rows for {len(layer_ids)} layers")
    if np.any(w_all < 0) or not np.all(np.isfinite(w_all)):
        raise ValueError("loads must be finite and non-negative")
    slots = _check(num_experts, ranks, redundant, slots_per_rank)
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    if write_lp is not None:
        prob, _ = layer_model(w_all[0], ranks, slots, redundant, name=f"placement_layer_{layer_ids[0]}")
        Path(write_lp).parent.mkdir(parents=True, exist_ok=True)
        prob.writeLP(str(write_lp))
    cache: dict[bytes, tuple[np.ndarray, float, str, SolveReport | None]] = {}
    tables: list[np.ndarray] = []
    found: list[tuple[float, str, SolveReport | None]] = []
    for i, (layer, w) in enumerate(zip(layer_ids, w_all, strict=True)):
        key = w.tobytes()
        if key not in cache:
            table = _heuristic(w, ranks, slots, redundant)
            best = float(device_loads(w, table).max())
            bound = lower_bound(w, ranks, redundant)
            how, report = "heuristic", None
            if method == "milp" or (best - bound) / max(best, 1e-300) > gap:
                left = max(0.1, (deadline - time.perf_counter()) / (num_layers - i))
                if method == "milp" or left >= 1.0:
                    try:
                        got, milp_bound, report = _solve_milp(w, ranks, slots, redundant, backend=backend,
                                                              time_limit_s=left, gap=gap, write_lp=None,
                                                              name=f"placement_layer_{layer}")
                    except (SolverError, InfeasibleError):
                        # the heuristic's table is feasible: a time-limited run that found
                        # nothing (CBC may then report infeasible) leaves the heuristic's plan
                        cache[key] = (table, bound, how, None)
                        tables.append(table)
                        found.append((bound, how, None))
                        continue
                    value = float(device_loads(w, got).max())
                    if value < best - 1e-12 * max(best, 1.0):
                        table, best, how = got, value, "milp"
                    if not math.isnan(milp_bound):
                        bound = max(bound, min(milp_bound, best))
            cache[key] = (table, bound, how, report)
        table, bound, how, report = cache[key]
        tables.append(table)
        found.append((bound, how, report))
    before = after = None
    if coact is not None and rank_node is not None and len(np.unique(rank_node)) > 1 and num_layers > 1:
        node = np.asarray(rank_node)
        before = cross_node_share(tables, coact, num_experts, node)
        tables = _align(tables, coact, num_experts, node)
        after = cross_node_share(tables, coact, num_experts, node)
    plans = []
    for layer, w, table, (bound, how, report) in zip(layer_ids, w_all, tables, found, strict=True):
        dev = device_loads(w, table)
        plans.append(LayerPlan(layer=layer, slots=table, makespan=float(dev.max()), mean=float(dev.mean()),
                               bound=min(bound, float(dev.max())), method=how, report=report))
    return PlacementPlan(layers=tuple(plans), num_experts=num_experts, ranks=ranks, slots_per_rank=slots,
                         redundant=redundant, time_limit_s=time_limit_s, gap_limit=gap,
                         wall_s=time.perf_counter() - t0, cross_node_before=before, cross_node_after=after)
