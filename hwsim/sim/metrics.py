"""Append-only recorders of a simulation and the frozen :class:`SimResult` they produce.

Records are kept in compact growable numpy columns (a few dozen bytes per request and per
step), never as Python objects per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REQUEST_COLUMNS: dict[str, str] = {
    "request_id": "int64",
    "replica": "int32",          # replica that decoded it (the decode replica when disaggregated)
    "arrival_s": "float64",
    "first_scheduled_s": "float64",  # first step that computed part of its prompt
    "first_token_s": "float64",  # NaN if it never produced a token
    "finish_s": "float64",       # NaN if unfinished
    "input_tokens": "int32",
    "output_tokens": "int32",    # requested
    "generated_tokens": "int32",  # produced (== output_tokens when finished)
    "cached_tokens": "int32",    # prompt tokens served from the prefix cache
    "preemptions": "int32",
    "status": "int8",            # see STATUS
}
STATUS = {0: "finished", 1: "unfinished", 2: "rejected"}
"""``status`` codes: finished; still queued or running at the end; rejected (with a reason)."""

STEP_COLUMNS: dict[str, str] = {
    "replica": "int32",
    "pool": "int16",             # index of the pool in the deployment
    "start_s": "float64",
    "duration_s": "float64",
    "prefill_tokens": "int32",
    "decode_seqs": "int32",
    "running_seqs": "int32",     # sequences holding KV after the step
    "waiting_seqs": "int32",     # queued at the replica after the step
    "kv_blocks_used": "int32",
    "imbalance": "float32",      # busiest EP rank load / mean for the step's routing
    "power_w": "float32",        # per device of the replica, over the step
}


class Columns:
    """Growable typed columns (amortised O(1) append, a few bytes per row)."""

    def __init__(self, schema: dict[str, str], capacity: int = 1024) -> None:
        self.schema = schema
        self.n = 0
        self.data = {k: np.zeros(capacity, dtype=v) for k, v in schema.items()}

    def append(self, **row: float) -> None:
        if self.n == len(next(iter(self.data.values()))):
            self.data = {k: np.resize(v, 2 * len(v)) for k, v in self.data.items()}
        for k, v in row.items():
            self.data[k][self.n] = v
        self.n += 1

    def frozen(self) -> dict[str, np.ndarray]:
        return {k: v[: self.n].copy() for k, v in self.data.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    request_id: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolInfo:
    """What the report needs to know about a pool of the deployment."""

    name: str
    role: str
    replicas: int
    devices_per_replica: int
    device: str
    kv_blocks_per_replica: int
    kv_block_tokens: int
    hbm_bytes_per_device: float
    weights_bytes_per_device: float
    usd_per_s: float | None
    idle_power_w: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RankLoad:
    """Expert work each EP rank of a pool did in the sampled MoE layers, over the whole run.

    ``tokens[i, r]``: token-expert assignments rank ``r`` served in MoE layer ``layers[i]``
    (summed over the pool's replicas and steps; replicas of an expert split its tokens);
    ``steps[i]``: the steps that sampled layer ``layers[i]``.
    """

    pool: str
    placement: str
    layers: tuple[int, ...]
    tokens: np.ndarray
    steps: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkUse:
    """Bytes the EP dispatch and combine put on one directed link over the run."""

    src: str
    dst: str
    kind: str
    bandwidth_bytes_per_s: float
    bytes: float


OFFLOAD_STEP_COLUMNS: dict[str, str] = {
    "replica": "int32",
    "pool": "int16",
    "start_s": "float64",
    "hits": "int32",             # distinct (layer, expert) uses found in the expert cache
    "misses": "int32",           # distinct (layer, expert) uses that were not
    "fetched_bytes": "float64",  # into device memory (on demand and prefetched)
    "flash_bytes": "float64",    # read from flash first
    "cpu_experts": "int32",      # missed experts run on the host CPU
    "cpu_s": "float64",          # CPU time of those experts
    "offload_s": "float64",      # seconds the misses added to the step
}
"""One row per engine step of a replica with an expert cache (``experts.offload``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OffloadStats:
    """Expert-cache activity of a run with ``experts.offload`` (see :mod:`hwsim.sim.expert_tiers`).

    ``steps``: :data:`OFFLOAD_STEP_COLUMNS` rows; ``cached_experts``: experts each pool's
    devices cache (over their MoE layers); ``prefetched_experts`` and ``prefetch_hidden_s``:
    experts fetched ahead and the fetch time their window hid.
    """

    steps: dict[str, np.ndarray]
    policy: str
    backing: str
    cached_experts: tuple[int, ...]
    prefetched_experts: int = 0
    prefetch_hidden_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """Everything a simulation produced (frozen; ``report`` turns it into files).

    ``requests`` and ``steps`` are column dicts (see :data:`REQUEST_COLUMNS`,
    :data:`STEP_COLUMNS`); ``expert_load`` is per (MoE layer sample, expert) token counts
    accumulated over the run when routing was sampled; ``link_bytes`` the bytes each directed
    link carried (KV transfers and, when measured, all-to-all); ``rank_loads`` the expert
    work per EP rank of each pool with ``ep > 1``; ``ep_links`` the EP all-to-all bytes per
    link under the run's skewed, placed routing; ``offload`` the expert-cache activity when
    experts are offloaded.
    """

    requests: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    pools: tuple[PoolInfo, ...]
    sim_time_s: float
    wall_time_s: float
    events: int
    seed: int
    rejections: tuple[Rejection, ...] = ()
    expert_load: np.ndarray | None = None
    link_bytes: dict[tuple[str, str], float] = field(default_factory=dict)
    comm_fraction: float = 0.0
    metadata: dict[str, object] = field(default_factory=dict)
    rank_loads: tuple[RankLoad, ...] = ()
    ep_links: tuple[LinkUse, ...] = ()
    offload: OffloadStats | None = None
