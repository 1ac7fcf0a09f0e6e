"""Communication cost model: hand-computed values, contention, dedup, algorithms, bookkeeping."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwsim.io.load import load_cluster
from hwsim.perf.collectives import Collectives
from hwsim.perf.comm_moe import EpLayout, routing_counts
from hwsim.perf.comm_params import CommParams, bus_bandwidth_bytes_per_s
from hwsim.spec.cluster import Cluster, Fabric, NodeGroup
from hwsim.spec.hardware import Device, EfficiencyFactor, MemoryTier
from hwsim.spec.topology import Link, Nics, Node, ScaleUp

NV_BW, NIC_BW, PCIE_BW = 450e9, 50e9, 64e9
ZERO = CommParams(message_latency_s={}, launch_s=0.0, ep_launch_s=0.0)


def make_cluster(nodes: int = 1, devices: int = 8, *, nvls: bool = False, nv_latency_s: float = 0.0,
                 efficiency: tuple[EfficiencyFactor, ...] = (), nics: int | None = None) -> Cluster:
    dev = Device(name="G", kind="gpu", compute_flop_per_s={"bf16": 1e15},
                 memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),),
                 efficiency=efficiency)
    node = Node(name="N", device=dev, device_count=devices,
                scale_up=ScaleUp(topology="switch", in_network_reduction=nvls,
                                 link=Link(kind="nvlink", bandwidth_bytes_per_s=NV_BW, latency_s=nv_latency_s)),
                host_link=Link(kind="pcie", bandwidth_bytes_per_s=PCIE_BW, latency_s=nv_latency_s),
                nics=Nics(name="nic", count=nics or devices, link=Link(kind="infiniband", bandwidth_bytes_per_s=NIC_BW)))
    fabric = Fabric(topology="rail-optimized" if nodes > 1 else "none")
    return Cluster(name="test", groups=(NodeGroup(node=node, count=nodes),), fabric=fabric)


@pytest.fixture(scope="module")
def one_node():
    return make_cluster(nvls=True, nv_latency_s=1e-6)


@pytest.fixture(scope="module")
def four_nodes():
    return make_cluster(nodes=4, nvls=True)


# -- hand-computed values ----------------------------------------------------------------
def test_ring_all_reduce_matches_hand_computation(one_node):
    params = CommParams(message_latency_s={"nvlink": 2e-6}, launch_s=5e-6)
    cost = Collectives(one_node, params=params).all_reduce(range(8), 1e9, algorithm="ring")
    beta = 2 * 7 / 8 * 1e9 / 450e9
    # 2(n-1) = 14 steps; each hop is device -> switch -> device: 2 x 1 us wire + 2 us message
    alpha = 14 * (2 * 1e-6 + 2e-6)
    assert cost.time_s == pytest.approx(5e-6 + alpha + beta, rel=1e-9)
    assert cost.latency_s == pytest.approx(5e-6 + alpha)
    assert cost.bottleneck is not None and cost.bottleneck[1] == "n0.su"


def test_efficiency_derates_link_bandwidth():
    eff = (EfficiencyFactor(name="scale_up", value=0.8, calibrated_on=("x",)),)
    cost = Collectives(make_cluster(efficiency=eff), params=ZERO).all_reduce(range(8), 1e9, algorithm="ring")
    assert cost.time_s == pytest.approx(2 * 7 / 8 * 1e9 / (0.8 * 450e9))


def test_p2p_is_alpha_plus_bytes_over_bottleneck(one_node):
    params = CommParams(message_latency_s={"nvlink": 3e-6}, launch_s=4e-6)
    cost = Collectives(one_node, params=params).p2p(0, 1, 1e9)
    assert cost.time_s == pytest.approx(4e-6 + 2e-6 + 3e-6 + 1e9 / 450e9)
    assert cost.link_bytes == {("n0.d0", "n0.su"): 1e9, ("n0.su", "n0.d1"): 1e9}


def test_reduce_scatter_and_all_gather_ring_bytes(one_node):
    comm = Collectives(one_node, params=ZERO)
    for op in ("reduce_scatter", "all_gather"):
        cost = comm.collective(op, range(8), 8e9, algorithm="ring")
        # n-1 = 7 steps of two 1 us hops (the fixture's wire latency)
        assert cost.time_s == pytest.approx(7 / 8 * 8e9 / 450e9 + 7 * 2e-6)


def test_host_transfer_uses_the_host_link(one_node):
    cost = Collectives(one_node, params=ZERO).transfer([("n0.host", 3, 1e9)])
    assert cost.time_s == pytest.approx(1e9 / PCIE_BW + 1e-6)
    assert cost.bottleneck == ("n0.host", "n0.d3")


def test_bus_bandwidth_conventions():
    assert bus_bandwidth_bytes_per_s("all_reduce", 1e9, 8, 1.0) == pytest.approx(1.75e9)
    assert bus_bandwidth_bytes_per_s("all_gather", 1e9, 8, 1.0) == pytest.approx(0.875e9)
    assert bus_bandwidth_bytes_per_s("p2p", 1e9, 2, 0.5) == pytest.approx(2e9)


# -- contention --------------------------------------------------------------------------
def test_two_flows_sharing_a_nic_take_twice_as_long(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    one = comm.transfer([(0, 8, 1e9)])
    two = comm.transfer([(0, 8, 1e9), (0, 16, 1e9)])       # both leave through n0.nic0
    apart = comm.transfer([(0, 8, 1e9), (1, 17, 1e9)])     # different rails
    assert one.time_s == pytest.approx(1e9 / NIC_BW)
    assert two.time_s == pytest.approx(2 * one.time_s)
    assert apart.time_s == pytest.approx(one.time_s)
    assert two.bottleneck == ("n0.nic0", "p0.r0.leaf0")


def test_opposite_directions_do_not_contend(one_node):
    comm = Collectives(one_node, params=ZERO)
    both = comm.transfer([(0, 1, 1e9), (1, 0, 1e9)])
    assert both.time_s == pytest.approx(comm.p2p(0, 1, 1e9).time_s)


# -- algorithms --------------------------------------------------------------------------
def test_nvls_beats_ring_on_nvswitch_nodes(one_node):
    comm = Collectives(one_node)
    nvls = comm.all_reduce(range(8), 1e9, algorithm="nvls")
    ring = comm.all_reduce(range(8), 1e9, algorithm="ring")
    assert nvls.time_s < ring.time_s
    assert comm.all_reduce(range(8), 1e9).time_s <= nvls.time_s
    # NVLS moves about nbytes each way per device, ring 2(n-1)/n nbytes
    assert nvls.link_bytes[("n0.d0", "n0.su")] == pytest.approx(1e9)
    assert ring.link_bytes[("n0.d0", "n0.su")] == pytest.approx(1.75e9)


def test_nvls_needs_in_network_reduction():
    comm = Collectives(make_cluster(nvls=False))
    assert "nvls" not in comm.algorithms("all_reduce", range(8))
    with pytest.raises(ValueError, match="does not apply"):
        comm.all_reduce(range(8), 1e6, algorithm="nvls")


def test_hierarchical_beats_flat_ring_across_nodes_at_large_sizes(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    flat = comm.all_reduce(range(32), 4e9, algorithm="ring")
    hier = comm.all_reduce(range(32), 4e9, algorithm="hierarchical")
    assert hier.time_s < flat.time_s
    # flat ring: 2(n-1)/n of the size per node boundary, spread over 8 rails
    assert flat.time_s == pytest.approx(2 * 31 / 32 * 4e9 / 8 / NIC_BW)
    nic = max(v for (u, w), v in hier.link_bytes.items() if ".nic" in u and "leaf" in w)
    assert nic == pytest.approx(2 * 3 / 4 * 4e9 / 8)   # inter-node all-reduce of the 1/8 shard


def test_tree_is_latency_friendly(four_nodes):
    params = CommParams(message_latency_s={"nvlink": 1e-6, "infiniband": 5e-6}, launch_s=0.0)
    comm = Collectives(four_nodes, params=params)
    tree = comm.all_reduce(range(32), 1e3, algorithm="tree")
    ring = comm.all_reduce(range(32), 1e3, algorithm="ring")
    assert tree.time_s < ring.time_s
    assert comm.all_reduce(range(32), 1e10, algorithm="tree").time_s > comm.all_reduce(range(32), 1e10).time_s


def test_auto_is_the_fastest_variant(four_nodes):
    comm = Collectives(four_nodes)
    for op, size in itertools.product(("all_reduce", "all_gather", "reduce_scatter"), (1e4, 1e9)):
        best = min(comm.collective(op, range(32), size, algorithm=a).time_s for a in comm.algorithms(op, range(32)))
        assert comm.collective(op, range(32), size).time_s == pytest.approx(best)
        nccl = comm.collective(op, range(32), size, algorithm="nccl")
        assert nccl.name.split("[")[1].rstrip("]") in ("ring", "tree", "nvls")


def test_bad_inputs_are_rejected(one_node):
    comm = Collectives(one_node)
    with pytest.raises(ValueError, match="unknown algorithm"):
        comm.all_reduce(range(8), 1e6, algorithm="butterfly")
    with pytest.raises(ValueError, match="twice"):
        comm.all_reduce([0, 0, 1], 1e6)
    with pytest.raises(ValueError, match="tree"):
        comm.all_gather(range(8), 1e6, algorithm="tree")
    assert comm.all_reduce([3], 1e9).time_s == 0.0


# -- bookkeeping -------------------------------------------------------------------------
def _net_outflow(cost, vertex):
    out = sum(b for (u, _), b in cost.link_bytes.items() if u == vertex)
    inn = sum(b for (_, v), b in cost.link_bytes.items() if v == vertex)
    return out - inn


def test_link_bytes_conserve_flow(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    rng = np.random.default_rng(1)
    devices = list(range(0, 32, 3))
    m = rng.integers(0, 1000, size=(len(devices), len(devices))).astype(float)
    cost = comm.all_to_all(devices, m)
    np.fill_diagonal(m, 0)
    assert cost.bytes_sent == pytest.approx(m.sum())
    vertices = {u for u, _ in cost.link_bytes} | {v for _, v in cost.link_bytes}
    sent = {f"n{d // 8}.d{d % 8}": m[i].sum() - m[:, i].sum() for i, d in enumerate(devices)}
    for v in vertices:
        assert _net_outflow(cost, v) == pytest.approx(sent.get(v, 0.0), abs=1e-6)


def test_p2p_bytes_times_hops(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    cost = comm.p2p(0, 9, 1e6)
    path = four_nodes.path("n0.d0", "n1.d1")
    assert sum(cost.link_bytes.values()) == pytest.approx(1e6 * (len(path) - 1))


# -- MoE dispatch ------------------------------------------------------------------------
def test_per_node_dedup_reduces_nic_bytes(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    devices = list(range(16))                         # two nodes
    experts = np.tile([8, 10, 12, 14], (8, 1))        # each rank of node 0: one token, 4 ranks of node 1
    counts = routing_counts(experts, np.arange(8), np.arange(16), comm.rank_nodes(devices))
    assert counts.tokens_to_node[0].tolist() == [0.0, 1.0]
    assert counts.tokens_to_rank[0].sum() == 4 and counts.pairs_to_rank[0].sum() == 4
    normal = comm.moe_from_counts(devices, counts, 1e6, "normal")
    ll = comm.moe_from_counts(devices, counts, 1e6, "low-latency")

    def nic_bytes(cost):
        return sum(b for (u, v), b in cost.link_bytes.items() if "leaf" in v)

    assert nic_bytes(normal) == pytest.approx(8e6)      # each token crosses a NIC once ...
    assert nic_bytes(ll) == pytest.approx(32e6)         # ... not once per destination rank
    assert normal.time_s == pytest.approx(1e6 / NIC_BW)
    # low latency: the 8 messages for rank 8 all enter through its NIC (incast)
    assert ll.time_s == pytest.approx(8 * normal.time_s)
    # rank 0's token reaches node 1 at rank 8 (same rail), which forwards it over NVLink
    assert normal.link_bytes[("n1.d0", "n1.su")] == pytest.approx(3e6)


def test_combine_is_dispatch_reversed(four_nodes):
    comm = Collectives(four_nodes, params=ZERO)
    rng = np.random.default_rng(3)
    devices = list(range(32))
    ids = rng.integers(0, 64, size=(512, 4))
    counts = routing_counts(ids, rng.integers(0, 32, 512), np.arange(64) // 2, comm.rank_nodes(devices))
    d = comm.moe_from_counts(devices, counts, 1e4)
    c = comm.moe_from_counts(devices, counts, 1e4, combine=True)
    assert {(v, u): b for (u, v), b in d.link_bytes.items()} == pytest.approx(c.link_bytes)
    assert d.bytes_sent == pytest.approx(c.bytes_sent)


def test_routing_counts_match_a_loop():
    rng = np.random.default_rng(7)
    ids = rng.integers(-1, 32, size=(300, 6))
    src = rng.integers(0, 8, 300)
    e2r = rng.integers(0, 8, 32)
    node = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    got = routing_counts(ids, src, e2r, node)
    tok, pairs, per_node = np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 2))
    for t in range(300):
        valid = [e for e in ids[t] if e >= 0]
        for e in valid:
            pairs[src[t], e2r[e]] += 1
        for r in {e2r[e] for e in valid}:
            tok[src[t], r] += 1
        for b in {node[e2r[e]] for e in valid}:
            per_node[src[t], b] += 1
    assert np.array_equal(got.pairs_to_rank, pairs)
    assert np.array_equal(got.tokens_to_rank, tok)
    assert np.array_equal(got.tokens_to_node, per_node)


def test_ep_layout_forwarders_keep_the_rail():
    layout = EpLayout.from_domains(np.array([5, 5, 5, 9, 9, 9]))
    assert layout.rank_node.tolist() == [0, 0, 0, 1, 1, 1]
    assert layout.forwarder[1].tolist() == [1, 4]
    assert layout.nvl_src[1, 5] == 4 and not layout.nvl_valid[1, 4]


def test_shape_errors(one_node):
    comm = Collectives(one_node)
    with pytest.raises(ValueError, match="8x8"):
        comm.all_to_all(range(8), np.ones((3, 3)))
    with pytest.raises(ValueError, match="tokens_to_node"):
        comm.moe_dispatch(list(range(8)), np.ones((8, 8)), np.ones((8, 3)), 10.0)
    with pytest.raises(ValueError, match="mode"):
        comm.moe_dispatch(list(range(8)), np.ones((8, 8)), np.ones((8, 1)), 10.0, mode="fast")


# -- catalog clusters --------------------------------------------------------------------
def test_catalog_clusters_smoke():
    nvl72 = Collectives(load_cluster("GB200-NVL72"))
    assert "nvls" in nvl72.algorithms("all_reduce", range(72))
    assert nvl72.all_reduce(range(72), 1e8).time_s > 0
    h800 = Collectives(load_cluster("H800-32node-MPFT"))
    uniform = np.full((32, 32), 1e6)
    cost = h800.all_to_all(list(range(32)), uniform)
    assert cost.bottleneck is not None and ("nic" in cost.bottleneck[0] or "nic" in cost.bottleneck[1])
