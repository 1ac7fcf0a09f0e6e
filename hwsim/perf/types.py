"""Frozen results of the cost model: one operator, one collective, one engine step.

Everything is in SI units: seconds, FLOP, bytes, joules. ``perf`` answers "how long and how
much"; it never decides when something happens (that is ``sim``'s job).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BOUNDS = ("compute", "memory", "communication", "overhead")
"""What limits an operator: the slower of its compute and memory times, a transfer, or launch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpCost:
    """Cost of one operator on one device.

    ``time_s`` already includes efficiency derating, tile/wave quantisation and launch
    overhead; ``compute_s`` and ``memory_s`` are the two roofline legs after derating
    (``time_s >= max(compute_s, memory_s)``). ``bytes_moved`` counts main-memory traffic.
    """

    name: str
    time_s: float
    flop: float
    bytes_moved: float
    compute_s: float
    memory_s: float
    overhead_s: float = 0.0

    def __post_init__(self) -> None:
        if self.time_s < 0 or self.flop < 0 or self.bytes_moved < 0:
            raise ValueError(f"{self.name}: negative cost")

    @property
    def bound(self) -> str:
        """``compute``, ``memory`` or ``overhead``: whichever term dominates ``time_s``."""
        legs = {"compute": self.compute_s, "memory": self.memory_s, "overhead": self.overhead_s}
        return max(legs, key=lambda k: legs[k])

    def scaled(self, times: float, name: str | None = None) -> OpCost:
        """The cost of running this operator ``times`` times in sequence."""
        return OpCost(name=name or self.name, time_s=self.time_s * times, flop=self.flop * times,
                      bytes_moved=self.bytes_moved * times, compute_s=self.compute_s * times,
                      memory_s=self.memory_s * times, overhead_s=self.overhead_s * times)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommCost:
    """Cost of one collective or transfer over the cluster graph.

    ``link_bytes`` maps a directed graph edge ``(u, v)`` to the bytes it carries;
    ``bottleneck`` names the edge that set ``time_s`` (None when latency-bound or local).
    """

    name: str
    time_s: float
    bytes_sent: float
    link_bytes: dict[tuple[str, str], float] = field(default_factory=dict)
    bottleneck: tuple[str, str] | None = None
    latency_s: float = 0.0

    def __post_init__(self) -> None:
        if self.time_s < 0 or self.bytes_sent < 0:
            raise ValueError(f"{self.name}: negative cost")
