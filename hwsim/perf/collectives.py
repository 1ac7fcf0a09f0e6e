"""Communication costs over the cluster graph: point-to-point, collectives, MoE all-to-all.

Alpha-beta per link, contended: every flow ``(src, dst, bytes)`` adds its bytes to each
directed edge of its lowest-latency path; a phase of simultaneous flows takes

    max over edges e of  bytes_e / (bandwidth_e * efficiency(kind_e))      (beta, bottleneck)
  + steps * max over flows of (sum of wire latencies + message latency)    (alpha)

(the *mean* over flows for chained algorithms, ring and tree, where a chunk travels the
flows one after another), and a call takes the sum of its phases plus one launch
overhead; pipelined plans (hierarchical) share one bandwidth pool across their phases. Efficiencies are the
devices' fitted ``scale_up`` / ``scale_out`` / ``host_link`` factors (a link is derated by
the device of the node it belongs to); message latencies, launch overhead and the NVLS
fraction are :class:`hwsim.perf.comm_params.CommParams`. Algorithms (ring, tree, direct,
NVLS, hierarchical) are described in :mod:`hwsim.perf.comm_algorithms`; MoE dispatch in
:mod:`hwsim.perf.comm_moe`.

Sizes follow NCCL (nccl-tests ``PERFORMANCE.md``): ``nbytes`` is the all-reduce buffer, the
all-gather *output* and the reduce-scatter *input* of one rank. Bus bandwidth is
``nbytes / time`` times ``2(n-1)/n`` (all-reduce) or ``(n-1)/n`` (all-gather,
reduce-scatter, all-to-all); see :func:`hwsim.perf.comm_params.bus_bandwidth_bytes_per_s`.

Build one :class:`Collectives` per cluster and reuse it: paths, per-group edge tables and
per-algorithm plans are cached, so a repeated collective costs a few array operations.

>>> from hwsim.io.load import load_cluster
>>> comm = Collectives(load_cluster("4x-DGX-H100"))
>>> c = comm.all_reduce(range(8), 1e9, algorithm="ring")
>>> c.name, c.bottleneck[0]
('all_reduce[ring]', 'n0.d0')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from hwsim.perf import comm_algorithms as algo
from hwsim.perf.comm_moe import EpLayout, RoutingCounts, normal_mode_matrix
from hwsim.perf.comm_params import EFFICIENCY_CLASS, CommParams
from hwsim.perf.comm_paths import KIND_BIT, CommTopology, PairTable
from hwsim.perf.comm_plans import (
    PhaseCost,
    PhaseGeometry,
    merged_geometry,
    phase_cost,
    phase_geometry,
)
from hwsim.perf.types import CommCost

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster

ALGORITHMS = ("auto", "nccl", "ring", "tree", "direct", "nvls", "hierarchical")
"""``auto``: the fastest variant that applies; ``nccl``: the fastest of NCCL's flat algorithms
(ring, tree, NVLS), for comparing with NCCL measurements; ``hierarchical``: the fastest
``hierarchical(intra/inter)`` variant; or one variant by name."""
NCCL_ALGORITHMS = ("ring", "tree", "nvls")
EP_MODES = ("normal", "low-latency")


class Collectives:
    """Communication cost functions for one cluster (see the module docstring).

    ``efficiency`` overrides device factors: ``{(device_name, "scale_up"): 0.8, ...}``.
    ``topology`` shares path caches between instances (e.g. in calibration sweeps).
    """

    def __init__(self, cluster: Cluster, *, params: CommParams | None = None,
                 efficiency: Mapping[tuple[str, str], float] | None = None,
                 topology: CommTopology | None = None) -> None:
        self.cluster = cluster
        self.topology = topology if topology is not None else CommTopology(cluster)
        self.params = params if params is not None else CommParams()
        devices = {node.device.name: node.device for node in cluster.nodes}
        override = dict(efficiency or {})
        topo = self.topology

        def eff(device: str, kind: str) -> float:
            cls = EFFICIENCY_CLASS.get(kind, "scale_out")
            return override.get((device, cls), devices[device].efficiency_of(cls))

        pairs = list(zip(topo.edge_device, topo.kinds, strict=True))
        memo = {dk: eff(*dk) for dk in set(pairs)}
        factors = np.array([memo[dk] for dk in pairs])
        self.edge_bytes_per_s = topo.bandwidth_bytes_per_s * factors
        self._kind_latency = {bit: self.params.latency_of(kind) for kind, bit in KIND_BIT.items()}
        self._mask_latency: dict[int, float] = {}
        self._plans: dict[tuple[object, ...], list[PhaseCost]] = {}
        self._choices: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}
        self._ep: dict[tuple[int, ...], tuple[PairTable, EpLayout, np.ndarray]] = {}

    # -- latency helpers ---------------------------------------------------------------
    def _message_s(self, mask: int) -> float:
        hit = self._mask_latency.get(mask)
        if hit is None:
            hit = max((s for bit, s in self._kind_latency.items() if mask & bit), default=0.0)
            self._mask_latency[mask] = hit
        return hit

    # -- generic flows ---------------------------------------------------------------
    def _geometry(self, phase: algo.Phase, *, bandwidth: bool = True) -> PhaseGeometry:
        return phase_geometry(self.topology, phase, bandwidth=bandwidth)

    def _phase_cost(self, geo: PhaseGeometry) -> PhaseCost:
        return phase_cost(geo, self.edge_bytes_per_s, self.params.nvls_bandwidth_fraction, self._message_s)

    def _cost(self, name: str, geos: Sequence[PhaseGeometry], costs: Sequence[PhaseCost], nbytes: float,
              detail: bool) -> CommCost:
        beta = [c.s_per_byte * nbytes for c in costs]
        alpha = sum(c.alpha_s for c in costs)
        moved = sum(g.unit_sent for g in geos if g.bandwidth) * nbytes
        if moved <= 0:
            return CommCost(name=name, time_s=0.0, bytes_sent=0.0)
        latency = self.params.launch_s + alpha
        worst = int(np.argmax(beta))
        bottleneck = None
        if beta[worst] > 0 and sum(beta) >= alpha:
            bottleneck = self.topology.edge_names[costs[worst].bottleneck]
        link_bytes: dict[tuple[str, str], float] = {}
        if detail:
            total = np.zeros(self.topology.num_edges)
            for g in (g for g in geos if g.bandwidth):
                np.add.at(total, g.edges, (g.plain + g.nvls) * nbytes)
            names = self.topology.edge_names
            link_bytes = {names[i]: float(total[i]) for i in np.flatnonzero(total)}
        return CommCost(name=name, time_s=latency + sum(beta), bytes_sent=moved, link_bytes=link_bytes,
                        bottleneck=bottleneck, latency_s=latency)

    def transfer(self, flows: Iterable[tuple[int | str, int | str, float]], *, name: str = "transfer",
                 detail: bool = True) -> CommCost:
        """Simultaneous flows ``(src, dst, bytes)``; src/dst are device indices or vertex names.

        >>> from hwsim.io.load import load_cluster
        >>> comm = Collectives(load_cluster("2x-HGX-H200"))
        >>> one = comm.transfer([(0, 8, 1e9)])
        >>> one.bottleneck
        ('n0.nic0', 'p0.r0.leaf0')
        >>> two = comm.transfer([(0, 8, 1e9), ("n0.host", 8, 1e9)])  # both enter n1.d0 by n1.nic0
        >>> round((two.time_s - two.latency_s) / (one.time_s - one.latency_s), 3)
        2.0
        """
        rows = [(self.topology.vertex(s), self.topology.vertex(d), float(b)) for s, d, b in flows]
        if any(b < 0 for _, _, b in rows):
            raise ValueError("flow bytes must be >= 0")
        rows = [r for r in rows if r[0] != r[1] and r[2] > 0]
        phase = algo.make_phase(rows, 1)
        geo = self._geometry(phase)
        return self._cost(name, [geo], [self._phase_cost(geo)], 1.0, detail)

    def p2p(self, src: int | str, dst: int | str, nbytes: float, *, detail: bool = True) -> CommCost:
        """One transfer of ``nbytes`` from ``src`` to ``dst`` (device indices or vertex names)."""
        return self.transfer([(src, dst, nbytes)], name="p2p", detail=detail)

    # -- collectives -----------------------------------------------------------------
    def _subgroup(self, devices: Iterable[int]) -> algo.Subgroup:
        devs = sorted(int(d) for d in devices)
        if len(set(devs)) != len(devs):
            raise ValueError(f"a group lists a device twice: {devs}")
        topo = self.topology
        doms: dict[int, list[int]] = {}
        for d in devs:
            doms.setdefault(int(topo.device_domain[d]), []).append(topo.vertex(d))
        return [doms[k] for k in sorted(doms)]

    def _switches(self, sub: algo.Subgroup) -> dict[int, int] | None:
        """Switch vertex of each device when every node in the group reduces in-network."""
        topo, nodes = self.topology, self.cluster.nodes
        out = {}
        for v in (v for d in sub for v in d):
            dev = topo.vertex_device[v]
            sw = topo.scale_up_switch(dev)
            if sw is None or not nodes[int(topo.device_node[dev])].scale_up.in_network_reduction:
                return None
            out[v] = sw
        return out

    def algorithms(self, op: str, devices: Iterable[int]) -> tuple[str, ...]:
        """The algorithm variants that apply to ``op`` on this group (``hierarchical(x/y)``)."""
        if op not in algo.OPS:
            raise ValueError(f"unknown collective {op!r}; known: {', '.join(algo.OPS)}")
        key = ("variants", op, tuple(sorted(int(d) for d in devices)))
        hit = self.topology.plan_cache.get(key)
        if hit is None:
            hit = self.topology.plan_cache[key] = self._variants(op, key[2])
        return hit

    def _variants(self, op: str, devices: tuple[int, ...]) -> tuple[str, ...]:
        sub = self._subgroup(devices)
        switches = self._switches(sub)
        out = ["ring", "direct"] + (["tree"] if op == "all_reduce" else [])
        if len(sub) == 1 and switches is not None:
            out.append("nvls")
        m = len(sub[0])
        if len(sub) > 1 and all(len(d) == m for d in sub):
            intra = ["ring", "direct"] + (["nvls"] if switches is not None else []) if m > 1 else ["ring"]
            inter = ["ring", "direct"] + (["tree"] if op == "all_reduce" else [])
            out += [f"hierarchical({a}/{b})" for a in intra for b in inter]
        return tuple(out)

    def _plan(self, op: str, variant: str, key: tuple[int, ...]) -> tuple[list[PhaseGeometry], list[PhaseCost]]:
        cache_key = (op, variant, key)
        geos = self.topology.plan_cache.get(cache_key)
        if geos is None:
            sub = self._subgroup(key)
            switches = self._switches(sub) or {}
            if variant.startswith("hierarchical("):
                # pipelined (chunked, as NCCL runs it): one bandwidth pool, latencies add up
                intra, inter = variant[len("hierarchical("):-1].split("/")
                phases = algo.hierarchical(op, sub, intra, inter, switches)
                geos = [self._geometry(p, bandwidth=False) for p in phases]
                geos.append(merged_geometry([self._geometry(p) for p in phases]))
            else:
                geos = [self._geometry(p) for p in algo.flat(variant, op, [sub], switches)]
            self.topology.plan_cache[cache_key] = geos
        costs = self._plans.get(cache_key)
        if costs is None:
            costs = [self._phase_cost(g) for g in geos]
            self._plans[cache_key] = costs
        return geos, costs

    def collective(self, op: str, devices: Iterable[int], nbytes: float, *, algorithm: str = "auto",
                   detail: bool = True) -> CommCost:
        """``op`` (all_reduce, all_gather, reduce_scatter) of ``nbytes`` over global devices."""
        key = tuple(sorted(int(d) for d in devices))
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        if len(key) < 2 or nbytes == 0:
            return CommCost(name=f"{op}[local]", time_s=0.0, bytes_sent=0.0)
        if algorithm not in ALGORITHMS and not algorithm.startswith("hierarchical("):
            raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
        variants = self.algorithms(op, key)
        if algorithm == "hierarchical":
            variants = tuple(v for v in variants if v.startswith("hierarchical("))
        elif algorithm == "nccl":
            variants = tuple(v for v in variants if v in NCCL_ALGORITHMS)
        elif algorithm != "auto":
            variants = tuple(v for v in variants if v == algorithm)
        if not variants:
            raise ValueError(f"algorithm {algorithm!r} does not apply to {op} on devices {list(key)}")
        table = self._choices.get((op, key, variants))
        if table is None:
            per = [self._plan(op, v, key)[1] for v in variants]
            table = (np.array([sum(c.s_per_byte for c in cs) for cs in per]),
                     np.array([sum(c.alpha_s for c in cs) for cs in per]))
            self._choices[(op, key, variants)] = table
        best = variants[int(np.argmin(table[0] * nbytes + table[1]))]
        geos, costs = self._plan(op, best, key)
        return self._cost(f"{op}[{best}]", geos, costs, nbytes, detail)

    def all_reduce(self, devices: Iterable[int], nbytes: float, *, algorithm: str = "auto",
                   detail: bool = True) -> CommCost:
        """All-reduce of an ``nbytes`` buffer on every device of the group."""
        return self.collective("all_reduce", devices, nbytes, algorithm=algorithm, detail=detail)

    def all_gather(self, devices: Iterable[int], nbytes: float, *, algorithm: str = "auto",
                   detail: bool = True) -> CommCost:
        """All-gather producing ``nbytes`` (the whole output) on every device."""
        return self.collective("all_gather", devices, nbytes, algorithm=algorithm, detail=detail)

    def reduce_scatter(self, devices: Iterable[int], nbytes: float, *, algorithm: str = "auto",
                       detail: bool = True) -> CommCost:
        """Reduce-scatter of an ``nbytes`` input per device (each keeps ``nbytes / n``)."""
        return self.collective("reduce_scatter", devices, nbytes, algorithm=algorithm, detail=detail)

    # -- all-to-all and MoE ------------------------------------------------------------
    def _ep_group(self, devices: Sequence[int]) -> tuple[PairTable, EpLayout, np.ndarray]:
        key = tuple(int(d) for d in devices)
        hit = self._ep.get(key)
        if hit is None:
            if len(set(key)) != len(key):
                raise ValueError(f"a group lists a device twice: {list(key)}")
            topo = self.topology
            table = topo.pair_table(tuple(topo.vertex(d) for d in key))
            layout = topo.plan_cache.get(("ep", key))
            if layout is None:
                layout = topo.plan_cache[("ep", key)] = EpLayout.from_domains(topo.device_domain[list(key)])
            masks = np.unique(table.kind_mask)
            msg = np.zeros_like(table.wire_latency_s)
            for m in masks.tolist():
                msg[table.kind_mask == m] = self._message_s(int(m))
            hit = (table, layout, table.wire_latency_s + msg)
            self._ep[key] = hit
        return hit

    def rank_nodes(self, devices: Sequence[int]) -> np.ndarray:
        """Node (scale-up domain) number of each rank, as ``moe_dispatch`` numbers columns."""
        return self._ep_group(devices)[1].rank_node

    def _matrix_cost(self, name: str, table: PairTable, steps: list[np.ndarray], alpha_pairs: np.ndarray,
                     launch_s: float, detail: bool) -> CommCost:
        """Cost of one phase carrying ``sum(steps)`` bytes per rank pair; each step pays alpha."""
        total = np.sum(steps, axis=0)
        np.fill_diagonal(total, 0.0)
        moved = float(total.sum())
        if moved <= 0:
            return CommCost(name=name, time_s=0.0, bytes_sent=0.0)
        per_edge = table.link_bytes(total, self.topology.num_edges)
        per = per_edge / self.edge_bytes_per_s
        k = int(np.argmax(per))
        alpha = sum(float(alpha_pairs[s > 0].max(initial=0.0)) for s in steps)
        latency = launch_s + alpha
        bottleneck = self.topology.edge_names[k] if per[k] >= alpha else None
        link_bytes = {}
        if detail:
            names = self.topology.edge_names
            link_bytes = {names[i]: float(per_edge[i]) for i in np.flatnonzero(per_edge)}
        return CommCost(name=name, time_s=latency + float(per[k]), bytes_sent=moved, link_bytes=link_bytes,
                        bottleneck=bottleneck, latency_s=latency)

    def all_to_all(self, devices: Sequence[int], send_bytes: np.ndarray, *, detail: bool = True) -> CommCost:
        """All-to-all: rank ``i`` (= ``devices[i]``) sends ``send_bytes[i, j]`` bytes to rank ``j``."""
        table, _, alpha = self._ep_group(devices)
        m = np.array(send_bytes, dtype=float)
        if m.shape != (len(devices),) * 2 or (m < 0).any():
            raise ValueError(f"send_bytes must be a non-negative {len(devices)}x{len(devices)} matrix")
        return self._matrix_cost("all_to_all", table, [m], alpha, self.params.launch_s, detail)

    def moe_dispatch(self, devices: Sequence[int], tokens_to_rank: np.ndarray, tokens_to_node_dedup: np.ndarray,
                     token_bytes: float, mode: str = "normal", *, combine: bool = False,
                     detail: bool = True) -> CommCost:
        """MoE dispatch (or, with ``combine=True``, the reverse combine) over ranks ``devices``.

        ``tokens_to_rank[i, j]``: tokens rank ``i`` sends to rank ``j``; ``tokens_to_node_dedup
        [i, b]``: tokens of rank ``i`` bound for node ``b`` counted once per node (nodes numbered
        as :meth:`rank_nodes`). ``mode="normal"`` (DeepEP normal kernels): a token crosses RDMA
        once per remote node, to the rank at the same position there, which forwards it over
        NVLink; two pipelined steps. ``mode="low-latency"`` (DeepEP LL): every rank pair sends
        directly over its own path in one step; pass (token, expert) pair counts as
        ``tokens_to_rank`` to match DeepEP, which sends one message per pair.
        ``token_bytes`` is per token (dispatch often FP8, combine BF16).
        """
        if mode not in EP_MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(EP_MODES)}")
        table, layout, alpha = self._ep_group(devices)
        name = f"moe_{'combine' if combine else 'dispatch'}[{mode}]"
        t = np.asarray(tokens_to_rank, dtype=float)
        if mode == "low-latency":
            steps = [t * token_bytes]
        else:
            rdma, nvl = normal_mode_matrix(layout, t, tokens_to_node_dedup)
            steps = [rdma * token_bytes, nvl * token_bytes]
        if combine:
            steps = [s.T.copy() for s in steps[::-1]]
        return self._matrix_cost(name, table, steps, alpha, self.params.ep_launch_s, detail)

    def moe_combine(self, devices: Sequence[int], tokens_to_rank: np.ndarray, tokens_to_node_dedup: np.ndarray,
                    token_bytes: float, mode: str = "normal", *, detail: bool = True) -> CommCost:
        """The combine that undoes :meth:`moe_dispatch` (same counts, reverse direction)."""
        return self.moe_dispatch(devices, tokens_to_rank, tokens_to_node_dedup, token_bytes, mode,
                                 combine=True, detail=detail)

    def moe_from_counts(self, devices: Sequence[int], counts: RoutingCounts, token_bytes: float,
                        mode: str = "normal", *, combine: bool = False, detail: bool = True) -> CommCost:
        """:meth:`moe_dispatch` from :func:`~hwsim.perf.comm_moe.routing_counts` output."""
        per_rank = counts.pairs_to_rank if mode == "low-latency" else counts.tokens_to_rank
        return self.moe_dispatch(devices, per_rank, counts.tokens_to_node, token_bytes, mode,
                                 combine=combine, detail=detail)
