"""Spec objects built in code (no files)."""

from __future__ import annotations

import pytest

from hwsim.spec.hardware import Device, MemoryTier, PriceSpec
from hwsim.spec.topology import Link, Nics, Node, ScaleUp


def make_device(**kw):
    args = dict(name="G", kind="gpu", compute_flop_per_s={"bf16": 1e15, "fp8": 2e15},
                memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),),
                price=PriceSpec(usd_per_s=2.0 / 3600))
    args.update(kw)
    return Device(**args)


def make_node(devices=8, topology="switch", nics=8, per_host_link=1, **kw):
    su = ScaleUp(topology=topology, link=None if topology == "none" else Link(kind="nvlink", bandwidth_bytes_per_s=450e9, latency_s=1e-6))
    return Node(name="N", device=make_device(), device_count=devices, scale_up=su,
                host_link=Link(kind="pcie", bandwidth_bytes_per_s=64e9, latency_s=1e-6),
                devices_per_host_link=per_host_link,
                nics=Nics(name="nic", count=nics, link=Link(kind="infiniband", bandwidth_bytes_per_s=50e9, latency_s=2e-6)) if nics else None,
                **kw)


@pytest.fixture
def device():
    return make_device()


@pytest.fixture(name="make_device")
def make_device_fixture():
    return make_device


@pytest.fixture(name="make_node")
def make_node_fixture():
    return make_node
