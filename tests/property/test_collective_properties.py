"""Invariants of the communication cost model: monotone in bytes and bandwidth, flows conserved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.perf.collectives import Collectives
from hwsim.perf.comm_moe import routing_counts
from hwsim.perf.comm_paths import CommTopology
from hwsim.spec.cluster import Cluster, Fabric, NodeGroup
from hwsim.spec.hardware import Device, MemoryTier
from hwsim.spec.topology import Link, Nics, Node, ScaleUp


def _cluster() -> Cluster:
    dev = Device(name="G", kind="gpu", compute_flop_per_s={"bf16": 1e15},
                 memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),))
    node = Node(name="N", device=dev, device_count=4,
                scale_up=ScaleUp(topology="switch", in_network_reduction=True,
                                 link=Link(kind="nvlink", bandwidth_bytes_per_s=450e9, latency_s=5e-7)),
                host_link=Link(kind="pcie", bandwidth_bytes_per_s=64e9, latency_s=5e-7),
                nics=Nics(name="nic", count=4, link=Link(kind="infiniband", bandwidth_bytes_per_s=50e9, latency_s=1e-6)))
    return Cluster(name="prop", groups=(NodeGroup(node=node, count=3),),
                   fabric=Fabric(topology="rail-optimized", switch_latency_s=3e-7))


CLUSTER = _cluster()
TOPOLOGY = CommTopology(CLUSTER)
COMM = Collectives(CLUSTER, topology=TOPOLOGY)
OPS = ("all_reduce", "all_gather", "reduce_scatter")
ALGS = ("auto", "nccl", "ring", "direct", "hierarchical")

groups = st.sampled_from([tuple(range(4)), tuple(range(8)), tuple(range(12)), (0, 1, 4, 5, 8, 9), (2, 7)])
sizes = st.floats(min_value=1.0, max_value=1e11, allow_nan=False)
effs = st.floats(min_value=0.2, max_value=1.0)


def _comm(e_up: float, e_out: float) -> Collectives:
    return Collectives(CLUSTER, topology=TOPOLOGY, efficiency={("G", "scale_up"): e_up, ("G", "scale_out"): e_out})


def _matrix(seed: int, r: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, size=(r, r)).astype(float)


@settings(max_examples=80, deadline=None)
@given(op=st.sampled_from(OPS), alg=st.sampled_from(ALGS), group=groups, a=sizes, b=sizes)
def test_more_bytes_never_faster(op, alg, group, a, b):
    if alg not in ("auto", "nccl") and not any(v.startswith(alg) for v in COMM.algorithms(op, group)):
        return
    small, large = sorted((a, b))
    t_small = COMM.collective(op, group, small, algorithm=alg, detail=False).time_s
    t_large = COMM.collective(op, group, large, algorithm=alg, detail=False).time_s
    assert t_small <= t_large * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(OPS), group=groups, size=sizes, e1=effs, e2=effs, o1=effs, o2=effs)
def test_faster_links_never_slower(op, group, size, e1, e2, o1, o2):
    slow = _comm(min(e1, e2), min(o1, o2)).collective(op, group, size, detail=False).time_s
    fast = _comm(max(e1, e2), max(o1, o2)).collective(op, group, size, detail=False).time_s
    assert fast <= slow * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1.0, 1e7), extra=st.floats(1.0, 3.0),
       mode=st.sampled_from(["normal", "low-latency"]), e=effs)
def test_moe_dispatch_monotone(seed, scale, extra, mode, e):
    rng = np.random.default_rng(seed)
    devices = list(range(12))
    ids = rng.integers(0, 24, size=(64, 4))
    counts = routing_counts(ids, rng.integers(0, 12, 64), np.arange(24) // 2, COMM.rank_nodes(devices))
    base = COMM.moe_from_counts(devices, counts, scale, mode, detail=False).time_s
    assert COMM.moe_from_counts(devices, counts, scale * extra, mode, detail=False).time_s >= base
    faster = _comm(1.0, 1.0).moe_from_counts(devices, counts, scale, mode, detail=False).time_s
    slower = _comm(e, e).moe_from_counts(devices, counts, scale, mode, detail=False).time_s
    assert faster <= slower * (1 + 1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_dedup_never_adds_nic_bytes(seed):
    rng = np.random.default_rng(seed)
    devices = list(range(12))
    ids = rng.integers(0, 24, size=(48, 6))
    counts = routing_counts(ids, rng.integers(0, 12, 48), np.arange(24) // 2, COMM.rank_nodes(devices))

    def nic_out(cost):
        return sum(b for (u, v), b in cost.link_bytes.items() if ".nic" in u and "leaf" in v)

    assert nic_out(COMM.moe_from_counts(devices, counts, 1.0, "normal")) <= nic_out(
        COMM.moe_from_counts(devices, counts, 1.0, "low-latency")) + 1e-9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), group=groups)
def test_all_to_all_conserves_bytes(seed, group):
    m = _matrix(seed, len(group)) * 1e3
    cost = COMM.all_to_all(list(group), m)
    np.fill_diagonal(m, 0.0)
    assert cost.bytes_sent == pytest.approx(m.sum())
    net: dict[str, float] = {}
    for (u, v), b in cost.link_bytes.items():
        assert b >= 0
        net[u] = net.get(u, 0.0) + b
        net[v] = net.get(v, 0.0) - b
    expected = {f"n{d // 4}.d{d % 4}": m[i].sum() - m[:, i].sum() for i, d in enumerate(group)}
    for vertex, value in net.items():
        assert value == pytest.approx(expected.get(vertex, 0.0), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(op=st.sampled_from(OPS), group=groups, size=sizes)
def test_time_is_at_least_latency_and_bytes_over_bottleneck(op, group, size):
    cost = COMM.collective(op, group, size)
    assert cost.time_s >= cost.latency_s
    if cost.bottleneck is not None:
        e = CLUSTER.graph().edges[cost.bottleneck]
        assert cost.time_s >= cost.link_bytes[cost.bottleneck] / e["bandwidth_bytes_per_s"] * (1 - 1e-9)
