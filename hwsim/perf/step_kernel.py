"""One compiled pass over a step's operator plan (see :mod:`hwsim.perf.step`).

A plan is a table of operators, one row each: its kind, where its token count comes from,
and its fixed kernel arguments (shapes, peaks, efficiencies, launch cost) resolved once per
deployment. :func:`eval_plan` evaluates every row for one batch with the operator kernels of
:mod:`hwsim.perf.kernels`, in one call, so a step costs one dispatch from Python. Its pure-Python
twin is ``eval_plan.py_func`` (the same code, interpreted); a test holds the two equal and
checks rows against the object-level operators.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hwsim.perf import kernels

Cost = tuple[float, float, float, float, float, float]

GEMM, GROUPED, ATTN_PREFILL, ATTN_DECODE, MEMORY, COMM = 0, 1, 2, 3, 4, 5
"""Operator kinds (column ``kind`` of a plan)."""

# Token sources: which count of the batch drives an operator (column ``source``).
SRC_RANK_TOKENS = 0      # tokens through the layers on the busiest attention-DP rank
SRC_RANK_LOGITS = 1      # tokens needing logits on that rank
SRC_EXPERT_TOKENS = 2    # tokens per local expert on the busiest expert-parallel rank
SRC_DISPATCH_TOKENS = 3  # tokens a device sends to the MoE dispatch
SRC_EXPERT_ROWS = 4      # routed (token, expert) rows a device's experts receive
SRC_STAGE_TOKENS = 5     # tokens of the replica crossing a pipeline boundary
NUM_SOURCES = 6

NUM_ARGS = 18
"""Fixed arguments per row (unused ones are zero; the last one is the row's multiplier within
its group); their meaning depends on the kind:

GEMM / GROUPED: n, k, a_bytes, b_bytes, c_bytes, peak, bw, eff_compute, eff_memory, num_sms,
    tile_n, launch_s, k_half, latency_s, sharpness, local_experts (GROUPED), -, -
ATTN_*: heads, d_qk, d_v, kv_bytes_per_token, qo_bytes_per_token, window, chunked, peak, bw,
    eff_compute, eff_memory, launch_s, latency_s, sharpness, query_tokens (decode), -, -, -
