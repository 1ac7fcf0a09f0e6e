"""A cluster: groups of nodes, the scale-out fabric, power domains; and its networkx graph.

Graph vertices are strings: ``n3.d5`` (device 5 of node 3), ``n3.host``, ``n3.nic1``,
``n3.nvme``, ``n3.su`` (node's scale-up switch), ``su2`` (a supernode's switch),
``p0.r1.leaf0`` / ``p0.spine`` (fabric switches of plane 0). The graph is a
:class:`networkx.DiGraph` with an edge each way: a link's bandwidth is per direction, and a
flow in one direction does not contend with one in the other. Every edge carries
``bandwidth_bytes_per_s``, ``latency_s`` and ``kind``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsim.spec.hardware import Device, Source
from hwsim.spec.topology import Link, Node

if TYPE_CHECKING:
    import networkx as nx

FABRIC_TOPOLOGIES = ("none", "fat-tree", "rail-optimized")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGroup:
    node: Node
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"node count must be >= 1, got {self.count}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fabric:
    """The scale-out network between nodes.

    ``fat-tree``: every NIC of a node goes to the node's leaf switch; ``rail-optimized``:
    NIC ``i`` of every node goes to the leaf of rail ``i``. ``planes`` > 1 splits the NICs
    into separate networks (NIC ``i`` in plane ``i % planes``) joined only through the nodes.
    Leaves hold ``nodes_per_leaf`` nodes and reach a non-blocking spine with uplinks of
    (downlink bandwidth / ``oversubscription``). ``scale_up_domain_nodes`` > 1 joins that
    many consecutive nodes into one scale-up domain (NVL72, CloudMatrix384 supernodes).
    """

    topology: str = "none"
    planes: int = 1
    nodes_per_leaf: int = 32
    oversubscription: float = 1.0
    switch_latency_s: float = 0.0
    scale_up_domain_nodes: int = 1
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.topology not in FABRIC_TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(FABRIC_TOPOLOGIES)}, got {self.topology!r}")
        if self.planes < 1 or self.nodes_per_leaf < 1 or self.scale_up_domain_nodes < 1:
            raise ValueError("planes, nodes_per_leaf and scale_up_domain_nodes must be >= 1")
        if self.oversubscription < 1:
            raise ValueError(f"oversubscription must be >= 1, got {self.oversubscription:g}")
        if self.switch_latency_s < 0:
            raise ValueError("switch latency must be >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerDomain:
    """A rack or row with a power budget over some nodes (indices into the cluster)."""

    name: str
    budget_w: float
    nodes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.budget_w <= 0:
            raise ValueError(f"budget must be > 0, got {self.budget_w:g} W")
        if not self.nodes:
            raise ValueError("a power domain needs at least one node")


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """Nodes, the fabric between them, and power domains."""

    name: str
    groups: tuple[NodeGroup, ...]
    fabric: Fabric = Fabric()
    power_domains: tuple[PowerDomain, ...] = ()
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.groups:
            raise ValueError("a cluster needs at least one node")
        n = self.num_nodes
        for d in self.power_domains:
            bad = [i for i in d.nodes if not 0 <= i < n]
            if bad:
                raise ValueError(f"power domain {d.name!r} names nodes {bad} outside 0..{n - 1}")
        if n % self.fabric.scale_up_domain_nodes:
            raise ValueError(
                f"{n} nodes do not split into scale-up domains of {self.fabric.scale_up_domain_nodes} nodes"
            )

    # -- counting ------------------------------------------------------------------
    @property
    def nodes(self) -> tuple[Node, ...]:
        """One entry per node, in index order."""
        return tuple(g.node for g in self.groups for _ in range(g.count))

    @property
    def num_nodes(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def num_devices(self) -> int:
        return sum(g.count * g.node.device_count for g in self.groups)

    @property
    def device_names(self) -> tuple[str, ...]:
        """Device model name of each device, by global index."""
        return tuple(node.device.name for node in self.nodes for _ in range(node.device_count))

    def device_vertices(self) -> list[str]:
        """Graph vertex of each device, by global index."""
        return [f"n{i}.d{j}" for i, node in enumerate(self.nodes) for j in range(node.device_count)]

    @property
    def usd_per_s(self) -> float | None:
        return self.usd_per_s_of(range(self.num_devices))

    def node_of_device(self, index: int) -> Node:
        """The node holding device ``index`` (global index)."""
        cached: tuple[Node, ...] | None = self.__dict__.get("_device_nodes")
        if cached is None:
            cached = tuple(node for node in self.nodes for _ in range(node.device_count))
            object.__setattr__(self, "_device_nodes", cached)
        return cached[index]

    def device_at(self, index: int) -> Device:
        """The device spec of global device ``index``."""
        return self.node_of_device(index).device

    def usd_per_s_of(self, devices: Iterable[int]) -> float | None:
        """Price per second of the given devices (their share of the node price), or None when
        one of them has no price."""
        total = 0.0
        for d in devices:
            node = self.node_of_device(d)
            node_price = node.device_usd_per_s
            if node_price is None:
                return None
            total += node_price / node.device_count
        return total

    # -- graph ---------------------------------------------------------------------
    def graph(self) -> nx.DiGraph:
        """The cluster as a directed graph (built once, then cached)."""
        cached = self.__dict__.get("_graph")
        if cached is None:
            from hwsim.spec.graph import build_graph

            cached = build_graph(self)
            object.__setattr__(self, "_graph", cached)
        return cached

    def path(self, src: str, dst: str) -> list[str]:
        """Lowest-latency path between two vertices (ties: fewest hops)."""
        import networkx as nx

        return list(nx.shortest_path(self.graph(), src, dst, weight=_latency_weight))

    def path_latency_s(self, src: str, dst: str) -> float:
        g = self.graph()
        p = self.path(src, dst)
        return float(sum(g.edges[u, v]["latency_s"] for u, v in zip(p, p[1:], strict=False)))

    def bottleneck_bytes_per_s(self, src: str, dst: str) -> float:
        """Bandwidth of the slowest link on :meth:`path` (no other traffic)."""
        g = self.graph()
        p = self.path(src, dst)
        if len(p) < 2:
            return float("inf")
        return float(min(g.edges[u, v]["bandwidth_bytes_per_s"] for u, v in zip(p, p[1:], strict=False)))


def _latency_weight(u: str, v: str, e: dict[str, Any]) -> float:
    # A tiny per-hop term breaks ties between equal-latency paths toward fewer hops.
    return float(e["latency_s"]) + 1e-12


def link_attrs(link: Link) -> dict[str, Any]:
    return {"bandwidth_bytes_per_s": link.bandwidth_bytes_per_s, "latency_s": link.latency_s, "kind": link.kind}
