"""Closed-form steady state of a deployment, without simulation (``hwsim estimate``).

A replica keeps ``B`` sequences running (the scheduler's ``max_seqs``, capped by what the KV
cache holds at ``input + output`` tokens each, or a given batch). In steady state:

* **unified pools** (continuous batching with chunked prefill): every step decodes the ``B``
  running sequences at their mean context ``input + output / 2`` and, to replace the ``B /
  output`` sequences that finish per step, prefills ``B x input / output`` prompt tokens (in
  chunks of the scheduler's ``chunked_prefill``, at most ``max_batched_tokens`` per step).
  A prompt runs on one attention-DP rank and all ranks wait for the busiest at the MoE
  all-to-all; requests reach the ranks in turn, so the busiest rank runs the ceiling of its
  share of whole chunks, not an even share of tokens.
  TPOT is that mixed step's time; TTFT is the steps a prompt needs (``ceil(input / chunk)``)
  times the step time; output tokens/s is ``B x tokens_per_step / step``.
* **disaggregated pools**: a prefill step processes ``max_batched_tokens // input`` prompts
  (at least one); TTFT is that step plus the KV transfer to a decode device; the decode pool
  runs pure decode steps of ``B`` sequences. The system serves the smaller of the prefill
  pool's and the decode pool's request rates.

No queueing: TTFT and TPOT are for an unloaded replica at the steady batch; the serving
simulator adds queueing and the trace's burstiness.

**Expert offload** (``experts.offload``): the steady step also pays its *expected* expert-cache
misses (:mod:`hwsim.perf.offload_estimate`: Che's approximation for LRU-like caches, pinned
hottest experts for static/LFU, the simulator's per-miss costs); the simulator replays the
misses step by step instead.

**Closed-loop clients** (``concurrency``, as ``trtllm-bench --concurrency`` or a benchmark's
``--max-concurrency``): ``N`` users each send their next request when the last one finishes.
The running batch is at most ``N / replicas`` per replica (still capped by ``max_seqs`` and
the KV cache; the rest wait), and by Little's law a request takes ``N / requests_per_s``, so
each user sees ``output_tokens_per_s / N`` output tokens per second, prefill and waiting
included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.perf.batch import Batch
from hwsim.perf.collectives import Collectives
from hwsim.perf.memory import Footprint, footprint, max_concurrency
from hwsim.perf.offload import OffloadCost
from hwsim.perf.offload_estimate import OffloadExpectation, attention_share, expected_offload
from hwsim.perf.power import idle_power_w
from hwsim.perf.step import StepBreakdown, StepCost
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment, Pool
from hwsim.spec.hardware import Device
from hwsim.spec.model import Model


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolEstimate:
    """Steady state of one pool (all its replicas)."""

    pool: str
    role: str
    device: Device
    devices: int
    batch: int
    kv_limited_batch: int
    footprint: Footprint
    step: StepBreakdown
    step_s: float
    requests_per_s: float
    input_tokens_per_s: float
    output_tokens_per_s: float
    ttft_s: float | None
    tpot_s: float | None
    power_w: float
    usd_per_s: float | None
    cost: StepCost = field(repr=False, compare=False)  # the pool's step cost, for further queries
    offload: OffloadExpectation | None = None          # expected expert-cache misses (experts.offload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """Steady state of a deployment: per pool, and the system they form."""

    input_tokens: int
    output_tokens: int
    pools: tuple[PoolEstimate, ...]
    requests_per_s: float
    output_tokens_per_s: float
    input_tokens_per_s: float
    ttft_s: float
    tpot_s: float
    devices: int
    power_w: float
    usd_per_s: float | None
    concurrency: int | None = None

    @property
    def output_tokens_per_s_per_device(self) -> float:
        return self.output_tokens_per_s / self.devices

    @property
    def tokens_per_s_per_user(self) -> float:
        """Output tokens per second one user sees: ``1 / TPOT`` during decode, or with
        closed-loop clients ``output tokens/s / concurrency`` (prefill and waiting included)."""
        if self.concurrency is not None:
            return self.output_tokens_per_s / self.concurrency
        return 1.0 / self.tpot_s if self.tpot_s > 0 else float("inf")

    @property
    def request_latency_s(self) -> float:
        """Seconds from a request's arrival to its last token: ``TTFT + (output - 1) TPOT``, or
        with closed-loop clients ``concurrency / requests_per_s`` (Little's law)."""
        if self.concurrency is not None:
            return self.concurrency / self.requests_per_s if self.requests_per_s > 0 else float("inf")
        return self.ttft_s + (self.output_tokens - 1) * self.tpot_s

    @property
    def joules_per_output_token(self) -> float:
        return self.power_w / self.output_tokens_per_s if self.output_tokens_per_s > 0 else float("inf")

    @property
    def usd_per_million_output_tokens(self) -> float | None:
        if self.usd_per_s is None or self.output_tokens_per_s <= 0:
            return None
        return self.usd_per_s / self.output_tokens_per_s * 1e6


def _batch_size(pool: Pool, fp: Footprint, inp: int, out: int, batch: int | None) -> tuple[int, int]:
    kv_limit = max_concurrency(fp, inp, out, per="replica")
    cap = pool.scheduler.max_seqs if batch is None else batch
    return max(1, min(cap, kv_limit)), kv_limit


def _mixed_batch(pool: Pool, b: int, inp: int, out: int) -> Batch:
    """One steady-state step of a unified pool (see the module docstring).

    A prompt is prefilled on one attention-DP rank, in chunks of up to ``chunked_prefill``
    tokens, and every rank waits for the busiest one at the MoE all-to-all. Requests reach the
    ranks in turn (SGLang's default round-robin DP balancing; TensorRT-LLM sends a request to the
    rank with the fewest), so each rank starts the floor or the ceiling of its share of the
    step's chunks: the busiest runs ``ceil(chunks / dp)`` whole chunks (at most its share of
    the step's token budget), the rest spreads over the other ranks.
    """
    s = pool.scheduler
    dp = pool.parallelism.attention_dp
    budget = max(0, s.max_batched_tokens - b)
    prefill_tokens = min(b * inp / out, budget)
    if prefill_tokens < 1:
        return Batch.decode(b, inp + out // 2)
    chunk = min(s.chunked_prefill_tokens or inp, inp)
    if dp == 1:
        n = math.ceil(prefill_tokens / chunk)
        new = np.full(n, max(1, round(prefill_tokens / n)), np.int64)
    else:
        whole = float(chunk * math.ceil(prefill_tokens / chunk / dp - 1e-9))
        busiest = min(max(whole, prefill_tokens / dp), budget / dp, prefill_tokens)
        rest = (prefill_tokens - busiest) / (dp - 1)
        new = np.array([max(1, round(busiest))] + ([max(1, round(rest))] * (dp - 1) if rest >= 1 else []),
                       np.int64)
    cached = np.clip(inp // 2 - new // 2, 0, None).astype(np.int64)
    done = np.zeros(new.shape[0], bool)
    done[: max(0, min(new.shape[0], round(b / out)))] = True
    return Batch(prefill_new_tokens=new, prefill_cached_tokens=cached, prefill_completes=done,
                 decode_kv_tokens=np.full(b, inp + out // 2, np.int64))


def _offload(cluster: Cluster, model: Model, dep: Deployment, pool: Pool, fp: Footprint, batch: Batch,
             bd: StepBreakdown, coll: Collectives, inclusion: np.ndarray | None) -> OffloadExpectation | None:
    """Expected expert-cache misses of the steady step (:mod:`hwsim.perf.offload_estimate`)."""
    moe = model.moe
    if dep.experts.offload is None or moe is None:
        return None
    cost = OffloadCost(cluster, model, dep, pool, collectives=coll)
    layers = model.num_moe_layers
    stage_layers = -(-layers // pool.parallelism.pp)
    capacity = (fp.cached_experts or 0) // max(stage_layers, 1)
    inc = np.full(moe.num_experts, moe.real_experts_per_token / moe.num_experts) if inclusion is None else inclusion
    tokens = float(batch.prefill_new_tokens.sum()) + batch.num_decode * (1 + dep.speculative.tokens)
    return expected_offload(cost, tokens=tokens, inclusion=inc, capacity=capacity, layers=layers,
                            layer_time_s=bd.time_s / model.num_layers, attention_share=attention_share(bd))


def pool_estimate(cluster: Cluster, model: Model, dep: Deployment, pool: Pool, inp: int, out: int,
                  batch: int | None, coll: Collectives, concurrency: int | None = None,
                  expert_inclusion: np.ndarray | None = None) -> PoolEstimate:
    """Steady state of one pool at ``inp`` / ``out`` tokens per request (``batch`` sequences per
    replica, or the scheduler's cap limited by the KV cache and by ``concurrency`` closed-loop
    clients spread over the replicas), its collectives costed with ``coll`` (share one across
    many pools: building it is the expensive part). With ``experts.offload`` the step pays its
    expected expert-cache misses, under routing ``expert_inclusion`` (uniform when omitted)."""
    step = StepCost(cluster, model, dep, pool, collectives=coll)
    fp = footprint(model, dep, pool, step.device)
    b, kv_limit = _batch_size(pool, fp, inp, out, batch)
    if concurrency is not None and batch is None:
        b = max(1, min(b, math.ceil(concurrency / pool.replicas)))
    spec = dep.speculative
    reps = pool.replicas
    if pool.role == "prefill":
        per_step = max(1, pool.scheduler.max_batched_tokens // inp)
        work = Batch.prefill(per_step, inp)
    elif pool.role == "decode":
        work = Batch.decode(b, inp + out // 2)
    else:
        work = _mixed_batch(pool, b, inp, out)
    bd = step(work)
    off = _offload(cluster, model, dep, pool, fp, work, bd, coll, expert_inclusion)
    extra = off.time_s if off is not None else 0.0
    time_s, interval_s = bd.time_s + extra, bd.interval_s + extra
    if pool.role == "prefill":
        rate = reps * per_step / interval_s
        ttft, tpot, tokens_out = time_s, None, 0.0
    elif pool.role == "decode":
        tokens_out = reps * b * spec.tokens_per_step / interval_s
        rate, ttft, tpot = tokens_out / out, None, time_s / spec.tokens_per_step
    else:
        tokens_out = reps * b * spec.tokens_per_step / interval_s
        chunk = pool.scheduler.chunked_prefill_tokens or inp
        rate = tokens_out / out
        ttft, tpot = math.ceil(inp / chunk) * time_s, time_s / spec.tokens_per_step
    # power: the device waits at its context-resident idle draw for fetched experts (as the simulator)
    idle = idle_power_w(step.device, context_resident=True)
    power = (bd.power_w * bd.time_s + idle * extra) / time_s if extra > 0 else bd.power_w
    return PoolEstimate(
        pool=pool.name, role=pool.role, device=step.device, devices=pool.devices, batch=b, kv_limited_batch=kv_limit, footprint=fp,
        step=bd, step_s=time_s, requests_per_s=rate, input_tokens_per_s=rate * inp,
        output_tokens_per_s=rate * out if pool.role != "prefill" else 0.0, ttft_s=ttft, tpot_s=tpot,
        power_w=power * pool.devices, usd_per_s=cluster.usd_per_s_of(pool.device_range), cost=step,
        offload=off)


def _kv_transfer_s(coll: Collectives, model: Model, dep: Deployment, pools: tuple[Pool, ...], inp: int) -> float:
    pre = next(p for p in pools if p.role == "prefill")
    dec = next(p for p in pools if p.role == "decode")
    nbytes = model.kv_bytes(inp, dep.dtypes.kv)
    return coll.p2p(pre.first_device, dec.first_device, nbytes, detail=False).time_s


def estimate(cluster: Cluster, model: Model, deployment: Deployment, *, input_tokens: int, output_tokens: int,
             batch: int | None = None, concurrency: int | None = None,
             expert_inclusion: np.ndarray | None = None) -> Estimate:
    """Steady-state throughput, latency, memory, power and cost of ``deployment`` (with
    ``concurrency`` closed-loop clients when given; see the module docstring).
    ``expert_inclusion`` (``(E,)`` or ``(moe_layers, E)``: the chance that a token picks each
    expert, from the routing model) prices expert-cache misses under skewed routing; uniform
    when omitted."""
    if input_tokens < 1 or output_tokens < 1:
        raise ValueError("input and output tokens must be >= 1")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    coll = Collectives(cluster)
    pools = tuple(pool_estimate(cluster, model, deployment, p, input_tokens, output_tokens, batch, coll,
                                concurrency if p.role != "prefill" else None, expert_inclusion)
                  for p in deployment.pools)
    prices = [p.usd_per_s for p in pools]
    usd = None if any(x is None for x in prices) else float(sum(x for x in prices if x is not None))
    power = sum(p.power_w for p in pools)
    devices = sum(p.devices for p in pools)
    if deployment.disaggregated:
        pre = next(p for p in pools if p.role == "prefill")
        dec = next(p for p in pools if p.role == "decode")
        rate = min(pre.requests_per_s, dec.requests_per_s)
        ttft = (pre.ttft_s or 0.0) + _kv_transfer_s(coll, model, deployment, deployment.pools, input_tokens)
        tpot = dec.tpot_s or 0.0
    else:
        rate = sum(p.requests_per_s for p in pools)
        ttft = max(p.ttft_s or 0.0 for p in pools)
        tpot = max(p.tpot_s or 0.0 for p in pools)
    return Estimate(input_tokens=input_tokens, output_tokens=output_tokens, pools=pools, requests_per_s=rate,
                    output_tokens_per_s=rate * output_tokens, input_tokens_per_s=rate * input_tokens,
                    ttft_s=ttft, tpot_s=tpot, devices=devices, power_w=power, usd_per_s=usd,
                    concurrency=concurrency)
