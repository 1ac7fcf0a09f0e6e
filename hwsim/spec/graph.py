"""Build a cluster's networkx graph from its nodes and fabric (see :mod:`hwsim.spec.cluster`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

from hwsim.spec.topology import Link, Node

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster


def _both(g: nx.DiGraph, u: str, v: str, **attrs: Any) -> None:
    g.add_edge(u, v, **attrs)
    g.add_edge(v, u, **attrs)


def _attrs(link: Link, *, bandwidth: float | None = None, extra_latency_s: float = 0.0) -> dict[str, Any]:
    return {
        "bandwidth_bytes_per_s": link.bandwidth_bytes_per_s if bandwidth is None else bandwidth,
        "latency_s": link.latency_s + extra_latency_s,
        "kind": link.kind,
    }


def _add_node_parts(g: nx.DiGraph, i: int, node: Node, su_switch: str | None) -> None:
    """Devices, scale-up links, host, storage and NICs of node ``i``."""
    devs = [f"n{i}.d{j}" for j in range(node.device_count)]
    for j, d in enumerate(devs):
        g.add_node(d, kind="device", node=i, local=j, device=node.device.name)
    host = f"n{i}.host"
    g.add_node(host, kind="host", node=i)
    su = node.scale_up
    if su.topology == "switch" and su.link is not None:
        switch = su_switch or f"n{i}.su"
        g.add_node(switch, kind="switch", node=i if su_switch is None else -1)
        for d in devs:
            _both(g, d, switch, **_attrs(su.link))
    elif su.topology == "full-mesh" and su.link is not None:
        for a in range(len(devs)):
            for b in range(a + 1, len(devs)):
                _both(g, devs[a], devs[b], **_attrs(su.link))
    elif su.topology == "ring" and su.link is not None and len(devs) > 1:
        for a in range(len(devs)):
            b = (a + 1) % len(devs)
            if a != b and not g.has_edge(devs[a], devs[b]):
                _both(g, devs[a], devs[b], **_attrs(su.link))
    if node.host_link is not None:
        _add_host_links(g, i, node, devs, host)
    for k, st in enumerate(node.storage):
        v = f"n{i}.nvme{k}" if k else f"n{i}.nvme"
        g.add_node(v, kind="storage", node=i)
        _both(g, host, v, bandwidth_bytes_per_s=st.seq_read_bytes_per_s, latency_s=st.latency_s, kind="pcie")


def _add_host_links(g: nx.DiGraph, i: int, node: Node, devs: list[str], host: str) -> None:
    """Devices reach the host (and NICs) over PCIe or C2C; groups may share a PCIe switch."""
    assert node.host_link is not None
    per = node.devices_per_host_link
    if per == 1:
        for d in devs:
            _both(g, d, host, **_attrs(node.host_link))
        return
    for s in range(len(devs) // per):
        sw = f"n{i}.pcie{s}"
        g.add_node(sw, kind="switch", node=i)
        _both(g, sw, host, **_attrs(node.host_link))
        for d in devs[s * per:(s + 1) * per]:
            _both(g, d, sw, **_attrs(node.host_link))


def _nic_attach_point(node: Node, i: int, local: int) -> str:
    """Where NIC traffic of device ``local`` enters: the device itself, or its PCIe switch."""
    if node.devices_per_host_link > 1:
        return f"n{i}.pcie{local // node.devices_per_host_link}"
    return f"n{i}.d{local}"


def _add_fabric(g: nx.DiGraph, cluster: Cluster) -> None:
    fab = cluster.fabric
    if fab.topology == "none":
        return
    leaf_down: dict[str, float] = {}
    for i, node in enumerate(cluster.nodes):
        if node.nics is None:
            continue
        nic_link = node.nics.link
        host_bw = node.host_link.bandwidth_bytes_per_s if node.host_link else nic_link.bandwidth_bytes_per_s
        per = max(1, node.device_count // node.nics.count)
        for k in range(node.nics.count):
            nic = f"n{i}.nic{k}"
            g.add_node(nic, kind="nic", node=i)
            for local in range(k * per, min((k + 1) * per, node.device_count)):
                attach = _nic_attach_point(node, i, local)
                if not g.has_edge(attach, nic):
                    _both(g, attach, nic, bandwidth_bytes_per_s=host_bw, latency_s=0.0, kind="pcie")
            if node.device_count < node.nics.count and not g.has_edge(f"n{i}.host", nic):
                _both(g, f"n{i}.host", nic, bandwidth_bytes_per_s=host_bw, latency_s=0.0, kind="pcie")
            plane = k % fab.planes
            rail = k // fab.planes if fab.topology == "rail-optimized" else 0
            leaf = f"p{plane}.r{rail}.leaf{i // fab.nodes_per_leaf}"
            g.add_node(leaf, kind="switch", node=-1)
            _both(g, nic, leaf, **_attrs(nic_link, extra_latency_s=fab.switch_latency_s))
            leaf_down[leaf] = leaf_down.get(leaf, 0.0) + nic_link.bandwidth_bytes_per_s
    for leaf, down in leaf_down.items():
        spine = f"{leaf.split('.', 1)[0]}.spine"
        g.add_node(spine, kind="switch", node=-1)
        _both(g, leaf, spine, bandwidth_bytes_per_s=down / fab.oversubscription,
              latency_s=fab.switch_latency_s, kind="internal")


def build_graph(cluster: Cluster) -> nx.DiGraph:
    """The cluster's device, host, NIC and switch graph, an edge each way per link."""
    g = nx.DiGraph(name=cluster.name)
    dom = cluster.fabric.scale_up_domain_nodes
    for i, node in enumerate(cluster.nodes):
        su_switch = f"su{i // dom}" if dom > 1 else None
        _add_node_parts(g, i, node, su_switch)
    _add_fabric(g, cluster)
    return g
