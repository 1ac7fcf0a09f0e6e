"""``simulate``: replay a request trace on a deployment with SimPy.

Processes: one arrival process streaming the trace (never held in memory), one engine per
replica (see :mod:`hwsim.sim.engine`), and one KV-transfer process per request moving from a
prefill to a decode pool (transfers leaving one prefill replica share its link: they queue).
Every random draw (routing, speculative acceptance) comes from generators spawned from one
seed, so the same inputs and seed give the same result.

With ``concurrency`` the trace's timestamps are ignored and ``N`` closed-loop clients send its
requests in order, as benchmark clients at a fixed concurrency do (``trtllm-bench
--concurrency``, ``vllm bench serve --max-concurrency``): ``N`` start at time 0 and each
finished (or rejected) request is replaced at once by the next, with no think time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import simpy

from hwsim.perf.collectives import Collectives
from hwsim.perf.memory import footprint
from hwsim.perf.power import idle_power_w, power_limit_w
from hwsim.perf.step import StepCost
from hwsim.sim.engine import Seq, StepPlan
from hwsim.sim.expert_tiers import attach_expert_tiers, offload_stats
from hwsim.sim.metrics import (
    REQUEST_COLUMNS,
    STEP_COLUMNS,
    Columns,
    LinkUse,
    PoolInfo,
    Rejection,
    SimResult,
)
from hwsim.sim.replica import Replica
from hwsim.sim.router import ROUTERS
from hwsim.workload.request import Request

if TYPE_CHECKING:
    from hwsim.spec.scenario import Scenario

Progress = Callable[[float, int], None]


class Simulation:
    """Wires the processes of one run; :func:`simulate` is the entry point."""

    def __init__(self, scenario: Scenario, *, seed: int, router: str, imbalance_sampler_factory=None,
                 power_cap_w: float | None = None) -> None:
        self.power_cap_w = power_cap_w
        self.sc = scenario
        self.env = simpy.Environment()
        self.seed = seed
        seeds = np.random.SeedSequence(seed)
        self.coll = Collectives(scenario.cluster)
        self.requests = Columns(REQUEST_COLUMNS)
        self.steps = Columns(STEP_COLUMNS)
        self.rejections: list[Rejection] = []
        self.live: dict[int, Seq] = {}
        self.events = 0
        self.comm_s = 0.0
        self.busy_s = 0.0
        self.link_bytes: dict[tuple[str, str], float] = {}
        self.step_tokens = [[0, 0] for _ in scenario.deployment.pools]  # tokens of steps with / without prefill
        # sampled expert loads accumulate here (see hwsim.sim.routing)
        self.expert_load: np.ndarray | None = getattr(imbalance_sampler_factory, "expert_load", None)
        self.sampling = imbalance_sampler_factory
        self.ep_link_bytes: dict[tuple[str, str], float] = {}
        self.rng = np.random.default_rng(seeds.spawn(1)[0])
        self.pools: list[list[Replica]] = []
        self.infos: list[PoolInfo] = []
        self._build_pools(seeds, imbalance_sampler_factory)
        attach_expert_tiers(self, seeds)  # after every other stream: offload draws change nothing else
        self.router = ROUTERS.get(router, "--router")
        self.entry = next(i for i, p in enumerate(scenario.deployment.pools) if p.role != "decode")
        self.decode_pool = next((i for i, p in enumerate(scenario.deployment.pools) if p.role == "decode"), None)
        self.links = {id(r): simpy.Resource(self.env, capacity=1) for r in self.pools[self.entry]}
        self._rr = 0
        self._closed: Iterator[Request] | None = None  # closed-loop clients' request source
        self._issued = 0
        self._limit: int | None = None
        self._progress: Progress | None = None
        self._concurrency = 0

    # -- construction --------------------------------------------------------------------------
    def _build_pools(self, seeds: np.random.SeedSequence, imbalance_factory) -> None:
        sc = self.sc
        for pi, pool in enumerate(sc.deployment.pools):
            cost = StepCost(sc.cluster, sc.model, sc.deployment, pool, collectives=self.coll, cap_w=self.power_cap_w)
            power_limit_w(cost.device, self.power_cap_w)  # an unsettable cap fails before the run
            fp = footprint(sc.model, sc.deployment, pool, cost.device)
            blocks = fp.kv_blocks * fp.sequence_groups
            sampler = imbalance_factory(pool) if imbalance_factory is not None else None
            replicas = []
            for k, child in enumerate(seeds.spawn(pool.replicas)):
                first = pool.first_device + k * pool.parallelism.devices
                replicas.append(Replica(self.env, k, pi, pool, cost, blocks, np.random.default_rng(child), sampler,
                                        first))
                self.env.process(self._engine(replicas[-1]))
            self.pools.append(replicas)
            self.infos.append(PoolInfo(
                name=pool.name, role=pool.role, replicas=pool.replicas, devices_per_replica=pool.parallelism.devices,
                device=cost.device.name, kv_blocks_per_replica=blocks, kv_block_tokens=fp.kv_block_tokens,
                hbm_bytes_per_device=fp.capacity_bytes, weights_bytes_per_device=fp.weights_bytes,
                usd_per_s=sc.cluster.usd_per_s_of(pool.device_range), idle_power_w=idle_power_w(cost.device, context_resident=True)))

    # -- arrivals ------------------------------------------------------------------------------
    def arrivals(self, requests: Iterable[Request], max_requests: int | None, progress: Progress | None):
        n = 0
        for req in requests:
            if max_requests is not None and n >= max_requests:
                break
            if req.arrival_s > self.env.now:
                yield self.env.timeout(req.arrival_s - self.env.now)
            n += 1
            self.events += 1
            self._admit(req)
            if progress is not None and n % 256 == 0:
                progress(self.env.now, n)
        if progress is not None:
            progress(self.env.now, n)

    def closed_loop(self, requests: Iterable[Request], concurrency: int, max_requests: int | None,
                    progress: Progress | None):
        """Start ``concurrency`` clients (see the module docstring); finishes re-issue."""
        self._closed, self._limit, self._progress = iter(requests), max_requests, progress
        self._concurrency = concurrency
        for _ in range(concurrency):
            self._issue()
        yield self.env.timeout(0)

    def _issue(self) -> None:
        """The next request of a closed-loop client, arriving now (a rejected one is replaced)."""
        assert self._closed is not None
        while self._limit is None or self._issued < self._limit:
            req = next(self._closed, None)
            if req is None:
                break
            self._issued += 1
            self.events += 1
            if self._progress is not None and self._issued % 256 == 0:
                self._progress(self.env.now, self._issued)
            if self._admit(replace(req, arrival_s=self.env.now)):
                return

    def _admit(self, req: Request) -> bool:
        reason = self._reject_reason(req)
        if reason is not None:
            self.rejections.append(Rejection(request_id=req.request_id, reason=reason))
            self._record(Seq(req=req, prompt=req.input_tokens), replica=-1, status=2)
            return False
        seq = Seq(req=req, prompt=req.input_tokens)
        self.live[id(seq)] = seq
        replicas = self.pools[self.entry]
        self.router(replicas, seq, self).add(seq)
        return True

    def _reject_reason(self, req: Request) -> str | None:
        total = req.input_tokens + req.output_tokens
        limit = self.sc.model.max_context_tokens
        if total > limit:
            return f"needs {total} tokens; the model's context window is {limit}"
        for replicas in self.pools:
            cap = replicas[0].kv_tokens
            if total > cap:
                return f"needs {total} tokens of KV; a {replicas[0].pool.name} replica holds {cap}"
        return None

    # -- engines -------------------------------------------------------------------------------
    def _engine(self, rep: Replica):
        env = self.env
        while True:
            plan = rep.scheduler.plan()
            if plan.empty:
                rep.wake = env.event()
                yield rep.wake
                rep.wake = None
                continue
            batch = plan.batch()
            imbalance = rep.step_imbalance(batch.new_tokens)
            duration = rep.cost.time_s(batch, imbalance)
            power, comm_s = rep.cost.last_activity(batch, duration)
            if rep.tiers is not None:
                duration, power = rep.tiers.advance(plan, duration, power, env.now)
            start = env.now
            prefill_tokens = plan.prefill_tokens
            for s in plan.prefill:
                if math.isnan(s.first_scheduled_s):
                    s.first_scheduled_s = start
            yield env.timeout(duration)
            self.events += 1
            self.comm_s += comm_s
            self.busy_s += duration
            mode = 0 if plan.prefill else 1
            self.step_tokens[rep.pool_index][mode] += batch.new_tokens
            self._complete(rep, plan)
            sched = rep.scheduler
            self.steps.append(replica=rep.index, pool=rep.pool_index, start_s=start, duration_s=duration,
                              prefill_tokens=prefill_tokens, decode_seqs=len(plan.decode),
                              running_seqs=len(sched.running), waiting_seqs=len(sched.waiting),
                              kv_blocks_used=rep.kv.used, imbalance=imbalance or 1.0, power_w=power)

    def _complete(self, rep: Replica, plan: StepPlan) -> None:
        if plan.lazy:  # a decode run's step: its tokens are owed until the run's first finish
            for s in rep.scheduler.advance():
                self._finish(rep, s)
            return
        now = self.env.now
        for s in plan.prefill:
            s.prefilled += s.chunk
            s.chunk = 0
            if s.decoding:
                if s.req.prefix_blocks:
                    rep.prefix.insert(s.req.prefix_blocks)
                self._emit(s, now, 1)
                if rep.pool.role == "prefill" and not s.done:
                    self.env.process(self._transfer(rep, s))
                elif s.done:
                    self._finish(rep, s)
        spec = rep.cost.deployment.speculative
        if spec.tokens:
            for s in plan.decode:
                self._emit(s, now, 1 + self._accepted(spec.tokens, spec.acceptance))
                if s.done:
                    self._finish(rep, s)
            return
        for s in plan.decode:  # one token each: _emit inlined, this loop runs per sequence per step
            if s.first_token_s != s.first_token_s:  # NaN: no token yet
                s.first_token_s = now
            generated = s.generated + 1
            if generated < s.req.output_tokens:
                s.generated = generated
            else:
                s.generated = s.req.output_tokens
                self._finish(rep, s)

    def _accepted(self, drafted: int, acceptance: float) -> int:
        n = 0
        while n < drafted and self.rng.random() < acceptance:
            n += 1
        return n

    def _emit(self, s: Seq, now: float, tokens: int) -> None:
        if math.isnan(s.first_token_s):
            s.first_token_s = now
        s.generated = min(s.req.output_tokens, s.generated + tokens)

    def _finish(self, rep: Replica, s: Seq) -> None:
        rep.scheduler.finish(s)
        if rep.tiers is not None:
            rep.tiers.forget(s.req.request_id)
        self.live.pop(id(s), None)
        self._record(s, replica=rep.index, status=0, finish_s=self.env.now)
        if self._closed is not None:
            self._issue()

    # -- disaggregation ------------------------------------------------------------------------
    def _transfer(self, src: Replica, s: Seq):
        assert self.decode_pool is not None
        dst = min(self.pools[self.decode_pool], key=lambda r: (r.scheduler.outstanding_tokens(), r.index))
        nbytes = self.sc.model.kv_bytes(s.prefilled, self.sc.deployment.dtypes.kv)
        with self.links[id(src)].request() as slot:
            yield slot
            cost = self.coll.p2p(src.first_device, dst.first_device, nbytes)
            yield self.env.timeout(cost.time_s)
        self.events += 1
        for edge, b in cost.link_bytes.items():
            self.link_bytes[edge] = self.link_bytes.get(edge, 0.0) + b
        src.scheduler.detach(s)
        if src.tiers is not None:
            src.tiers.forget(s.req.request_id)
        dst.add(s)

    # -- records -------------------------------------------------------------------------------
    def _record(self, s: Seq, *, replica: int, status: int, finish_s: float = float("nan")) -> None:
        r = s.req
        self.requests.append(request_id=r.request_id, replica=replica, arrival_s=r.arrival_s,
                             first_scheduled_s=s.first_scheduled_s, first_token_s=s.first_token_s, finish_s=finish_s,
                             input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                             generated_tokens=s.generated, cached_tokens=s.cached, preemptions=s.preemptions,
                             status=status)

    def _collective_link_bytes(self) -> None:
        """Add the EP all-to-all and TP all-reduce bytes of every step to ``link_bytes``.

        Under a fixed traffic pattern each link's bytes are linear in the step's tokens, so the
        per-token traffic of one replica is measured once per pool and mode (DeepEP normal with
        prefill, low-latency without) and scaled by the tokens the pool's steps processed; the
        pattern is the uniform-routing one, and the replica's links stand for its copies. When the
        expert sampler can cost the EP part under the run's skewed routing and the pool's
        placement (``ep_link_bytes``, see :mod:`hwsim.sim.routing`), that replaces the uniform
        EP pattern and is also kept apart in ``ep_link_bytes`` for the hotspot table.
        """
        from hwsim.perf.batch import Batch
        from hwsim.perf.step import link_traffic
        from hwsim.spec.dtypes import bytes_per_elem

        ref = 1024
        placed = hasattr(self.sampling, "ep_link_bytes") and self.sc.model.moe is not None
        token_bytes = self.sc.model.hidden_size * bytes_per_elem(self.sc.deployment.dtypes.activations)
        for pi, replicas in enumerate(self.pools):
            cost = replicas[0].cost
            # an all-gather exchange moves every token to every rank whatever the routing
            skewed = placed and cost.pool.parallelism.ep > 1 and self.sc.deployment.experts.exchange != "allgather"
            for mode, batch in ((0, Batch.prefill(1, ref)), (1, Batch.decode(ref, ref))):
                tokens = self.step_tokens[pi][mode]
                if tokens == 0:
                    continue
                for edge, b in link_traffic(cost, batch, ep=not skewed).items():
                    self.link_bytes[edge] = self.link_bytes.get(edge, 0.0) + b * tokens / ref
            if skewed:
                tokens_by_mode = {"normal": float(self.step_tokens[pi][0]), "low-latency": float(self.step_tokens[pi][1])}
                for edge, b in self.sampling.ep_link_bytes(cost.pool, tokens_by_mode, token_bytes).items():
                    self.link_bytes[edge] = self.link_bytes.get(edge, 0.0) + b
                    self.ep_link_bytes[edge] = self.ep_link_bytes.get(edge, 0.0) + b

    def _ep_links(self) -> tuple[LinkUse, ...]:
        """The EP bytes per link with what the link is, busiest first."""
        graph = self.sc.cluster.graph()
        rows = [LinkUse(src=u, dst=v, kind=str(graph.edges[u, v].get("kind", "")),
                        bandwidth_bytes_per_s=float(graph.edges[u, v]["bandwidth_bytes_per_s"]), bytes=b)
                for (u, v), b in self.ep_link_bytes.items() if b > 0]
        return tuple(sorted(rows, key=lambda r: (-r.bytes, r.src, r.dst)))

    def result(self, wall_s: float) -> SimResult:
        for replicas in self.pools:
            for rep in replicas:
                rep.scheduler.sync()
        for s in list(self.live.values()):
            self._record(s, replica=-1, status=1)
        self.live.clear()
        self._collective_link_bytes()
        offload = offload_stats(self.pools, self.link_bytes)
        busy = self.busy_s
        return SimResult(requests=self.requests.frozen(), steps=self.steps.frozen(), pools=tuple(self.infos),
                         sim_time_s=self.env.now, wall_time_s=wall_s, events=self.events, seed=self.seed,
                         rejections=tuple(self.rejections), link_bytes=dict(sorted(self.link_bytes.items())),
                         expert_load=None if self.expert_load is None else self.expert_load.copy(),
                         comm_fraction=self.comm_s / busy if busy > 0 else 0.0,
                         rank_loads=self.sampling.rank_loads() if hasattr(self.sampling, "rank_loads") else (),
                         ep_links=self._ep_links(), offload=offload,
                         metadata={} if self._closed is None else {"concurrency": self._concurrency})


def simulate(scenario: Scenario, requests: Iterable[Request], *, seed: int = 0, duration_s: float | None = None,
             max_requests: int | None = None, router: str = "round-robin", progress: Progress | None = None,
             imbalance_sampler_factory=None, power_cap_w: float | None = None,
             concurrency: int | None = None) -> SimResult:
    """Replay ``requests`` (an iterable, streamed) on ``scenario``; return the frozen result.

    ``duration_s`` stops the clock (requests still queued or running are reported
    unfinished); otherwise the run ends when every admitted request has finished.
    ``power_cap_w`` caps every device: compute-bound steps stretch when the cap binds.
    ``concurrency`` sends the requests from that many closed-loop clients instead of at their
    timestamps (see the module docstring).
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    sim = Simulation(scenario, seed=seed, router=router, imbalance_sampler_factory=imbalance_sampler_factory,
                     power_cap_w=power_cap_w)
    t0 = time.perf_counter()
    if concurrency is not None:
        arrivals = sim.env.process(sim.closed_loop(requests, concurrency, max_requests, progress))
    else:
        arrivals = sim.env.process(sim.arrivals(requests, max_requests, progress))
    if duration_s is not None:
        sim.env.run(until=duration_s)
    else:
        sim.env.run(until=arrivals)
        while sim.live and sim.env.peek() != math.inf:
            sim.env.step()
    return sim.result(time.perf_counter() - t0)
