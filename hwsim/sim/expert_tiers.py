"""A replica's expert tiers in the simulator: which experts each step touches, which of them
miss the device's expert cache, and what the misses cost.

Built per replica when the deployment has ``experts.offload``. Every engine step:

1. the step's tokens draw expert ids for every MoE layer from a
   :class:`~hwsim.workload.routing_stream.RoutingStream` keyed by sequence (a decode sequence
   contributes ``1 + draft`` tokens, a prompt chunk its tokens), so a sequence's temporal
   locality carries from step to step;
2. each EP rank's :class:`~hwsim.perf.expert_cache.ExpertCache` (over the rank's experts)
   resolves hits and misses; with ``backing: flash`` a miss on an expert used in the last
   ``flash.window_tokens`` steps is served from DRAM (LLM in a flash's windowing), others from
   flash;
3. with prefetch, each miss was predicted with probability ``accuracy`` (a draw); every wrong
   prediction fetched a random expert the step did not use instead, which enters the cache
   (pollution, applied after the step);
4. :class:`~hwsim.perf.offload.OffloadCost` turns the fetches into seconds added to the step.
   The step's device power is averaged with idle power over the added time.

Cache capacity per device comes from the footprint (:func:`hwsim.perf.memory.footprint`,
``cached_experts``); with ``pp > 1`` each stage's device caches its own layers, and a
``device``-scope cache is pooled over the stages (an approximation). The tiers draw from their
own generator (spawned from the run seed after every other stream), so with a cache that holds
every expert the run is identical to one without offload.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwsim.perf.batch import Batch
from hwsim.perf.expert_cache import ExpertCache
from hwsim.perf.memory import footprint
from hwsim.perf.offload import OffloadCost, OffloadStep
from hwsim.perf.offload_estimate import attention_share
from hwsim.perf.power import idle_power_w
from hwsim.perf.step import StepCost
from hwsim.sim.metrics import OFFLOAD_STEP_COLUMNS, Columns, OffloadStats
from hwsim.spec.deployment import Pool
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_stream import RoutingStream

if TYPE_CHECKING:
    from hwsim.perf.collectives import Collectives
    from hwsim.sim.engine import StepPlan
    from hwsim.sim.replica import Replica
    from hwsim.sim.run import Simulation
    from hwsim.spec.scenario import Scenario



class ExpertTiers:
    """Routing stream, expert caches and miss cost of one replica (module docstring)."""

    def __init__(self, scenario: Scenario, pool: Pool, pool_index: int, replica: int, cost: StepCost,
                 first_device: int, rng: np.random.Generator, collectives: Collectives | None = None) -> None:
        dep, model = scenario.deployment, scenario.model
        off, moe = dep.experts.offload, model.moe
        if off is None or moe is None:
            raise ValueError("expert tiers need a MoE model and an experts.offload block")
        self.offload = off
        self.pool_index, self.replica = pool_index, replica
        self.layers = model.num_moe_layers
        self.model_layers = model.num_layers
        self.draft = dep.speculative.tokens
        self.rng = rng
        self.routing = make_routing(dep.experts.routing, moe)
        self.stream = RoutingStream(self.routing, rng, self.layers)
        self.cost = OffloadCost(scenario.cluster, model, dep, pool, collectives=collectives, first_device=first_device)
        self.experts = moe.num_experts
        par = pool.parallelism
        self.cached_experts = cached_experts = footprint(model, dep, pool, cost.device).cached_experts or 0
        stage_layers = -(-self.layers // par.pp)
        per_layer = cached_experts // max(stage_layers, 1)
        capacity = per_layer if off.scope == "layer" else cached_experts * par.pp
        pop = np.stack([np.asarray(self.routing.inclusion(layer), dtype=float) for layer in range(self.layers)])
        rank_of = self.cost.rank_of_expert
        self.rank_experts = [np.flatnonzero(rank_of == r) for r in range(par.ep)]
        self.local = np.zeros(self.experts + 1, dtype=np.int64)   # global id -> local id (-1 -> -1 via the last slot)
        self.local[-1] = -1
        for ex in self.rank_experts:
            self.local[ex] = np.arange(ex.size)
        self.caches = [ExpertCache(self.layers, ex.size, capacity, off.policy, scope=off.scope, window=off.window,
                                   popularity=pop[:, ex], warm=True) for ex in self.rank_experts]
        self.unbounded = all(c.unbounded for c in self.caches)
        self.last_used = np.full((self.layers, self.experts), -(2**40), dtype=np.int64)
        self.steps_done = 0
        self.idle_w = idle_power_w(cost.device, context_resident=True)
        self._attention_share = self._attention_shares(cost)
        self.records = Columns(OFFLOAD_STEP_COLUMNS)
        self.totals = {"dram": np.zeros(par.ep), "flash": np.zeros(par.ep), "activation": np.zeros(par.ep)}
        self.prefetched = 0
        self.hidden_s = 0.0

    @staticmethod
    def _attention_shares(cost: StepCost) -> tuple[float, float]:
        """Share of a step's operator time in attention, for (prefill, decode) reference steps."""
        return attention_share(cost(Batch.prefill(1, 512))), attention_share(cost(Batch.decode(1, 1024)))

    # -- the engine's hooks -----------------------------------------------------------------
    def forget(self, key: int) -> None:
        """A sequence left the replica: drop its routing state."""
        self.stream.forget(key)

    def advance(self, plan: StepPlan, duration_s: float, power_w: float, start_s: float) -> tuple[float, float]:
        """Route the step of ``plan`` through the caches; return the step's (duration, power)
        with the misses' cost added (idle power over the added time)."""
        ids = self._ids(plan)
        if ids.shape[0] == 0:
            return duration_s, power_w
        extra, hits, misses, st = self._resolve(ids, plan, duration_s)
        self.records.append(replica=self.replica, pool=self.pool_index, start_s=start_s, hits=hits, misses=misses,
                            fetched_bytes=st.fetched_bytes, flash_bytes=float(st.flash_bytes.sum()),
                            cpu_experts=st.cpu_experts, cpu_s=st.cpu_s, offload_s=extra)
        if extra <= 0.0:
            return duration_s, power_w
        total = duration_s + extra
        return total, (power_w * duration_s + self.idle_w * extra) / total

    # -- internals ------------------------------------------------------------------------------
    def _ids(self, plan: StepPlan) -> np.ndarray:
        parts = [self.stream.ids(s.req.request_id, 1 + self.draft) for s in plan.decode]
        parts += [self.stream.ids(s.req.request_id, s.chunk) for s in plan.prefill if s.chunk > 0]
        if not parts:
            return np.zeros((0, self.layers, 1), dtype=np.int32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _resolve(self, ids: np.ndarray, plan: StepPlan, duration_s: float) -> tuple[float, int, int, OffloadStep]:
        E, L = self.experts, self.layers
        valid = ids >= 0
        flat = (np.arange(L)[None, :, None] * E + ids)[valid]
        counts = np.bincount(flat, minlength=L * E).reshape(L, E)
        hits = misses = 0
        lay, exp, tok = [], [], []
        for r, cache in enumerate(self.caches):
            local = self.local[ids] if len(self.caches) > 1 else ids
            if len(self.caches) > 1:
                local = np.where(self.cost.rank_of_expert[np.maximum(ids, 0)] == r, local, -1)
                local = np.where(valid, local, -1)
            res = cache.step(local)
            hits += int(res.hits.sum())
            misses += int(res.misses.sum())
            if res.miss_layer.size:
                lay.append(res.miss_layer)
                exp.append(self.rank_experts[r][res.miss_expert])
                tok.append(res.miss_tokens)
        layer = np.concatenate(lay) if lay else np.zeros(0, np.int64)
        expert = np.concatenate(exp) if exp else np.zeros(0, np.int64)
        tokens = np.concatenate(tok) if tok else np.zeros(0, np.int64)
        flash = self._from_flash(layer, expert)
        prefetched = np.zeros(layer.size, dtype=bool)
        pre = self.offload.prefetch
        if pre.enabled and layer.size:
            prefetched = self.rng.random(layer.size) < pre.accuracy
            wl, we = self._wrong_guesses(layer[~prefetched], counts)
            if wl.size:
                layer = np.concatenate([layer, wl])
                expert = np.concatenate([expert, we])
                tokens = np.concatenate([tokens, np.zeros(wl.size, np.int64)])
                flash = np.concatenate([flash, self._from_flash(wl, we)])
                prefetched = np.concatenate([prefetched, np.ones(wl.size, bool)])
        self.last_used[counts > 0] = self.steps_done
        self.steps_done += 1
        window = 0.0
        if pre.enabled:
            layer_s = duration_s / self.model_layers
            window = layer_s if pre.source == "predictor" else layer_s * self._attention_share[0 if plan.prefill else 1]
        st = self.cost.step(layer=layer, expert=expert, tokens=tokens, flash=flash, prefetched=prefetched,
                            gpu_layer_s=self.cost.gpu_layer_s(counts), window_s=window)
        self.totals["dram"] += st.dram_bytes
        self.totals["flash"] += st.flash_bytes
        self.totals["activation"] += st.activation_bytes
        self.prefetched += st.prefetched_experts
        self.hidden_s += st.hidden_s
        return st.time_s, hits, misses, st

    def _from_flash(self, layer: np.ndarray, expert: np.ndarray) -> np.ndarray:
        if self.offload.backing != "flash":
            return np.zeros(layer.size, dtype=bool)
        window = self.offload.flash.window_tokens
        if window <= 0:
            return np.ones(layer.size, dtype=bool)
        return self.last_used[layer, expert] < self.steps_done - window

    def _wrong_guesses(self, layers: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One wrong prefetch per mispredicted miss: a random expert of the layer that the step did
        not use and the cache did not hold; it enters the cache (after this step)."""
        out_l, out_e = [], []
        for lay, n in zip(*np.unique(layers, return_counts=True), strict=True):
            resident = np.zeros(self.experts, dtype=bool)
            for r, cache in enumerate(self.caches):
                resident[self.rank_experts[r]] = cache.resident(int(lay))
            cand = np.flatnonzero((counts[lay] == 0) & ~resident)
            if cand.size == 0:
                continue
            pick = self.rng.choice(cand, size=min(int(n), cand.size), replace=False)
            out_l.append(np.full(pick.size, lay, dtype=np.int64))
            out_e.append(pick)
            for r, cache in enumerate(self.caches):
                mine = pick[self.cost.rank_of_expert[pick] == r]
                if mine.size:
                    cache.insert(int(lay), self.local[mine])
        if not out_l:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(out_l), np.concatenate(out_e)

    def link_bytes(self) -> dict[tuple[str, str], float]:
        """Bytes the fetches, flash reads and CPU-expert activations put on each link so far."""
        t = self.totals
        return self.cost.link_bytes(t["dram"], t["flash"], t["activation"])


def attach_expert_tiers(sim: Simulation, seeds: np.random.SeedSequence) -> None:
    """Give every replica its expert tiers when the deployment offloads experts; each replica's
    generator is spawned from ``seeds`` here, after every other stream of the run."""
    sc = sim.sc
    if sc.deployment.experts.offload is None or sc.model.moe is None:
        return
    for pi, replicas in enumerate(sim.pools):
        for rep, child in zip(replicas, seeds.spawn(len(replicas)), strict=True):
            rep.tiers = ExpertTiers(sc, rep.pool, pi, rep.index, rep.cost, rep.first_device,
                                    np.random.default_rng(child), sim.coll)


def offload_stats(pools: list[list[Replica]], link_bytes: dict[tuple[str, str], float]) -> OffloadStats | None:
    """The run's expert-cache records (None without offload); adds the fetches', flash reads' and
    CPU-expert activations' bytes to ``link_bytes``."""
    tiers = [rep.tiers for replicas in pools for rep in replicas if rep.tiers is not None]
    if not tiers:
        return None
    for t in tiers:
        for edge, b in t.link_bytes().items():
            link_bytes[edge] = link_bytes.get(edge, 0.0) + b
    tables = [t.records.frozen() for t in tiers]
    steps = {k: np.concatenate([tb[k] for tb in tables]) for k in OFFLOAD_STEP_COLUMNS}
    order = np.lexsort((steps["replica"], steps["pool"], steps["start_s"]))
    first = {}
    for t in tiers:
        first.setdefault(t.pool_index, t.cached_experts)
    return OffloadStats(steps={k: v[order] for k, v in steps.items()}, policy=tiers[0].offload.policy,
                        backing=tiers[0].offload.backing, cached_experts=tuple(first[i] for i in sorted(first)),
                        prefetched_experts=sum(t.prefetched for t in tiers),
                        prefetch_hidden_s=sum(t.hidden_s for t in tiers))