MEMORY: bytes_per_token, flop_per_token, bw, eff_memory, peak, launch_s, latency_s, fixed_bytes, ...
COMM: alpha_s, beta_s_per_byte, bytes_per_token, mode (0 always, 1 prefill steps, 2 decode-only),
    sm_share (the fraction of the device's SMs the communication kernel occupies while it runs)
"""

ATTN_SIDE, FFN_SIDE = 0, 1
"""Stage of a row within its layer (column ``stage`` of a plan's table): compute before the
FFN's first communication (norms, attention, router) and the communication that ends it
(EP dispatch, the attention all-reduce) are on the attention side; the FFN (experts, shared
experts) and the communication after it (EP combine, FFN all-reduces) on the FFN side."""


@njit(cache=True)
def _row(kind: int, source: int, a: np.ndarray, src: np.ndarray, prefill_new: np.ndarray,
         prefill_ctx: np.ndarray, decode_kv: np.ndarray, masked: bool) -> Cost:
    if kind == GEMM:
        m = int(np.ceil(src[source]))
        tile_m = 64 if m <= 64 else 128
        return kernels.gemm_cost(m, int(a[0]), int(a[1]), a[2], a[3], a[4], a[5], a[6], a[7], a[8],
                                 int(a[9]), tile_m, int(a[10]), a[11], a[12], a[13], a[14])
    if kind == GROUPED:
        per_expert = int(np.ceil(src[source]))
        local = int(a[15])
        if per_expert <= 0 or local <= 0:
            return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        # fewer token-expert picks than local experts (small decode batches): at most that many
        # experts are touched, so only their weights are read
        touched = local if src[source] >= 1.0 else min(local, int(np.ceil(src[source] * local - 1e-9)))
        tokens = np.full(touched, per_expert, np.int64)
        tile_m = 64 if masked else 128
        return kernels.grouped_gemm_cost(tokens, int(a[0]), int(a[1]), a[2], a[3], a[4], a[5], a[6],
                                         a[7], a[8], int(a[9]), tile_m, int(a[10]), masked, a[11],
                                         a[12], a[13], a[14])
    if kind == ATTN_PREFILL:
        return kernels.attention_prefill_cost(prefill_new, prefill_ctx, int(a[0]), int(a[1]), int(a[2]),
                                              a[3], a[4], int(a[5]), a[6] > 0.5, a[7], a[8], a[9], a[10],
                                              a[11], a[12], a[13])
    if kind == ATTN_DECODE:
        return kernels.attention_decode_cost(decode_kv, int(a[14]), int(a[0]), int(a[1]), int(a[2]),
                                             a[3], a[4], int(a[5]), a[6] > 0.5, a[7], a[8], a[9], a[10],
                                             a[11], a[12], a[13])
    if kind == MEMORY:
        tokens = src[source]
        if tokens <= 0.0:
            return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        return kernels.memory_bound_cost(a[0] * tokens + a[7], a[1] * tokens, a[2], a[3], a[4], a[5], a[6])
    # COMM: alpha-beta fitted on the collective model for this group and traffic pattern;
    # a[3] = 1: only in steps with prefill (DeepEP normal mode), 2: only in decode-only steps
    mode = int(a[3])
    nbytes = a[2] * src[source]
    if nbytes <= 0.0 or (mode == 1 and masked) or (mode == 2 and not masked):
        return (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    t = a[0] + a[1] * nbytes
    return (t, 0.0, nbytes, 0.0, 0.0, 0.0)


@njit(cache=True)
def eval_plan(kinds: np.ndarray, sources: np.ndarray, args: np.ndarray, src: np.ndarray,
              prefill_new: np.ndarray, prefill_ctx: np.ndarray, decode_kv: np.ndarray,
              masked: bool) -> np.ndarray:
    """Cost of every row of a plan: an ``(rows, 6)`` array of (time_s, flop, bytes, compute_s,
    memory_s, overhead_s), per single occurrence of the operator."""
    out = np.zeros((kinds.shape[0], 6))
    fill_plan(out, kinds, sources, args, src, prefill_new, prefill_ctx, decode_kv, masked)
    return out


@njit(cache=True)
def fill_plan(out: np.ndarray, kinds: np.ndarray, sources: np.ndarray, args: np.ndarray, src: np.ndarray,
              prefill_new: np.ndarray, prefill_ctx: np.ndarray, decode_kv: np.ndarray, masked: bool) -> None:
    """:func:`eval_plan` into a given array (no allocation)."""
    n = kinds.shape[0]
    for i in range(n):
        r = _row(kinds[i], sources[i], args[i], src, prefill_new, prefill_ctx, decode_kv, masked)
        for j in range(6):
            out[i, j] = r[j]


@njit(cache=True)
def overlapped_stage(compute: float, comm: float, sm_share: float) -> float:
    """Time of ``compute`` seconds of work run beside ``comm`` seconds of communication whose
    kernels hold ``sm_share`` of the SMs: while the communication runs the compute proceeds at
    ``1 - sm_share`` of its rate, then at full rate (``max(comm, compute + sm_share comm)``)."""
    if comm <= 0.0:
        return compute
    return max(comm, compute + sm_share * comm)


@njit(cache=True)
def layer_times(out: np.ndarray, groups: np.ndarray, comm: np.ndarray, stage: np.ndarray, args: np.ndarray,
                mult: np.ndarray, counts: np.ndarray, num_groups: int, overlap: int,
                overlap_efficiency: float) -> tuple[np.ndarray, float]:
    """Time of each group of rows (head, dense layers, MoE layers, draft) after overlap.

    ``overlap``: 0 none (compute + communication); 1 two micro-batches (the rows were costed on
    one of two equal micro-batches); 2 fine-grained (``max + (1 - eff) min``).

    Two micro-batches X and Y alternate through a layer in four stages, each one micro-batch's
    compute beside the other's communication (DeepSeek's prefill schedule)::

        attention(Y) | dispatch(X);  ffn(X) | dispatch(Y);  ffn(Y) | combine(X);  attention(X') | combine(Y)

    so a layer takes ``s(A, D) + s(F, D) + s(F, C) + s(A, C)`` with ``A``/``F`` the attention-
    and FFN-side compute, ``D``/``C`` the communication after each, and ``s`` the
    :func:`overlapped_stage` time (communication kernels that hold SMs slow the compute beside
    them). Without communication that is ``2 (A + F)``.
    Returns per-group ``(time per occurrence, compute sum, comm sum)``.
    """
    res = np.zeros((num_groups, 3))
    side = np.zeros((num_groups, 4))   # attention compute, FFN compute, comm after each
    share = np.zeros((num_groups, 2))  # largest SM share of the communication after each side
    for i in range(out.shape[0]):
        g = groups[i]
        t = out[i, 0] * mult[i]
        st = 1 if stage[i] == FFN_SIDE else 0
        if comm[i]:
            res[g, 2] += t
            side[g, 2 + st] += t
            if t > 0.0 and args[i, 4] > share[g, st]:
                share[g, st] = args[i, 4]
        else:
            res[g, 1] += t
            side[g, st] += t
    for g in range(num_groups):
        c, m = res[g, 1], res[g, 2]
        if overlap == 1:
            a, f, d, cb = side[g, 0], side[g, 1], side[g, 2], side[g, 3]
            res[g, 0] = (overlapped_stage(a, d, share[g, 0]) + overlapped_stage(f, d, share[g, 0])
                         + overlapped_stage(f, cb, share[g, 1]) + overlapped_stage(a, cb, share[g, 1]))
        elif overlap == 2:
            res[g, 0] = max(c, m) + (1.0 - overlap_efficiency) * min(c, m)
        else:
            res[g, 0] = c + m
    total = 0.0
    for g in range(num_groups):
        total += res[g, 0] * counts[g]
    return res, total


@njit(cache=True)
def expected_max_load(mean: float, bins: int) -> float:
    """Expected max/mean of multinomial loads over ``bins`` equal bins with ``mean`` per bin
    (Gaussian approximation of the largest of ``bins`` counts: ``mean + sqrt(2 ln bins mean)``)."""
    if bins <= 1 or mean <= 0.0:
        return 1.0
    return 1.0 + math.sqrt(2.0 * math.log(bins) / mean)


@njit(cache=True)
def batch_sources(new: np.ndarray, ctx: np.ndarray, done: np.ndarray, kv: np.ndarray, dp: int, tp: int,
                  query: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Token sources of a batch (all but the expert ones), and the busiest attention-DP rank's
    sequences. Sequences go to DP ranks round-robin; the rank with the most new tokens is the
    busiest."""
    r = 0
    if dp > 1:
        loads = np.zeros(dp)
        for i in range(new.shape[0]):
            loads[i % dp] += new[i]
        for j in range(kv.shape[0]):
            loads[j % dp] += query
        r = int(np.argmax(loads))
        new, ctx, done, kv = new[r::dp], ctx[r::dp], done[r::dp], kv[r::dp]
    rank_tokens = float(new.sum()) + kv.shape[0] * query
    src = np.zeros(NUM_SOURCES)
    src[SRC_RANK_TOKENS] = rank_tokens
    src[SRC_RANK_LOGITS] = float(kv.shape[0] * query + done.sum())
    src[SRC_DISPATCH_TOKENS] = rank_tokens / tp
    src[SRC_STAGE_TOKENS] = rank_tokens
    return src, new, ctx, kv + query


@njit(cache=True)
def step_total(out: np.ndarray, table: np.ndarray, args: np.ndarray, counts: np.ndarray, new: np.ndarray,
               ctx: np.ndarray, done: np.ndarray, kv: np.ndarray, dp: int, tp: int, ep: int, query: int,
               k_real: float, slots: int, imbalance: float, overlap: int, overlap_efficiency: float,
               draft_tokens: int) -> float:
    """Evaluate a whole step into ``out`` (per-row costs); return the step's latency in seconds.

    ``table`` packs the integer columns of a plan (kind, source, group, communication, draft,
    stage);
    the row multipliers sit in the last column of ``args`` (few arrays: cheap dispatch).
    """
    kinds, sources, groups, comm, draft = table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4]
    stage = table[:, 5]
    mult = args[:, NUM_ARGS - 1]
    num_groups = counts.shape[0]
    if overlap == 1:
        if new.shape[0] + kv.shape[0] >= 2:
            new, ctx, done, kv = new[::2], ctx[::2], done[::2], kv[::2]
        else:  # one sequence cannot be split into two micro-batches
            overlap = 0
    src, n_r, c_r, kv_r = batch_sources(new, ctx, done, kv, dp, tp, query)
    total = float(new.sum()) + kv.shape[0] * query
    if slots > 0:  # imbalance < 0: uniform routing (expected busiest of the EP ranks)
        imb = imbalance if imbalance > 0.0 else expected_max_load(total * k_real / ep, ep)
        src[SRC_EXPERT_TOKENS] = total * k_real / slots * imb
        src[SRC_EXPERT_ROWS] = total * k_real / ep * imb
    masked = new.shape[0] == 0
    fill_plan(out, kinds, sources, args, src, n_r, c_r, kv_r, masked)
    if draft_tokens > 0 and kv.shape[0] > 0:
        one = np.zeros(0, np.int64)
        dsrc, _, _, _ = batch_sources(one, one, np.zeros(0, np.bool_), kv, dp, tp, 1)
        dsrc[SRC_EXPERT_TOKENS] = src[SRC_EXPERT_TOKENS] / query
        dsrc[SRC_EXPERT_ROWS] = src[SRC_EXPERT_ROWS] / query
        dout = eval_plan(kinds, sources, args, dsrc, one, one, kv_r, True)
        for i in range(out.shape[0]):
            if draft[i]:
                for j in range(6):
                    out[i, j] = dout[i, j]
    _, latency = layer_times(out, groups, comm, stage, args, mult, counts, num_groups, overlap, overlap_efficiency)
    return latency
