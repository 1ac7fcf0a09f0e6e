"""Topologies built as graphs: who connects to whom, with what bandwidth."""

import networkx as nx
import pytest

from hwsim.spec.cluster import Cluster, Fabric, NodeGroup, PowerDomain


@pytest.fixture(name="cluster")
def cluster_fixture(make_node):
    def cluster(nodes=2, fabric=None, **node_kw):
        return Cluster(name="c", groups=(NodeGroup(node=make_node(**node_kw), count=nodes),),
                       fabric=fabric or Fabric(topology="rail-optimized"))
    return cluster



def test_counts_and_vertices(cluster):
    c = cluster(nodes=3)
    assert c.num_nodes == 3 and c.num_devices == 24
    assert c.device_vertices()[9] == "n1.d1"
    assert c.usd_per_s == pytest.approx(24 * 2.0 / 3600)


def test_rail_optimized_puts_nic_i_on_rail_i(cluster):
    g = cluster(nodes=2).graph()
    assert g.has_edge("n0.nic3", "p0.r3.leaf0") and g.has_edge("n1.nic3", "p0.r3.leaf0")
    assert not g.has_edge("n0.nic3", "p0.r0.leaf0")


def test_fat_tree_puts_a_node_on_one_leaf_and_oversubscribes_uplinks(cluster):
    c = cluster(nodes=4, fabric=Fabric(topology="fat-tree", nodes_per_leaf=2, oversubscription=2.0))
    g = c.graph()
    assert g.has_edge("n0.nic7", "p0.r0.leaf0") and g.has_edge("n3.nic0", "p0.r0.leaf1")
    # 2 nodes x 8 NICs x 50 GB/s down, halved up
    assert g.edges["p0.r0.leaf0", "p0.spine"]["bandwidth_bytes_per_s"] == pytest.approx(400e9)
    assert c.bottleneck_bytes_per_s("n0.d0", "n3.d0") == pytest.approx(50e9)


def test_two_planes_are_joined_only_through_the_nodes(cluster):
    c = cluster(nodes=2, fabric=Fabric(topology="rail-optimized", planes=2))
    g = c.graph()
    planes = {v.split(".")[0] for v in g if v.startswith("p")}
    assert planes == {"p0", "p1"}
    switches = g.subgraph(v for v in g if v.startswith("p"))
    assert not any(u[:2] != v[:2] for u, v in switches.edges)
    # NIC 1 of node 0 is in plane 1: a device behind it reaches node 1 through plane 1
    assert any(v.startswith("p1.") for v in c.path("n0.d1", "n1.d1"))


def test_full_mesh_links_every_pair(cluster):
    c = cluster(nodes=1, topology="full-mesh", fabric=Fabric())
    g = c.graph()
    devs = c.device_vertices()
    assert all(g.has_edge(a, b) for a in devs for b in devs if a != b)
    assert c.path("n0.d0", "n0.d7") == ["n0.d0", "n0.d7"]


def test_supernode_shares_one_switch_across_nodes(cluster):
    c = cluster(nodes=4, nics=0, fabric=Fabric(topology="none", scale_up_domain_nodes=4))
    assert c.path("n0.d0", "n3.d5") == ["n0.d0", "su0", "n3.d5"]
    assert c.bottleneck_bytes_per_s("n0.d0", "n3.d5") == pytest.approx(450e9)


def test_no_scale_up_goes_through_the_host(cluster):
    c = cluster(nodes=1, topology="none", nics=0, fabric=Fabric())
    assert c.path("n0.d0", "n0.d1") == ["n0.d0", "n0.host", "n0.d1"]
    assert c.bottleneck_bytes_per_s("n0.d0", "n0.d1") == pytest.approx(64e9)


def test_pcie_switch_shared_by_two_devices(cluster):
    c = cluster(nodes=1, topology="none", nics=0, per_host_link=2, fabric=Fabric())
    g = c.graph()
    assert g.has_edge("n0.d0", "n0.pcie0") and g.has_edge("n0.d1", "n0.pcie0") and g.has_edge("n0.pcie0", "n0.host")
    assert c.path("n0.d0", "n0.d1") == ["n0.d0", "n0.pcie0", "n0.d1"]


def test_graph_is_cached_and_connected(cluster):
    c = cluster(nodes=2)
    assert c.graph() is c.graph()
    assert nx.is_strongly_connected(c.graph())


def test_invariants(cluster, make_node):
    with pytest.raises(ValueError):
        Fabric(topology="torus")
    with pytest.raises(ValueError):
        Fabric(oversubscription=0.5)
    with pytest.raises(ValueError):
        cluster(nodes=3, fabric=Fabric(scale_up_domain_nodes=2))
    with pytest.raises(ValueError):
        Cluster(name="c", groups=(NodeGroup(node=make_node(), count=1),),
                power_domains=(PowerDomain(name="r", budget_w=1e4, nodes=(0, 1)),))
    with pytest.raises(ValueError):
        make_node(devices=8, per_host_link=3)
