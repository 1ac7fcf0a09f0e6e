"""Parameters of the communication cost model that the hardware schema does not carry.

Link bandwidths and efficiencies come from the specs (``Link.bandwidth_bytes_per_s``,
``Device.efficiency_of("scale_up" | "scale_out" | "host_link")``). What the YAML schema has
no field for lives here, as documented module-level defaults with their sources:

* a **per-message software latency** per link kind (alpha of the alpha-beta model): the
  time one step of a collective, or one kernel's message, pays for crossing a fabric of
  that kind (NCCL/DeepEP protocol overhead, RDMA completion, proxy threads), on top of the
  graph's wire/switch latencies ``latency_s``;
* a **launch overhead** per communication call (kernel launch and synchronisation), one for
  NCCL-style collectives and transfers and one for expert-parallel dispatch/combine kernels
  (DeepEP), which are different software with different fixed costs;
* the **NVLS bandwidth fraction**: NVLink SHARP (in-switch reduction) moves about
  ``nbytes`` per device each way instead of ring's ``2 (n-1)/n nbytes``, but reaches only a
  fraction of the link rate;
* the **SMs a communication kernel holds** while it runs (``COMM_SMS``), which the compute
  overlapped beside it loses.

The values are fitted by ``validation/calibrate_comm.py``; ``docs/calibration-comm.md``
lists the fit, the rows it was fitted on and the error of every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

EFFICIENCY_CLASS: Mapping[str, str] = MappingProxyType({
    "nvlink": "scale_up", "nvswitch": "scale_up", "xgmi": "scale_up", "hccs": "scale_up",
    "ub": "scale_up", "ici": "scale_up",
    "infiniband": "scale_out", "ethernet": "scale_out", "roce": "scale_out", "efa": "scale_out",
    "internal": "scale_out",
    "pcie": "host_link", "c2c": "host_link",
})
"""Which device efficiency factor derates a link of each kind (``internal`` = fabric switch)."""

BUS_FACTOR: Mapping[str, str] = MappingProxyType({
    "all_reduce": "2(n-1)/n", "all_gather": "(n-1)/n", "reduce_scatter": "(n-1)/n",
    "all_to_all": "(n-1)/n", "p2p": "1",
})
"""NCCL's bus-bandwidth factors (nccl-tests ``doc/PERFORMANCE.md``), as text for reports."""

# Fitted by validation/calibrate_comm.py (see docs/calibration-comm.md):
#   nvlink     <- b200-nccl-allreduce-1vs4-nodes (1-node rows), DeepEP LL EP8 (docs/legacy.md)
#   infiniband <- DeepEP V1 low-latency table, EP16..EP256 on H800 + CX7 (DeepEP docs/legacy.md,
#                 the source of validation case deepep-v1-normal-h800)
#   efa        <- b200-nccl-allreduce-1vs4-nodes (4-node rows, P6-B200 with EFA v4)
#   launch     <- b200-nccl-allreduce-1vs4-nodes (small payloads), with the nvlink/efa latencies
#   ep launch  <- DeepEP V1 low-latency table, with the infiniband latency
_FITTED_MESSAGE_LATENCY_S = {"nvlink": 3.09e-06, "infiniband": 8.5e-06, "efa": 3.21e-05}
_FITTED_LAUNCH_S = 4.96e-05
_FITTED_EP_LAUNCH_S = 1.75e-05
_FITTED_NVLS_FRACTION = 0.659


COMM_SMS: Mapping[str, int] = MappingProxyType({"ep_normal": 20, "ep_low_latency": 0, "collective": 0})
"""SMs each kind of communication kernel occupies while it runs (documented, not fitted).

* ``ep_normal``: DeepEP's normal (high-throughput) dispatch/combine kernels run persistent
  channels on ``Buffer.num_sms = 20`` SMs by default (DeepEP ``deep_ep/buffer.py``); the
  DeepSeek-V3 technical report (section 3.2.2) likewise dedicates "20 of the 132 SMs" of an
  H800 to communication.
* ``ep_low_latency``: DeepEP's low-latency kernels post RDMA writes and return; with the
  receive hook no SM is held while the data moves (DeepEP README, "hook-based
  communication-computation overlapping ... without occupying any SM resource").
* ``collective``: NCCL's SM use depends on its channel count (version, message size,
  algorithm) and is not charged (an omission: overlapped all-reduces are rare in the
  deployments hwsim models; tensor-parallel all-reduces run between dependent GEMMs).
"""


def message_latency_table(fitted: Mapping[str, float]) -> dict[str, float]:
    """Per-kind message latencies from the fitted ``nvlink``, ``infiniband`` and ``efa`` values.

    Unfitted kinds take the value of the fitted kind of their class (an assumption, not a
    measurement): other scale-up fabrics as NVLink, RoCE/Ethernet as InfiniBand. PCIe/C2C
    DMA and fabric-internal switch hops add no software overhead of their own (their wire
    latency is in the graph).
    """
    nv, ib = fitted["nvlink"], fitted["infiniband"]
    table = {kind: (nv if cls == "scale_up" else ib if cls == "scale_out" else 0.0)
             for kind, cls in EFFICIENCY_CLASS.items()}
    table.update(fitted)
    table["internal"] = 0.0
    return table


def _default_message_latency() -> dict[str, float]:
    return message_latency_table(_FITTED_MESSAGE_LATENCY_S)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommParams:
    """Latency terms and the NVLS fraction (see the module docstring for sources).

    ``message_latency_s`` maps a link kind to the software latency of one message step
    across it; a path pays the largest value among its links (a message is one RDMA/NVLink
    operation, not one per hop) plus the sum of the links' wire latencies. ``launch_s`` is
    paid once per collective, all-to-all or transfer; ``ep_launch_s`` once per MoE dispatch
    or combine.
    """

    message_latency_s: Mapping[str, float] = field(default_factory=_default_message_latency)
    launch_s: float = _FITTED_LAUNCH_S
    ep_launch_s: float = _FITTED_EP_LAUNCH_S
    nvls_bandwidth_fraction: float = _FITTED_NVLS_FRACTION

    def __post_init__(self) -> None:
        if any(v < 0 for v in self.message_latency_s.values()) or min(self.launch_s, self.ep_launch_s) < 0:
            raise ValueError("message latencies and launch overhead must be >= 0 s")
        if not 0 < self.nvls_bandwidth_fraction <= 1:
            raise ValueError(f"nvls_bandwidth_fraction must be in (0, 1], got {self.nvls_bandwidth_fraction:g}")

    def latency_of(self, kind: str) -> float:
        """Per-message latency of a link kind (0 for kinds with no entry)."""
        return float(self.message_latency_s.get(kind, 0.0))


def bus_bandwidth_bytes_per_s(op: str, nbytes: float, group_size: int, time_s: float) -> float:
    """NCCL bus bandwidth: algorithm bandwidth ``nbytes / time_s`` times the op's factor.

    ``nbytes`` is nccl-tests' "size": the all-reduce buffer, the all-gather *output*, the
    reduce-scatter *input*, the all-to-all send buffer of one rank.

    >>> round(bus_bandwidth_bytes_per_s("all_reduce", 1e9, 8, 1e-3) / 1e9, 3)
    1750.0
    """
    n = group_size
    factor = {"all_reduce": 2 * (n - 1) / n, "all_gather": (n - 1) / n,
              "reduce_scatter": (n - 1) / n, "all_to_all": (n - 1) / n, "p2p": 1.0}[op]
    return nbytes / time_s * factor if time_s > 0 else float("inf")
