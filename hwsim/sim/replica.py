"""A replica of a pool: its scheduler, step cost, routing sampler and prefix cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hwsim.perf.step import StepCost
from hwsim.sim.engine import Scheduler, Seq
from hwsim.sim.kv_cache import BlockManager
from hwsim.spec.deployment import Pool
from hwsim.workload.request import DEFAULT_BLOCK_TOKENS

if TYPE_CHECKING:
    import simpy

    from hwsim.sim.expert_tiers import ExpertTiers

ImbalanceSampler = Callable[[np.random.Generator, int], float]


class PrefixCache:
    """Prefix-block hashes whose KV a replica still holds, least recently used first.

    A new request whose leading ``prefix_blocks`` are cached skips computing those tokens
    (at least its last prompt token is always computed). Capacity is the number of trace
    blocks the replica's KV cache could hold: cached prefixes are assumed to live in blocks
    that are free or shared, so they do not take blocks from running sequences (vLLM's
    automatic prefix caching keeps freed blocks reusable until they are reallocated).
    """

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = max(0, capacity_blocks)
        self._lru: OrderedDict[int, None] = OrderedDict()
        self.hits = 0
        self.lookups = 0

    def match(self, blocks: tuple[int, ...]) -> int:
        """Leading blocks of ``blocks`` that are cached (refreshing them)."""
        n = 0
        for b in blocks:
            if b not in self._lru:
                break
            self._lru.move_to_end(b)
            n += 1
        self.lookups += len(blocks)
        self.hits += n
        return n

    def insert(self, blocks: tuple[int, ...]) -> None:
        for b in blocks:
            self._lru[b] = None
            self._lru.move_to_end(b)
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)


class Replica:
    """One model replica: ``devices`` global device indices of ``pool``."""

    def __init__(self, env: simpy.Environment, index: int, pool_index: int, pool: Pool, cost: StepCost,
                 kv_blocks: int, rng: np.random.Generator, imbalance: ImbalanceSampler | None,
                 first_device: int) -> None:
        self.env = env
        self.index = index
        self.pool_index = pool_index
        self.pool = pool
        self.cost = cost
        self.first_device = first_device
        self.kv = BlockManager(kv_blocks, pool.scheduler.kv_block_tokens)
        self.scheduler = Scheduler(pool.scheduler, self.kv, draft_tokens=cost.deployment.speculative.tokens,
                                   prefills=pool.role != "decode", decodes=pool.role != "prefill")
        self.rng = rng
        self.imbalance = imbalance
        self.wake: simpy.Event | None = None
        self.tiers: ExpertTiers | None = None   # expert cache and miss cost, with experts.offload
        self.prefix = PrefixCache(kv_blocks * pool.scheduler.kv_block_tokens // DEFAULT_BLOCK_TOKENS)

    @property
    def kv_tokens(self) -> int:
        return self.kv.capacity * self.kv.block_tokens

    def add(self, seq: Seq) -> None:
        if self.pool.role != "decode" and seq.req.prefix_blocks and seq.prefilled == 0:
            hit = self.prefix.match(seq.req.prefix_blocks)
            cached = min(hit * seq.req.block_tokens, seq.req.input_tokens - 1)
            if cached > 0:
                seq.cached = cached
                seq.prefilled = cached
        self.scheduler.add(seq)
        if self.wake is not None and not self.wake.triggered:
            self.wake.succeed()

    def step_imbalance(self, tokens: int) -> float | None:
        if self.imbalance is None or tokens <= 0:
            return None
        return self.imbalance(self.rng, tokens)
