"""Stage 2 builder for cluster files: node groups, fabric, power domains, connectivity."""

from __future__ import annotations

from typing import Any

import networkx as nx

from hwsim.errors import SpecError
from hwsim.io.fields import Fields, build
from hwsim.io.load import Context, builder
from hwsim.io.source import Document
from hwsim.spec.cluster import Cluster, Fabric, NodeGroup, PowerDomain
from hwsim.units import Dim


def _groups(f: Fields, ctx: Context, doc: Document) -> tuple[NodeGroup, ...]:
    raw = f.require("nodes")
    items = raw if isinstance(raw, list) else [raw]
    base = f.at("nodes")
    groups = []
    for i, item in enumerate(items):
        path = f"{base}[{i}]" if isinstance(raw, list) else base
        g = Fields(item, path)
        node = ctx.reference("node", g.require("system"), doc=doc, path=g.at("system"))
        groups.append(build(path, NodeGroup, node=node, count=g.get("count", 1)))
    return tuple(groups)


def _fabric(f: Fields) -> Fabric:
    if not f.data:
        return Fabric()
    return build(f.path, Fabric, topology=f.get("topology", "none"), planes=f.get("planes", 1),
                 nodes_per_leaf=f.get("nodes_per_leaf", 32), oversubscription=float(f.get("oversubscription", 1.0)),
                 switch_latency_s=f.quantity("switch_latency", Dim.TIME, 0.0),
                 scale_up_domain_nodes=f.get("scale_up_domain_nodes", 1), source=f.source())


def _node_selection(value: Any, num_nodes: int, path: str) -> tuple[int, ...]:
    """``all``, a list of indices, or ``'a-b'`` ranges (inclusive)."""
    if value == "all":
        return tuple(range(num_nodes))
    if isinstance(value, str):
        out: list[int] = []
        for part in value.split(","):
            lo, _, hi = part.strip().partition("-")
            try:
                out.extend(range(int(lo), int(hi or lo) + 1))
            except ValueError:
                raise SpecError("bad node selection", path=path, expected="'all', [0, 1], or '0-3,8'",
                                found=value) from None
        return tuple(out)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return tuple(value)
    raise SpecError("bad node selection", path=path, expected="'all', [0, 1], or '0-3,8'", found=value)


def _domains(f: Fields, num_nodes: int) -> tuple[PowerDomain, ...]:
    out = []
    for _, item, path in f.items("power_domains"):
        d = Fields(item, path)
        nodes = _node_selection(d.get("nodes", "all"), num_nodes, d.at("nodes"))
        bad = [i for i in nodes if not 0 <= i < num_nodes]
        if bad:
            raise SpecError(f"nodes {bad} are outside 0..{num_nodes - 1}", path=d.at("nodes"),
                            expected=f"node indices in 0..{num_nodes - 1}", found=d.get("nodes"))
        out.append(build(path, PowerDomain, name=d.require("name"), budget_w=d.quantity("budget", Dim.POWER, positive=True),
                         nodes=nodes))
    return tuple(out)


def check_connected(cluster: Cluster, path: str) -> None:
    """Every device must reach every other device."""
    g = cluster.graph()
    devices = cluster.device_vertices()
    if len(devices) < 2:
        return
    reach = nx.descendants(g, devices[0])
    missing = [d for d in devices[1:] if d not in reach]
    if missing:
        raise SpecError(
            f"disconnected topology: {devices[0]} cannot reach {missing[0]} ({len(missing)} devices unreachable); "
            "give the nodes NICs and a fabric (e.g. fabric: {topology: fat-tree})", path=path)


@builder("cluster")
def build_cluster(f: Fields, ctx: Context, doc: Document) -> Cluster:
    groups = _groups(f, ctx, doc)
    num_nodes = sum(g.count for g in groups)
    cluster = build(f.path, Cluster, name=f.require("name"), groups=groups, fabric=_fabric(f.sub("fabric")),
                    power_domains=_domains(f, num_nodes), notes=f.get("notes", ""))
    check_connected(cluster, f.at("fabric"))
    return cluster
