"""What an engine step's expert-cache misses cost: fetches over the host links, flash reads,
experts run on the host CPU, prefetch.

With ``experts.offload`` a device keeps only some routed experts in its memory (the expert
cache, :mod:`hwsim.perf.expert_cache`); the others live in host DRAM or on flash. The step
cost (:mod:`hwsim.perf.step`) prices every expert as resident; :class:`OffloadCost` prices
what the misses of one step add on top, layer by layer (the simulator decides which experts
miss). Per MoE layer:

* **Fetch from DRAM.** A missed expert's bytes on a device (its ``moe_tp`` share, with its
  quantisation scales) cross the device's host link. The devices of the replica that fetch in
  the same layer share links: the flows ``host -> device`` of every EP rank are costed as
  one phase of :meth:`Collectives.transfer <hwsim.perf.collectives.Collectives.transfer>`
  (alpha-beta per link, the most loaded link decides), so two GPUs behind one PCIe switch
  uplink fetch at half speed each. Transfers are issued per layer (one launch latency each).
* **Fetch from flash** (``backing: flash``). Flash -> DRAM -> device, staged through DRAM in
  chunks so that the two legs overlap (double buffering): the layer's fetch takes the longer
  of the two. The flash leg reads ``bytes / read size`` requests of the read size of
  ``flash.read`` (LLM in a flash, Alizadeh et al. 2024: ``row`` = one weight row of
  ``hidden x weight bytes``; ``bundle`` = the rows of one neuron in all FFN matrices stored
  together, 2x a row for a non-gated FFN, 3x for a gated one; ``expert`` = the whole expert),
  with ``queue_depth`` requests in flight:
  ``max(reads x latency / queue_depth, bytes / bandwidth(read size))``, the bandwidth at that
  request size from the node's :class:`~hwsim.spec.topology.Storage` (its per-size table,
  IOPS limit and sequential rate). Small reads are therefore latency- or IOPS-bound; the
  flash reads of the node's devices share its storage. Experts used in the last
  ``flash.window_tokens`` steps are still in DRAM (the paper's windowing; decided by the
  simulator) and skip the flash leg.
* **Run on the CPU** (``cpu_compute``). A missed expert computed by the host CPU where its
  weights are: roofline ``max(tokens x FLOP / (peak x CPU_COMPUTE_EFFICIENCY),
  bytes / (DRAM bandwidth x CPU_MEMORY_EFFICIENCY))``, plus its tokens' activations over the
  host link, both ways; a flash-backed expert is first read from flash. The CPU runs the
  layer's CPU experts one after another (all cores on one expert, as Fiddler does), in
  parallel with the GPU, whose path is the fetches followed by the experts it computes.
  The layer's cost is ``max(GPU path, CPU path) - all-resident GPU time``, never below zero
  (a CPU-run expert is not credited as saving GPU time below the all-resident step).
  ``always`` runs every missed expert on the CPU; ``auto`` follows Fiddler (Kamahori et al.,
  ICLR 2025): an expert goes to the CPU when ``cpu(s) < fetch + gpu(s)`` for its ``s``
  tokens. Because the CPU also overlaps the GPU's resident experts, hwsim evaluates the
  layer for every split of the misses in Fiddler's order (most CPU-favourable first: that
  includes Fiddler's own choice, never and always) and keeps the fastest, so ``auto`` is
  never slower than ``never`` or ``always``.
* **Prefetch** (``prefetch``). Prefetched experts (those the simulator marks: a share
  ``accuracy`` of the layer's misses, plus as many wrong guesses as it got wrong, which cost
  bandwidth and take cache slots) are fetched during a *window* before the layer needs
  them: the previous layer's compute (``predictor``: Pre-gated MoE, Hwang et al. ISCA 2024;
  Fate's cross-layer gate) or this layer's attention (``pre-attention``: SmallThinker's
  router runs before attention). The part of the prefetch that outlasts the window is
  visible, and the on-demand fetches queue behind it on the link.

GPU time of one expert with ``s`` tokens: ``max(s x FLOP / (peak x grouped-GEMM efficiency),
bytes / (memory bandwidth x memory efficiency))`` on the device (the grouped-GEMM row of one
expert, launch left out).

Assumptions, stated once: expert ``e`` of a layer lives on EP rank ``e * ep // E``
(contiguous; ``round-robin``: ``e % ep``; other placements as contiguous); redundant expert
copies are not fetched separately; a layer's fetches do not overlap that layer's compute of
the resident experts (the layer waits for its weights, as on-demand loaders do); host memory
bandwidth does not limit a DRAM -> device copy (PCIe is far slower).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.perf import operators as ops
from hwsim.perf.collectives import Collectives
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment, ExpertOffload, Pool
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.model import Model
from hwsim.spec.topology import HostCpu, Storage

CPU_MEMORY_EFFICIENCY = 220.0 / 307.2
"""Achieved / peak DRAM bandwidth of a CPU socket streaming expert weights: KTransformers
(Chen et al., SOSP 2025) measured 220 GB/s intra-socket with Intel MLC on a Xeon Platinum
8452Y, whose 8 channels of DDR5-4800 peak at 307.2 GB/s (0.72)."""

CPU_COMPUTE_EFFICIENCY = 5.4 / 73.7
"""Achieved / peak matrix FLOP/s of a CPU on MoE expert GEMMs: KTransformers (SOSP 2025)
reaches 5.4 TFLOPS with AMX on DeepSeek-V3's MoE layers, ~7% of the 73.7 TFLOPS theoretical
(a secondary reading of the paper; low confidence). Decode is memory-bound on the CPU, so
this matters for prefill only."""

_COMPUTE_FALLBACK = ("bf16", "fp16", "fp32")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpertShape:
    """One routed expert on one device."""

    bytes: float                  # its weights (moe_tp share), quantisation scales included
    flop_per_token: float         # 2 x its parameters / moe_tp
    token_bytes: float            # one token's activations (hidden x activation bytes), one way
    read_bytes: float             # flash request size for the configured read granularity


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadStep:
    """What a step's misses cost (seconds added to the step) and moved.

    ``dram_bytes`` per EP rank crossed the host links into the devices (on-demand and
    prefetched experts); ``flash_bytes`` per rank were read from flash first;
    ``activation_bytes`` per rank went to the CPU and back for CPU-run experts.
    """

    time_s: float
    cpu_experts: int
    cpu_s: float
    fetched_experts: int
    prefetched_experts: int
    hidden_s: float
    dram_bytes: np.ndarray
    flash_bytes: np.ndarray
    activation_bytes: np.ndarray

    @property
    def fetched_bytes(self) -> float:
        return float(self.dram_bytes.sum())


@dataclass(slots=True)
class _Links:
    """Unit-flow link loads of the replica's fetch paths (``edges`` used, by rank)."""

    edges: np.ndarray             # (n,) edge ids used by any rank's host -> device flows
    load: np.ndarray              # (n, R) bytes on each edge per byte fetched by each rank's devices
    bytes_per_s: np.ndarray       # (n,) derated bandwidth of each edge
    latency_s: float              # launch + worst path latency of one fetch phase
    up: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)    # edge -> (R,) host -> device
    down: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # edge -> (R,) device -> host


