"""The engine limits ``trtllm-bench throughput`` picks when the command line gives none.

TensorRT-LLM's benchmark sizes ``max_batch_size`` and ``max_num_tokens`` from a memory
heuristic (``tensorrt_llm/bench/build/tuning.py``, ``calc_engine_setting`` and
``finetune_setting``; applied to the PyTorch backend by ``bench/benchmark/utils/general.py``,
``get_settings``). The perf-overview page does not print the values, so the validation rows
that replay those runs recompute them the same way:

* KV bytes per token ``2 x layers x max(tp, Hkv) x head_dim x kv bytes`` (each TP rank keeps
  at least one KV head); the weights take ``params x weight bytes``; the KV cache gets
  ``fraction x (tp x pp x device GiB - weights)``;
* requests that fit at the dataset's mean ISL + OSL, capped at 4096 and divided by ``pp``,
  rounded up to 64/32 (below 256), 128 (below 1024) or 256;
* tokens ``min(requests x (1 + ISL / OSL), 32768)``, rounded up to 256 (at least 2048, below
  4096), 512 (below 8192) or 1024;
* without chunked prefill, at least the longest prompt plus the batch.

Each attention-DP rank of the PyTorch backend runs its own scheduler with these limits, so a
replica of ``attention_dp`` ranks admits ``attention_dp`` times as much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hwsim.spec.deployment import SchedulerLimits
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.model import Model
from hwsim.spec.scenario import Scenario

GIB = 1024**3
MAX_REQUESTS = 4096       # "Cap total batch size to avoid decoder buffer size becoming too large."
MAX_TOKENS = 32768        # "Cap num tokens to avoid TRT activation buffer becoming too large."


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchLimits:
    """``max_batch_size`` and ``max_num_tokens`` of one rank, and the requests that fit."""

    max_batch_size: int
    max_num_tokens: int
    kv_cache_max_requests: float


# finetune_setting's rounding: (below this, round up to a multiple of this) tiers, and a floor
BATCH_ROUNDING = ((256, 32), (1024, 128), (math.inf, 256)), 64
TOKEN_ROUNDING = ((4096, 256), (8192, 512), (math.inf, 1024)), 2048


def _round_up(raw: float, rounding: tuple[tuple[tuple[float, int], ...], int]) -> int:
    """``raw`` rounded up to its tier's multiple, at least the floor (the floor only binds in
    the first tier: the later tiers start above it)."""
    tiers, floor = rounding
    step = next(step for below, step in tiers if raw < below)
    return max(floor, step * math.ceil(raw / step))


def bench_limits(model: Model, *, tp: int, pp: int, device_bytes: float, weight_dtype: str, kv_dtype: str,
                 input_tokens: int, output_tokens: int, max_input_tokens: int | None = None,
                 kv_fraction: float = 0.95, chunked_prefill: bool = False) -> BenchLimits:
    """trtllm-bench's heuristic limits for ``model`` on ``tp x pp`` devices of ``device_bytes``."""
    if min(tp, pp, input_tokens, output_tokens) < 1 or device_bytes <= 0 or not 0 < kv_fraction <= 1:
        raise ValueError("tp, pp, lengths and device memory must be positive, kv_fraction in (0, 1]")
    att = model.attention
    kv_heads = max(tp, att.num_kv_heads)
    layers = model.num_layers * model.attention_per_layer
    token_gib = 2 * layers * kv_heads * att.head_dim * bytes_per_elem(kv_dtype) / GIB
    weights_gib = model.total_params * bytes_per_elem(weight_dtype) / GIB
    available = device_bytes / GIB * tp * pp - weights_gib
    if available <= 0:
        raise ValueError(f"the weights ({weights_gib:.1f} GiB) do not fit on {tp * pp} devices")
    requests = kv_fraction * available / (token_gib * (input_tokens + output_tokens))
    raw_bs = min(requests, MAX_REQUESTS) / pp
    raw_tokens = min(raw_bs * (1 + input_tokens / output_tokens), MAX_TOKENS)
    batch, tokens = _round_up(raw_bs, BATCH_ROUNDING), _round_up(raw_tokens, TOKEN_ROUNDING)
    if not chunked_prefill:
        tokens = max(tokens, (max_input_tokens or input_tokens) + batch)
    return BenchLimits(max_batch_size=batch, max_num_tokens=tokens, kv_cache_max_requests=requests)


def with_bench_limits(s: Scenario, *, input_tokens: int, output_tokens: int) -> Scenario:
    """``s`` with every pool's ``max_seqs`` / ``max_batched_tokens`` set as trtllm-bench sets them.

    The command's ``--tp`` is a stage's devices (``attention_dp x tp``: with attention DP the
    MoE models run ``--tp 8 --ep 8`` and each rank's attention is data-parallel); the limits
    apply per attention-DP rank.
    """
    d = s.deployment
    pools = []
    for pool in d.pools:
        par = pool.parallelism
        device = s.cluster.nodes[0].device
        lim = bench_limits(s.model, tp=par.stage_devices, pp=par.pp, device_bytes=device.hbm_bytes,
                           weight_dtype=d.dtypes.weights, kv_dtype=d.dtypes.kv, input_tokens=input_tokens,
                           output_tokens=output_tokens, kv_fraction=d.kv_cache_free_fraction or 0.95,
                           chunked_prefill=pool.scheduler.chunked_prefill_tokens is not None)
        ranks = par.attention_dp
        sched: SchedulerLimits = replace(pool.scheduler, max_seqs=lim.max_batch_size * ranks,
                                         max_batched_tokens=lim.max_num_tokens * ranks)
        pools.append(replace(pool, scheduler=sched))
    return replace(s, deployment=replace(d, pools=tuple(pools)))


__all__ = ["BenchLimits", "bench_limits", "with_bench_limits"]
