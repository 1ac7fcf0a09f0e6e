"""Frozen descriptions of nodes (servers) and their parts: links, host CPU, storage, NICs.

A link's ``bandwidth_bytes_per_s`` is always per direction (full duplex): an NVLink 4
device with "900 GB/s bidirectional" is written ``450 GB/s``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from hwsim.spec.hardware import Device, MemoryTier, PriceSpec, Source

LINK_KINDS = ("nvlink", "nvswitch", "pcie", "xgmi", "hccs", "ub", "c2c", "infiniband",
              "ethernet", "roce", "efa", "ici", "internal")
SCALE_UP_TOPOLOGIES = ("switch", "full-mesh", "ring", "none")


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A point-to-point connection: bandwidth per direction and one-way latency."""

    kind: str
    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.kind not in LINK_KINDS:
            raise ValueError(f"link kind must be one of {', '.join(LINK_KINDS)}, got {self.kind!r}")
        if self.bandwidth_bytes_per_s <= 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth_bytes_per_s:g} bytes/s")
        if self.latency_s < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency_s:g} s")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScaleUp:
    """The intra-node (or supernode) device fabric.

    ``switch``: every device has ``link`` to one switch (NVSwitch, UB switch);
    ``full-mesh``: every pair of devices has its own ``link`` (xGMI, HCCS);
    ``ring``: each device links to its two neighbours; ``none``: peers talk through the host.
    ``in_network_reduction`` marks switches that reduce in the fabric (NVLink SHARP / NVLS).
    """

    topology: str
    link: Link | None = None
    in_network_reduction: bool = False

    def __post_init__(self) -> None:
        if self.topology not in SCALE_UP_TOPOLOGIES:
            raise ValueError(f"topology must be one of {', '.join(SCALE_UP_TOPOLOGIES)}, got {self.topology!r}")
        if self.topology != "none" and self.link is None:
            raise ValueError(f"a {self.topology} scale-up fabric needs a link")


@dataclass(frozen=True, slots=True, kw_only=True)
class HostCpu:
    """The host processors of a node, with their DRAM."""

    name: str
    sockets: int
    cores_per_socket: int
    compute_flop_per_s: dict[str, float] = field(default_factory=dict)
    memory: MemoryTier | None = None
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.sockets < 1 or self.cores_per_socket < 1:
            raise ValueError("sockets and cores per socket must be >= 1")
        if self.memory is not None and self.memory.kind not in ("dram", "lpddr", "unified"):
            raise ValueError(f"host memory must be dram, lpddr or unified, got {self.memory.kind!r}")

    @property
    def cores(self) -> int:
        return self.sockets * self.cores_per_socket


@dataclass(frozen=True, slots=True, kw_only=True)
class Storage:
    """Flash / NVMe storage of a node (all drives together, as one striped volume).

    ``read_bandwidth_by_block`` lists ``(block_bytes, bytes_per_s)`` measured at the given
    request size; between points the bandwidth is interpolated in log(block size). Small
    random reads are bounded by ``read_iops`` and by ``latency_s`` at low queue depth.
    """

    name: str
    count: int
    capacity_bytes: float
    seq_read_bytes_per_s: float
    read_bandwidth_by_block: tuple[tuple[float, float], ...] = ()
    read_iops: float | None = None
    write_bytes_per_s: float | None = None
    latency_s: float = 0.0
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.capacity_bytes <= 0 or self.seq_read_bytes_per_s <= 0:
            raise ValueError("capacity and sequential read bandwidth must be > 0")
        blocks = [b for b, _ in self.read_bandwidth_by_block]
        if blocks != sorted(blocks) or len(set(blocks)) != len(blocks):
            raise ValueError("read_bandwidth_by_block must be sorted by strictly increasing block size")
        if any(bw <= 0 or b <= 0 for b, bw in self.read_bandwidth_by_block):
            raise ValueError("block sizes and bandwidths must be > 0")

    def read_bytes_per_s(self, block_bytes: float) -> float:
        """Read bandwidth of the whole volume at a request size of ``block_bytes``."""
        import math

        table = self.read_bandwidth_by_block
        limit = self.seq_read_bytes_per_s
        if self.read_iops is not None:
            limit = min(limit, self.read_iops * block_bytes)
        if not table:
            return limit
        sizes = [b for b, _ in table]
        i = bisect.bisect_left(sizes, block_bytes)
        if i == 0:
            bw = table[0][1] * block_bytes / table[0][0]  # below the table: IOPS-like scaling
        elif i == len(table):
            bw = table[-1][1]
        else:
            (b0, w0), (b1, w1) = table[i - 1], table[i]
            t = (math.log(block_bytes) - math.log(b0)) / (math.log(b1) - math.log(b0))
            bw = w0 + t * (w1 - w0)
        return min(bw, limit)


@dataclass(frozen=True, slots=True, kw_only=True)
class Nics:
    """Scale-out network cards of a node: ``count`` cards, one ``link`` each.

    NIC ``i`` serves devices ``i * devices_per_nic ... (i + 1) * devices_per_nic - 1``
    (rail-optimised wiring); with fewer NICs than devices, devices share a NIC.
    """

    name: str
    count: int
    link: Link

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """A server: ``device_count`` identical devices, their fabric, host, storage and NICs.

    Server wall power is ``power_overhead_w + (1 + power_overhead_fraction) x`` the sum of
    device power: a fixed part (CPUs, fans, NICs at idle) plus a part that scales with the
    accelerators' draw (fans, power-supply losses).
    """

    name: str
    device: Device
    device_count: int
    scale_up: ScaleUp
    host_link: Link | None = None
    devices_per_host_link: int = 1
    cpu: HostCpu | None = None
    storage: tuple[Storage, ...] = ()
    nics: Nics | None = None
    power_overhead_w: float = 0.0
    power_overhead_fraction: float = 0.0
    price: PriceSpec | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.device_count < 1:
            raise ValueError(f"device count must be >= 1, got {self.device_count}")
        if self.devices_per_host_link < 1 or self.device_count % self.devices_per_host_link:
            raise ValueError(
                f"devices_per_host_link ({self.devices_per_host_link}) must divide the device count ({self.device_count})"
            )
        if self.power_overhead_w < 0 or not 0 <= self.power_overhead_fraction < 1:
            raise ValueError("power overhead must be >= 0 W and its fraction in [0, 1)")

    @property
    def dram(self) -> MemoryTier | None:
        return self.cpu.memory if self.cpu is not None else None

    def nic_of_device(self, local_index: int) -> int | None:
        """Index of the NIC serving device ``local_index``, or None without NICs."""
        if self.nics is None:
            return None
        per = max(1, self.device_count // self.nics.count)
        return min(local_index // per, self.nics.count - 1)

    @property
    def device_usd_per_s(self) -> float | None:
        """Price of the node per second: the node price, else the sum of its devices' prices."""
        if self.price is not None:
            return self.price.effective_usd_per_s
        if self.device.price is not None:
            return self.device.price.effective_usd_per_s * self.device_count
        return None