class OffloadCost:
    """Seconds a step's expert misses add to one replica of ``pool`` (module docstring).

    ``first_device`` is the replica's first global device (default: the pool's first).
    """

    def __init__(self, cluster: Cluster, model: Model, deployment: Deployment, pool: Pool, *,
                 collectives: Collectives | None = None, first_device: int | None = None) -> None:
        off = deployment.experts.offload
        moe = model.moe
        if off is None or moe is None:
            raise ValueError("offload costs need a MoE model and an experts.offload block")
        self.offload: ExpertOffload = off
        self.model, self.deployment, self.pool = model, deployment, pool
        par = pool.parallelism
        first = pool.first_device if first_device is None else first_device
        self.coll = collectives or Collectives(cluster)
        stage = list(range(first, first + par.stage_devices))
        self.rank_devices = [stage[r * par.expert_tp:(r + 1) * par.expert_tp] for r in range(par.ep)]
        self.ranks = par.ep
        self.experts = moe.num_experts
        self.device = cluster.device_at(first)
        nodes = [cluster.node_of_device(d) for d in stage]
        vertices = cluster.device_vertices()
        self._node_ids = [vertices[devs[0]].split(".")[0] for devs in self.rank_devices]
        uniq = sorted(set(self._node_ids))
        self.rank_node = np.array([uniq.index(n) for n in self._node_ids], dtype=np.int64)
        self.node_names = uniq
        self.node = nodes[0]
        if deployment.experts.placement == "round-robin":
            self.rank_of_expert = np.arange(self.experts, dtype=np.int64) % par.ep
        else:
            self.rank_of_expert = np.arange(self.experts, dtype=np.int64) * par.ep // self.experts
        self.shape = expert_shape(model, deployment, pool)
        self._gpu_coeffs()
        self.storage: Storage | None = self.node.storage[0] if self.node.storage else None
        self.cpu: HostCpu | None = self.node.cpu
        self._flash_coeffs()
        self._cpu_coeffs()
        self.links = self._links(cluster, vertices)
        one = np.zeros((1, self.ranks))
        one[0, 0] = self.shape.bytes
        self.fetch_one_s = float(self._pcie_s(one)[0])

    # -- construction --------------------------------------------------------------------------
    def _gpu_coeffs(self) -> None:
        dev, dep = self.device, self.deployment
        ew, act = dep.dtypes.expert_weights, dep.dtypes.activations
        native = ew in ("fp8", "int8", "fp4") and ew in dev.compute_flop_per_s
        compute = ew if native else ops.compute_dtype(act, ew)
        self._gpu_flop_per_s = dev.peak_flop_per_s(compute) * ops.efficiency(dev, "grouped_gemm", compute)
        self._gpu_mem_s = self.shape.bytes / (dev.hbm_bytes_per_s * ops.efficiency(dev, "memory"))

    def _flash_coeffs(self) -> None:
        st, fl = self.storage, self.offload.flash
        self._flash_reads_per_expert = self.shape.bytes / self.shape.read_bytes
        if st is None:
            self._flash_bytes_per_s = math.inf
            self._flash_latency_s = 0.0
            return
        self._flash_bytes_per_s = st.read_bytes_per_s(self.shape.read_bytes)
        self._flash_latency_s = st.latency_s / fl.queue_depth

    def _cpu_coeffs(self) -> None:
        cpu = self.cpu
        self.cpu_available = bool(cpu is not None and cpu.compute_flop_per_s and cpu.memory is not None)
        if not self.cpu_available:
            self._cpu_flop_per_s, self._cpu_mem_s = 0.0, math.inf
            return
        assert cpu is not None
        assert cpu.memory is not None
        peaks = cpu.compute_flop_per_s
        dtype = self.deployment.dtypes.activations
        peak = next((peaks[d] for d in (dtype, *_COMPUTE_FALLBACK) if d in peaks), max(peaks.values()))
        self._cpu_flop_per_s = peak * CPU_COMPUTE_EFFICIENCY
        self._cpu_mem_s = self.shape.bytes / (cpu.memory.bandwidth_bytes_per_s * CPU_MEMORY_EFFICIENCY)

    def _links(self, cluster: Cluster, vertices: list[str]) -> _Links:
        coll = self.coll
        topo = coll.topology
        up: dict[tuple[str, str], np.ndarray] = {}
        down: dict[tuple[str, str], np.ndarray] = {}
        flows = []
        for r, devs in enumerate(self.rank_devices):
            host = f"{self._node_ids[r]}.host"
            for d in devs:
                flows.append((host, vertices[d], 1.0))
                for table, src, dst in ((up, host, vertices[d]), (down, vertices[d], host)):
                    for edge, b in coll.transfer([(src, dst, 1.0)]).link_bytes.items():
                        table.setdefault(edge, np.zeros(self.ranks))[r] += b
        names = sorted(up)
        edges = np.array([topo.edge_index[e] for e in names], dtype=np.int64)
        load = np.array([up[e] for e in names]).reshape(len(names), self.ranks)
        latency = coll.transfer(flows).latency_s
        return _Links(edges=edges, load=load, bytes_per_s=coll.edge_bytes_per_s[edges], latency_s=latency,
                      up=up, down=down)

    # -- elementary times ----------------------------------------------------------------------
    def gpu_s(self, tokens: np.ndarray) -> np.ndarray:
        """GPU time of one resident expert for each token count (0 tokens: 0 s)."""
        s = np.asarray(tokens, dtype=float)
        t = np.maximum(s * self.shape.flop_per_token / self._gpu_flop_per_s, self._gpu_mem_s)
        return np.where(s > 0, t, 0.0)

    def cpu_s(self, tokens: np.ndarray) -> np.ndarray:
        """CPU time of one expert (weights in DRAM) for each token count, activations both ways
        over the host link included; ``inf`` when the node's CPU has no compute peak or DRAM."""
        s = np.asarray(tokens, dtype=float)
        if not self.cpu_available:
            return np.full(s.shape, math.inf)
        compute = np.maximum(s * self.shape.flop_per_token / self._cpu_flop_per_s, self._cpu_mem_s)
        act = self.links.latency_s * 2 + 2 * s * self.shape.token_bytes / float(self.links.bytes_per_s.min())
        return compute + act

    def flash_s(self, nbytes: np.ndarray) -> np.ndarray:
        """Time to read ``nbytes`` of experts from one node's flash at the configured request size."""
        b = np.asarray(nbytes, dtype=float)
        reads = b / self.shape.read_bytes
        t = np.maximum(reads * self._flash_latency_s, b / self._flash_bytes_per_s)
        return np.where(b > 0, t, 0.0)

    def _pcie_s(self, bytes_per_rank: np.ndarray) -> np.ndarray:
        """Contended time of host -> device fetches, ``(K, R)`` bytes per device of each rank."""
        b = np.atleast_2d(np.asarray(bytes_per_rank, dtype=float))
        load = b @ self.links.load.T                            # (K, edges)
        beta = (load / self.links.bytes_per_s).max(axis=1, initial=0.0)
        return np.where(b.sum(axis=1) > 0, self.links.latency_s + beta, 0.0)

    def move_s(self, bytes_per_rank: np.ndarray, flash_per_rank: np.ndarray | None = None) -> np.ndarray:
        """Time to bring ``(K, R)`` bytes per device of each rank into device memory, of which
        ``flash_per_rank`` come from flash first (flash and host-link legs overlap)."""
        pcie = self._pcie_s(bytes_per_rank)
        if flash_per_rank is None:
            return pcie
        f = np.atleast_2d(np.asarray(flash_per_rank, dtype=float))
        per_node = np.zeros((f.shape[0], len(self.node_names)))
        for r in range(self.ranks):
            per_node[:, self.rank_node[r]] += f[:, r] * len(self.rank_devices[r])
        out: np.ndarray = np.maximum(pcie, self.flash_s(per_node).max(axis=1, initial=0.0))
        return out

    def gpu_layer_s(self, counts: np.ndarray) -> np.ndarray:
        """``(L, R)`` GPU time of each rank's touched experts in each layer, from ``(L, E)``
        tokens per expert."""
        c = np.asarray(counts)
        t = self.gpu_s(c)
        out = np.zeros((c.shape[0], self.ranks))
        for r in range(self.ranks):
            out[:, r] = t[:, self.rank_of_expert == r].sum(axis=1)
        return out

    # -- one step ------------------------------------------------------------------------------
    def step(self, *, layer: np.ndarray, expert: np.ndarray, tokens: np.ndarray, flash: np.ndarray,
             prefetched: np.ndarray, gpu_layer_s: np.ndarray, window_s: float) -> OffloadStep:
        """Cost of one step's fetches.

        One entry per expert brought in: its MoE ``layer``, ``expert`` id, the step's
        ``tokens`` that picked it (0 for a wrong prefetch guess), whether it comes from
        ``flash``, and whether it was ``prefetched``. ``gpu_layer_s`` is :meth:`gpu_layer_s` of
        the step's token counts; ``window_s`` the compute a prefetch can hide behind. All the
        step's layers are evaluated together (one contended-transfer evaluation for all).
        """
        R, b = self.ranks, self.shape.bytes
        layer = np.asarray(layer, dtype=np.int64)
        n_layers = gpu_layer_s.shape[0]
        dram, flash_b, act = np.zeros(R), np.zeros(R), np.zeros(R)
        if layer.size == 0:
            return OffloadStep(time_s=0.0, cpu_experts=0, cpu_s=0.0, fetched_experts=0, prefetched_experts=0,
                               hidden_s=0.0, dram_bytes=dram, flash_bytes=flash_b, activation_bytes=act)
        rank = self.rank_of_expert[np.asarray(expert, dtype=np.int64)]
        tokens = np.asarray(tokens, dtype=np.int64)
        fl = np.asarray(flash, dtype=bool)
        pre = np.asarray(prefetched, dtype=bool)
        # prefetched experts: busy time of each layer's prefetch, the part beyond the window is visible
        vis = np.zeros(n_layers)
        hidden = 0.0
        if pre.any():
            key = layer[pre] * R + rank[pre]
            pb = np.bincount(key, minlength=n_layers * R).reshape(n_layers, R) * b
            pf = np.bincount(key, weights=fl[pre], minlength=n_layers * R).reshape(n_layers, R) * b
            rows = np.flatnonzero(pb.sum(axis=1) > 0)
            busy = self.move_s(pb[rows], pf[rows] if self.offload.backing == "flash" else None)
            vis[rows] = np.maximum(busy - window_s, 0.0)
            hidden = float((busy - vis[rows]).sum())
            dram += pb.sum(axis=0)
            flash_b += pf.sum(axis=0)
        d = ~pre
        total = float(vis[np.setdiff1d(np.unique(layer[pre]), layer[d])].sum())
        cpu_n, cpu_s, fetched = 0, 0.0, int(d.sum())
        if fetched:
            extra, on_cpu, c = self._on_demand(layer[d], rank[d], tokens[d], fl[d], gpu_layer_s, vis)
            total += extra
            cpu_n = int(on_cpu.sum())
            fetched -= cpu_n
            cpu_s = float(c[on_cpu].sum())
            rd, sd, fd = rank[d], tokens[d], fl[d]
            np.add.at(act, rd[on_cpu], 2.0 * sd[on_cpu] * self.shape.token_bytes)
            np.add.at(dram, rd[~on_cpu], b)
            np.add.at(flash_b, rd[~on_cpu], b * fd[~on_cpu])
        return OffloadStep(time_s=total, cpu_experts=cpu_n, cpu_s=cpu_s, fetched_experts=fetched,
                           prefetched_experts=int(pre.sum()), hidden_s=hidden, dram_bytes=dram, flash_bytes=flash_b,
                           activation_bytes=act)

    def _on_demand(self, layer: np.ndarray, rank: np.ndarray, tokens: np.ndarray, fl: np.ndarray,
                   gpu_layer_s: np.ndarray, vis: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """(seconds added, which misses run on the CPU, CPU time of each) for on-demand misses.

        Per layer the misses are ordered most CPU-favourable first (Fiddler's comparison,
        ``cpu - (fetch + gpu)``) and the first ``k`` run on the CPU: ``k = 0`` (never), all
        (always) or, for ``auto``, the ``k`` that makes the layer fastest.
        """
        R, b, n = self.ranks, self.shape.bytes, layer.size
        mode = "never" if not self.cpu_available else self.offload.cpu_compute
        g = self.gpu_s(tokens)
        flash_one = self.flash_s(np.array([b]))[0] if self.offload.backing == "flash" else 0.0
        c = self.cpu_s(tokens) + np.where(fl, flash_one, 0.0)
        benefit = c - (self.fetch_one_s + np.where(fl, flash_one, 0.0) + g) if mode != "never" else np.zeros(n)
        order = np.lexsort((benefit, layer))
        lay, rk = layer[order], rank[order]
        groups, start, count = np.unique(lay, return_index=True, return_counts=True)
        nth = np.arange(n) - np.repeat(start, count)            # position of each miss in its layer
        onehot = np.zeros((n, R))
        onehot[np.arange(n), rk] = b
        cum_b = np.vstack([np.zeros(R), np.cumsum(onehot, axis=0)])
        cum_f = np.vstack([np.zeros(R), np.cumsum(onehot * fl[order][:, None], axis=0)])
        g_on = np.zeros((n, R))
        g_on[np.arange(n), rk] = g[order]
        cum_g = np.vstack([np.zeros(R), np.cumsum(g_on, axis=0)])
        cum_c = np.concatenate([[0.0], np.cumsum(np.where(np.isfinite(c), c, 0.0)[order])])  # inf: no CPU
        if mode == "auto":
            grp = np.repeat(np.arange(groups.size), count + 1)
            k = np.arange(grp.size) - np.repeat(np.cumsum(count + 1) - (count + 1), count + 1)
        else:
            grp = np.arange(groups.size)
            k = np.zeros(groups.size, np.int64) if mode == "never" else count.copy()
        at, s0, end = start[grp] + k, start[grp], (start + count)[grp]
        left = cum_b[end] - cum_b[at]
        fleft = cum_f[end] - cum_f[at]
        t_f = self.move_s(left, fleft if self.offload.backing == "flash" else None)
        g_all = gpu_layer_s[groups][grp]
        g_rest = (g_all - (cum_g[at] - cum_g[s0])).max(axis=1)
        t_c = cum_c[at] - cum_c[s0]
        layer_s = np.maximum(vis[groups][grp] + t_f + g_rest, t_c)
        extra = np.maximum(layer_s - g_all.max(axis=1), 0.0)
        best = np.lexsort((k, extra, grp))                        # per layer: least extra, then fewest on CPU
        first = best[np.searchsorted(grp[best], np.arange(groups.size))]
        k_best = k[first]
        on_cpu_sorted = nth < np.repeat(k_best, count)
        on_cpu = np.empty(n, dtype=bool)
        on_cpu[order] = on_cpu_sorted
        return float(extra[first].sum()), on_cpu, c

    # -- reports -------------------------------------------------------------------------------
    def link_bytes(self, dram_bytes: np.ndarray, flash_bytes: np.ndarray,
                   activation_bytes: np.ndarray) -> dict[tuple[str, str], float]:
        """Bytes per directed link for per-rank totals of fetched, flash-read and activation bytes
        (activations: half each way); flash reads load each node's storage -> host link."""
        out: dict[tuple[str, str], float] = {}
        d, a = np.asarray(dram_bytes, float), np.asarray(activation_bytes, float) / 2.0
        for table, per in ((self.links.up, d + a), (self.links.down, a)):
            for edge, unit in table.items():
                v = float(unit @ per)
                if v > 0:
                    out[edge] = out.get(edge, 0.0) + v
        f = np.asarray(flash_bytes, float)
        for r in range(self.ranks):
            if f[r] > 0:
                edge = (f"{self._node_ids[r]}.nvme", f"{self._node_ids[r]}.host")
                out[edge] = out.get(edge, 0.0) + float(f[r]) * len(self.rank_devices[r])
        return out


def expert_shape(model: Model, deployment: Deployment, pool: Pool) -> ExpertShape:
    """Bytes, FLOP per token and flash request size of one routed expert on one device."""
    moe = model.moe
    if moe is None:
        raise ValueError(f"{model.name} has no experts")
    par = pool.parallelism
    ew = deployment.dtypes.expert_weights
    params = model.param_counts().routed_expert_one
    per_elem = ops.weight_bytes_per_elem(ew)
    nbytes = params * per_elem / par.expert_tp
    h = model.hidden_size
    row = h * per_elem
    off = deployment.experts.offload
    read = off.flash.read if off is not None else "expert"
    matrices = 3 if model.gated_ffn else 2
    size = {"row": row, "bundle": matrices * row, "expert": nbytes}[read]
    return ExpertShape(bytes=nbytes, flop_per_token=2.0 * params / par.expert_tp,
                       token_bytes=h * bytes_per_elem(deployment.dtypes.activations),
                       read_bytes=min(size, nbytes))
