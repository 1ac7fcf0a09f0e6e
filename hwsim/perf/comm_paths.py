"""Paths between cluster vertices as arrays of edge indices, cached for cheap re-evaluation.

:class:`CommTopology` numbers the vertices and directed edges of ``Cluster.graph()`` and
keeps, per source vertex, the lowest-latency paths found by networkx (the weight
``Cluster.path`` uses: ``latency_s`` plus a tiny per-hop term, so equal-latency paths prefer
fewer hops). For a group of devices it precomputes a CSR table of the edges of every ordered
pair, so a whole traffic matrix maps to per-link bytes with one ``np.bincount``.

Among paths of equal latency and equal hop count (``Cluster.path`` leaves the choice to the
graph's insertion order) the one with the widest links wins, so GPU-to-GPU traffic on an
NVSwitch node never detours through the host's PCIe when both have zero latency.

Nothing here depends on efficiencies or latency parameters, so one topology can be shared
by several :class:`hwsim.perf.collectives.Collectives` (the calibration does this).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.spec.topology import LINK_KINDS

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster

KIND_BIT = {kind: 1 << i for i, kind in enumerate(LINK_KINDS)}
"""Bit of each link kind in a path's kind mask."""

_NODE_PREFIX = re.compile(r"^n(\d+)\.")


def _latency_weight(u: str, v: str, e: dict[str, Any]) -> float:
    # Cluster.path's weight (latency + 1e-12 s per hop) plus a bandwidth tie-breaker far
    # below one hop: 1e-3 / (bytes/s) is < 1e-13 s for any link faster than 10 GB/s.
    return float(e["latency_s"]) + 1e-12 + 1e-3 / float(e["bandwidth_bytes_per_s"])


def node_of_vertex(name: str) -> int | None:
    """Node index of a vertex named ``n{i}.…``, else None (fabric and shared switches)."""
    m = _NODE_PREFIX.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True, slots=True)
class PairTable:
    """Edges of every ordered pair of a vertex list, in CSR form (pair ``i * R + j``)."""

    vertices: np.ndarray      # (R,) vertex ids
    offsets: np.ndarray       # (R*R + 1,) start of each pair's edges in ``edges``
    edges: np.ndarray         # concatenated edge ids
    lengths: np.ndarray       # (R*R,) edges per pair (0 on the diagonal)
    wire_latency_s: np.ndarray  # (R, R) sum of link latencies along each path
    kind_mask: np.ndarray     # (R, R) OR of KIND_BIT over each path's links

    def link_bytes(self, matrix: np.ndarray, num_edges: int) -> np.ndarray:
        """Bytes per edge when pair ``(i, j)`` sends ``matrix[i, j]`` bytes."""
        weights = np.repeat(np.asarray(matrix, dtype=float).ravel(), self.lengths)
        return np.bincount(self.edges, weights=weights, minlength=num_edges)


