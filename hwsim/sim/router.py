"""Request routing across the replicas of the entry pool (a typed registry of policies)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hwsim.registry import Registry
from hwsim.sim.engine import Seq
from hwsim.sim.replica import Replica

RouterFn = Callable[[Sequence[Replica], Seq, Any], Replica]
ROUTERS: Registry[RouterFn] = Registry("router")


@ROUTERS.register("round-robin")
def round_robin(replicas: Sequence[Replica], seq: Seq, sim: Any) -> Replica:
    """Replicas in turn."""
    sim._rr = (sim._rr + 1) % len(replicas)
    return replicas[sim._rr]


@ROUTERS.register("least-tokens")
def least_tokens(replicas: Sequence[Replica], seq: Seq, sim: Any) -> Replica:
    """The replica with the fewest tokens still to compute or generate."""
    return min(replicas, key=lambda r: (r.scheduler.outstanding_tokens(), r.index))


@ROUTERS.register("prefix-affinity")
def prefix_affinity(replicas: Sequence[Replica], seq: Seq, sim: Any) -> Replica:
    """Requests sharing their first prefix block go to the same replica (else least-tokens)."""
    blocks = seq.req.prefix_blocks
    if not blocks:
        return least_tokens(replicas, seq, sim)
    return replicas[hash(blocks[0]) % len(replicas)]