class CommTopology:
    """Numbered vertices and edges of a cluster graph with cached shortest-latency paths."""

    def __init__(self, cluster: Cluster) -> None:
        g = cluster.graph()
        self.cluster = cluster
        self.vertex_names: tuple[str, ...] = tuple(g.nodes)
        self.vertex_index = {name: i for i, name in enumerate(self.vertex_names)}
        edges = list(g.edges(data=True))
        self.edge_names: tuple[tuple[str, str], ...] = tuple((u, v) for u, v, _ in edges)
        self.edge_index = {uv: k for k, uv in enumerate(self.edge_names)}
        self.bandwidth_bytes_per_s = np.array([e["bandwidth_bytes_per_s"] for _, _, e in edges], dtype=float)
        self.latency_s = np.array([e["latency_s"] for _, _, e in edges], dtype=float)
        self.kinds: tuple[str, ...] = tuple(e["kind"] for _, _, e in edges)
        self.kind_bits = np.array([KIND_BIT[k] for k in self.kinds], dtype=np.int64)
        nodes = cluster.nodes
        self.edge_device: tuple[str, ...] = tuple(
            nodes[_edge_node(u, v)].device.name for u, v in self.edge_names)
        dom = cluster.fabric.scale_up_domain_nodes
        dev_node = [i for i, node in enumerate(nodes) for _ in range(node.device_count)]
        self.device_node = np.array(dev_node, dtype=np.int64)
        self.device_domain = self.device_node // dom
        self.device_vertex = np.array([self.vertex_index[v] for v in cluster.device_vertices()], dtype=np.int64)
        self._graph = g
        self._paths: dict[int, dict[str, list[str]]] = {}
        self._edges: dict[tuple[int, int], np.ndarray] = {}
        self._tables: dict[tuple[int, ...], PairTable] = {}
        self.vertex_device = {int(v): i for i, v in enumerate(self.device_vertex)}
        self.plan_cache: dict[tuple[object, ...], Any] = {}
        """Efficiency-independent collective plans, filled by :class:`Collectives`."""

    @property
    def num_edges(self) -> int:
        return len(self.edge_names)

    @property
    def num_devices(self) -> int:
        return len(self.device_vertex)

    def vertex(self, ref: int | str) -> int:
        """Vertex id of a global device index or a vertex name (``n0.host``)."""
        if isinstance(ref, str):
            if ref not in self.vertex_index:
                raise KeyError(f"no vertex {ref!r} in cluster {self.cluster.name!r}")
            return self.vertex_index[ref]
        i = int(ref)
        if not 0 <= i < len(self.device_vertex):
            raise IndexError(f"device {i} outside 0..{len(self.device_vertex) - 1}")
        return int(self.device_vertex[i])

    def path_edges(self, src: int, dst: int) -> np.ndarray:
        """Edge ids along the lowest-latency path between two vertex ids (empty if equal)."""
        key = (src, dst)
        hit = self._edges.get(key)
        if hit is not None:
            return hit
        if src == dst:
            out = np.zeros(0, dtype=np.int64)
        else:
            paths = self._paths.get(src)
            if paths is None:
                import networkx as nx

                paths = nx.single_source_dijkstra_path(self._graph, self.vertex_names[src], weight=_latency_weight)
                self._paths[src] = paths
            names = paths.get(self.vertex_names[dst])
            if names is None:
                raise ValueError(f"no path from {self.vertex_names[src]} to {self.vertex_names[dst]}")
            out = np.array([self.edge_index[(a, b)] for a, b in zip(names, names[1:], strict=False)], dtype=np.int64)
        self._edges[key] = out
        return out

    def flow_edges(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Concatenated edge ids of the flows ``src[i] -> dst[i]`` and the flow of each entry."""
        parts = [self.path_edges(int(s), int(d)) for s, d in zip(src, dst, strict=True)]
        lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        edges = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return edges, np.repeat(np.arange(len(parts)), lengths)

    def pair_table(self, vertices: tuple[int, ...]) -> PairTable:
        """CSR edge table of all ordered pairs of ``vertices`` (cached per vertex tuple)."""
        hit = self._tables.get(vertices)
        if hit is not None:
            return hit
        r = len(vertices)
        parts = [self.path_edges(a, b) for a in vertices for b in vertices]
        lengths = np.array([len(p) for p in parts], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        edges = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        wire = np.zeros(r * r)
        mask = np.zeros(r * r, dtype=np.int64)
        nz = lengths > 0
        if edges.size:
            starts = offsets[:-1][nz]
            wire[nz] = np.add.reduceat(self.latency_s[edges], starts)
            mask[nz] = np.bitwise_or.reduceat(self.kind_bits[edges], starts)
        table = PairTable(vertices=np.array(vertices, dtype=np.int64), offsets=offsets, edges=edges,
                          lengths=lengths, wire_latency_s=wire.reshape(r, r), kind_mask=mask.reshape(r, r))
        self._tables[vertices] = table
        return table

    def scale_up_switch(self, device: int) -> int | None:
        """Vertex id of the scale-up switch a device hangs off, if its node has one."""
        name = self.vertex_names[self.vertex(device)]
        for nb in self._graph.successors(name):
            if self._graph.nodes[nb].get("kind") == "switch" and self._graph.edges[name, nb]["kind"] in (
                    "nvlink", "nvswitch", "ub", "hccs", "xgmi", "ici"):
                return self.vertex_index[nb]
        return None


def _edge_node(u: str, v: str) -> int:
    """The node whose device efficiency derates edge ``(u, v)`` (node 0 for fabric links)."""
    for name in (u, v):
        i = node_of_vertex(name)
        if i is not None:
            return i
    return 0
