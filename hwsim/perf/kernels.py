"""Numba kernels of the operator cost model: plain numbers in, seconds / FLOP / bytes out.

Every argument is a float or int in SI units (seconds, bytes, FLOP, FLOP/s, bytes/s) or a
numpy ``int64`` array of token counts; no Python objects, so another ``@njit`` function (the
step cost) can call these directly. Each kernel has a pure-Python twin of the same name and
signature in :mod:`hwsim.perf.reference`; a test holds the two equal. ``numba`` is imported
only here (``NUMBA_DISABLE_JIT=1`` turns these into plain Python).

The model (fitted constants and their calibration live in :mod:`hwsim.perf.operators`):

* **roofline legs.** ``compute_s = padded FLOP / (peak * eff)``, ``memory_s = bytes /
  (bandwidth * eff_memory)``, blended as ``(compute_s**p + memory_s**p) ** (1/p)`` with
  ``p = sharpness``: far from the ridge point the longer leg hides the shorter one (the
  roofline), near it neither the loads nor the MMAs can be kept busy all the time (finite
  pipeline depth), so a kernel with equal legs takes ``2**(1/p)`` times either; ``p -> inf`` is
  the ideal roofline.
* **fixed costs.** ``latency_s`` is the kernel's own ramp-up and drain (first DRAM round trip,
  pipeline fill, epilogue, tail), paid inside the kernel; ``launch_s`` is the host/graph launch
  the caller passes (eager vs CUDA graph). ``overhead_s = latency_s + launch_s``.
* **GEMM tiles.** ``m`` is padded to ``tile_m`` rows (Hopper ``wgmma`` works on 64-row warpgroup
  tiles: the caller passes 64 for m <= 64 and 128 above, as DeepGEMM does). The tile width is
  picked from ``tile_n, tile_n - 8, ...`` (>= 16) as the one with the least padded work, the way
  a library's heuristic or autotuner would. Waves: ``tiles = ceil(m/tile_m) * ceil(n/tile_n)``,
  ``waves = ceil(tiles / num_sms)``; a partial last wave costs a full wave, so compute time is
  scaled by ``waves * num_sms / tiles``.
* **GEMM efficiency ramp with K.** Each output tile pays a fixed pipeline fill/drain and
  epilogue worth ``k_half`` elements of K, so ``eff = eff_compute * k / (k + k_half)``: skinny-K
  problems never reach the large-shape efficiency (DeepGEMM's K=512 rows reach half of the
  K=16384 rows' throughput).

Results come back as ``(time_s, flop, bytes_moved, compute_s, memory_s, overhead_s)``; the
``*_time_s`` functions return only ``time_s``.

>>> # 4096^3 bf16 on 128 SMs at 1 PFLOP/s: 32 x 32 = 1024 tiles = 8 full waves, no padding;
>>> # compute 2 * 4096^3 / 1e15 = 137.4 us hides memory 3 * 4096^2 * 2 B / 3 TB/s = 33.6 us
>>> # (no K ramp, no latency or launch, sharpness 64: a plain roofline)
>>> t = gemm_time_s(4096, 4096, 4096, 2.0, 2.0, 2.0, 1e15, 3e12, 1.0, 1.0, 128, 128, 128,
...                 0.0, 0.0, 0.0, 64.0)
>>> round(t * 1e6, 1)
137.4
"""

from __future__ import annotations

import numpy as np
from numba import njit

TILE_N_STEP = 8
"""Granularity of the tile widths tried (Hopper ``wgmma`` N is a multiple of 8)."""

TILE_N_MIN = 16
"""Narrowest tile width tried."""

Cost = tuple[float, float, float, float, float, float]
"""``(time_s, flop, bytes_moved, compute_s, memory_s, overhead_s)``."""

_ZERO: Cost = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@njit(cache=True)
def combine_legs(compute_s: float, memory_s: float, sharpness: float, latency_s: float,
                 launch_s: float) -> float:
    """``(c**p + m**p) ** (1/p) + latency_s + launch_s`` with ``p = sharpness`` (overflow-safe)."""
    longer = max(compute_s, memory_s)
    blended = 0.0
    if longer > 0.0:
        ratio = min(compute_s, memory_s) / longer
        blended = longer * (1.0 + ratio ** sharpness) ** (1.0 / sharpness)
    return blended + latency_s + launch_s


@njit(cache=True)
def pick_tile_n(m_tiles: int, n: int, num_sms: int, tile_n: int) -> int:
    """The tile width in ``tile_n, tile_n - 8, ... >= 16`` with the least padded work.

    Padded work per unit of ``tile_m * k`` is ``waves * num_sms * width``; ties go to the wider
    tile. Taking a minimum over widths keeps GEMM time non-decreasing in ``m``.
    """
    best_w = tile_n
    best_work = -1.0
    w = tile_n
    while True:
        tiles = m_tiles * ((n + w - 1) // w)
        waves = (tiles + num_sms - 1) // num_sms
        work = float(waves) * num_sms * w
        if best_work < 0.0 or work < best_work:
            best_work = work
            best_w = w
        w -= TILE_N_STEP
        if w < TILE_N_MIN:
            break
    return best_w


@njit(cache=True)
def _tiled_compute_s(m_tiles: int, n: int, k: int, peak_flop_per_s: float, eff_compute: float,
                     num_sms: int, tile_m: int, tile_n: int, k_half: float) -> float:
    """Compute leg of a tiled GEMM: full waves of ``tile_m x width`` tiles over K."""
    width = pick_tile_n(m_tiles, n, num_sms, tile_n)
    tiles = m_tiles * ((n + width - 1) // width)
    waves = (tiles + num_sms - 1) // num_sms
    padded_flop = 2.0 * waves * num_sms * tile_m * width * k
    eff = eff_compute * k / (k + k_half)
    return padded_flop / (peak_flop_per_s * eff)


@njit(cache=True)
def gemm_cost(m: int, n: int, k: int, a_bytes: float, b_bytes: float, c_bytes: float,
              peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
              eff_memory: float, num_sms: int, tile_m: int, tile_n: int, launch_s: float,
              k_half: float, latency_s: float, sharpness: float) -> Cost:
    """Cost of ``C[m, n] = A[m, k] @ B[k, n]``: A at ``a_bytes``/elem, B (weights) at
    ``b_bytes``, C at ``c_bytes``. FLOP = ``2 m n k`` (the real ones); the compute leg runs on
    padded tiles and full waves. Zero-sized problems cost nothing (no kernel).
    """
    if m <= 0 or n <= 0 or k <= 0:
        return _ZERO
    m_tiles = (m + tile_m - 1) // tile_m
    compute_s = _tiled_compute_s(m_tiles, n, k, peak_flop_per_s, eff_compute, num_sms,
                                 tile_m, tile_n, k_half)
    moved = float(m) * k * a_bytes + float(k) * n * b_bytes + float(m) * n * c_bytes
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, 2.0 * m * n * k, moved, compute_s, memory_s, latency_s + launch_s)


@njit(cache=True)
def gemm_time_s(m: int, n: int, k: int, a_bytes: float, b_bytes: float, c_bytes: float,
                peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                eff_memory: float, num_sms: int, tile_m: int, tile_n: int, launch_s: float,
                k_half: float, latency_s: float, sharpness: float) -> float:
    """Seconds for :func:`gemm_cost`."""
    return gemm_cost(m, n, k, a_bytes, b_bytes, c_bytes, peak_flop_per_s, mem_bytes_per_s,
                     eff_compute, eff_memory, num_sms, tile_m, tile_n, launch_s, k_half,
                     latency_s, sharpness)[0]


@njit(cache=True)
def grouped_gemm_cost(tokens_per_expert: np.ndarray, n: int, k: int, a_bytes: float,
                      b_bytes: float, c_bytes: float, peak_flop_per_s: float,
                      mem_bytes_per_s: float, eff_compute: float, eff_memory: float, num_sms: int,
                      tile_m: int, tile_n: int, masked: bool, launch_s: float, k_half: float,
                      latency_s: float, sharpness: float) -> Cost:
    """Cost of an MoE grouped GEMM: expert ``e`` multiplies its ``tokens_per_expert[e]`` rows
    by its own ``k x n`` weight.

    Contiguous layout (``masked`` false, prefill): each expert's rows are padded to a multiple
    of ``tile_m`` (the tile-padding waste of small groups). Masked layout (``masked`` true,
    decode): every touched expert is padded to the largest group, rounded up to ``tile_m``.
    Weights of every expert with at least one token are read once; experts with no token cost
    nothing. FLOP counts the real tokens; waves run over all tiles of all experts.
    """
    touched = 0
    total = 0
    largest = 0
    m_tiles = 0
    for e in range(tokens_per_expert.shape[0]):
        t = tokens_per_expert[e]
        if t > 0:
            touched += 1
            total += t
            largest = max(largest, t)
            m_tiles += (t + tile_m - 1) // tile_m
    if touched == 0 or n <= 0 or k <= 0:
        return _ZERO
    if masked:
        m_tiles = touched * ((largest + tile_m - 1) // tile_m)
    compute_s = _tiled_compute_s(m_tiles, n, k, peak_flop_per_s, eff_compute, num_sms,
                                 tile_m, tile_n, k_half)
    moved = (float(total) * k * a_bytes + float(touched) * k * n * b_bytes
             + float(total) * n * c_bytes)
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, 2.0 * total * n * k, moved, compute_s, memory_s, latency_s + launch_s)


@njit(cache=True)
def grouped_gemm_time_s(tokens_per_expert: np.ndarray, n: int, k: int, a_bytes: float,
                        b_bytes: float, c_bytes: float, peak_flop_per_s: float,
                        mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                        num_sms: int, tile_m: int, tile_n: int, masked: bool, launch_s: float,
                        k_half: float, latency_s: float, sharpness: float) -> float:
    """Seconds for :func:`grouped_gemm_cost`."""
    return grouped_gemm_cost(tokens_per_expert, n, k, a_bytes, b_bytes, c_bytes, peak_flop_per_s,
                             mem_bytes_per_s, eff_compute, eff_memory, num_sms, tile_m, tile_n,
                             masked, launch_s, k_half, latency_s, sharpness)[0]


@njit(cache=True)
def _attended_prefix(x: int, window_tokens: int, chunked: bool) -> float:
    """Sum over positions ``p < x`` of the keys position ``p`` attends to (causal).

    Full attention: ``p + 1``; sliding window ``w``: ``min(p + 1, w)``; chunked ``w``:
    ``p mod w + 1`` (attention within aligned chunks of ``w`` tokens).
    """
    xf = float(x)
    if window_tokens <= 0:
        return xf * (xf + 1.0) / 2.0
    w = float(window_tokens)
    if chunked:
        full = float(x // window_tokens)
        r = float(x % window_tokens)
        return full * w * (w + 1.0) / 2.0 + r * (r + 1.0) / 2.0
    if x <= window_tokens:
        return xf * (xf + 1.0) / 2.0
    return w * (w + 1.0) / 2.0 + (xf - w) * w


@njit(cache=True)
def _kv_span(context: int, new: int, window_tokens: int, chunked: bool) -> int:
    """Cached plus new tokens whose K/V the ``new`` queries read (once each)."""
    end = context + new
    if window_tokens <= 0:
        return end
    if chunked:
        return context % window_tokens + new
    return end - max(0, context - window_tokens + 1)


@njit(cache=True)
def _attention_cost(pairs: float, moved: float, heads: int, d_qk: int, d_v: int, peak_flop_per_s: float,
                    mem_bytes_per_s: float, eff_compute: float, eff_memory: float, launch_s: float,
                    latency_s: float, sharpness: float) -> Cost:
    """Attention cost from its causal (query, key) pairs and bytes: QK^T and PV FLOPs."""
    if pairs <= 0.0:
        return _ZERO
    flop = 2.0 * heads * pairs * (d_qk + d_v)
    compute_s = flop / (peak_flop_per_s * eff_compute)
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, flop, moved, compute_s, memory_s, latency_s + launch_s)


@njit(cache=True)
def attention_prefill_cost(new_tokens: np.ndarray, context_tokens: np.ndarray, heads: int,
                           d_qk: int, d_v: int, kv_bytes_per_token: float,
                           qo_bytes_per_token: float, window_tokens: int, chunked: bool,
                           peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                           eff_memory: float, launch_s: float, latency_s: float,
                           sharpness: float) -> Cost:
    """FlashAttention-style prefill over sequences with ``new_tokens[i]`` queries placed after
    ``context_tokens[i]`` cached tokens.

    FLOP = ``2 * heads * pairs * (d_qk + d_v)`` (QK^T and PV), where ``pairs`` counts causal
    (query, key) pairs: ``new * context + new * (new + 1) / 2`` without a window (the square
    part of the new tokens is halved by the causal mask), capped by a sliding or chunked window
    (``window_tokens`` > 0). Bytes: K/V of the attended span read once per sequence at
    ``kv_bytes_per_token`` (all KV heads on this device: GQA reads each KV head once however
    many query heads share it) plus Q in and O out at ``qo_bytes_per_token``. The kernel is
    assumed to fill the SMs (no wave quantisation); new K/V writes are a separate op.
    """
    pairs = 0.0
    moved = 0.0
    for i in range(new_tokens.shape[0]):
        q = new_tokens[i]
        if q <= 0:
            continue
        c = context_tokens[i]
        pairs += (_attended_prefix(c + q, window_tokens, chunked)
                  - _attended_prefix(c, window_tokens, chunked))
        moved += float(_kv_span(c, q, window_tokens, chunked)) * kv_bytes_per_token
        moved += float(q) * qo_bytes_per_token
    return _attention_cost(pairs, moved, heads, d_qk, d_v, peak_flop_per_s, mem_bytes_per_s, eff_compute,
                           eff_memory, launch_s, latency_s, sharpness)


@njit(cache=True)
def attention_prefill_time_s(new_tokens: np.ndarray, context_tokens: np.ndarray, heads: int,
                             d_qk: int, d_v: int, kv_bytes_per_token: float,
                             qo_bytes_per_token: float, window_tokens: int, chunked: bool,
                             peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                             eff_memory: float, launch_s: float, latency_s: float,
                             sharpness: float) -> float:
    """Seconds for :func:`attention_prefill_cost`."""
    return attention_prefill_cost(new_tokens, context_tokens, heads, d_qk, d_v, kv_bytes_per_token,
                                  qo_bytes_per_token, window_tokens, chunked, peak_flop_per_s,
                                  mem_bytes_per_s, eff_compute, eff_memory, launch_s, latency_s,
                                  sharpness)[0]


@njit(cache=True)
def attention_decode_cost(kv_lens: np.ndarray, query_tokens: int, heads: int, d_qk: int, d_v: int,
                          kv_bytes_per_token: float, qo_bytes_per_token: float, window_tokens: int,
                          chunked: bool, peak_flop_per_s: float, mem_bytes_per_s: float,
                          eff_compute: float, eff_memory: float, launch_s: float, latency_s: float,
                          sharpness: float) -> Cost:
    """Decode attention: each sequence's ``query_tokens`` newest tokens (1, or more with MTP /
    speculative decoding) attend to its ``kv_lens[i]`` tokens (including themselves).

    KV-read bound: bytes = sum of attended ``kv_len * kv_bytes_per_token`` (plus Q/O), with a
    compute ceiling. For MLA decode (absorbed, FlashMLA) the caller passes ``d_qk = kv_lora +
    rope``, ``d_v = kv_lora`` and the latent bytes per token: all query heads share one latent
    KV, so many heads (or MTP tokens) make decode compute-bound.
    """
    pairs = 0.0
    moved = 0.0
    for i in range(kv_lens.shape[0]):
        kv = kv_lens[i]
        if kv <= 0:
            continue
        q = min(query_tokens, kv)
        c = kv - q
        pairs += (_attended_prefix(kv, window_tokens, chunked)
                  - _attended_prefix(c, window_tokens, chunked))
        moved += float(_kv_span(c, q, window_tokens, chunked)) * kv_bytes_per_token
        moved += float(q) * qo_bytes_per_token
    return _attention_cost(pairs, moved, heads, d_qk, d_v, peak_flop_per_s, mem_bytes_per_s, eff_compute,
                           eff_memory, launch_s, latency_s, sharpness)


@njit(cache=True)
def attention_decode_time_s(kv_lens: np.ndarray, query_tokens: int, heads: int, d_qk: int,
                            d_v: int, kv_bytes_per_token: float, qo_bytes_per_token: float,
                            window_tokens: int, chunked: bool, peak_flop_per_s: float,
                            mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                            launch_s: float, latency_s: float, sharpness: float) -> float:
    """Seconds for :func:`attention_decode_cost`."""
    return attention_decode_cost(kv_lens, query_tokens, heads, d_qk, d_v, kv_bytes_per_token,
                                 qo_bytes_per_token, window_tokens, chunked, peak_flop_per_s,
                                 mem_bytes_per_s, eff_compute, eff_memory, launch_s, latency_s,
                                 sharpness)[0]


@njit(cache=True)
def memory_bound_cost(bytes_moved: float, flop: float, mem_bytes_per_s: float, eff_memory: float,
                      peak_flop_per_s: float, launch_s: float, latency_s: float) -> Cost:
    """Streaming kernel (element-wise ops, norms, router + top-k, sampling, embedding lookup):
    ``max(bytes / (bw * eff), flop / peak) + latency_s + launch_s``. Nothing to do costs nothing.
    """
    if bytes_moved <= 0.0 and flop <= 0.0:
        return _ZERO
    memory_s = bytes_moved / (mem_bytes_per_s * eff_memory)
    compute_s = flop / peak_flop_per_s
    time_s = max(compute_s, memory_s) + latency_s + launch_s
    return (time_s, flop, bytes_moved, compute_s, memory_s, latency_s + launch_s)


@njit(cache=True)
def memory_bound_time_s(bytes_moved: float, flop: float, mem_bytes_per_s: float,
                        eff_memory: float, peak_flop_per_s: float, launch_s: float,
                        latency_s: float) -> float:
    """Seconds for :func:`memory_bound_cost`."""
    return memory_bound_cost(bytes_moved, flop, mem_bytes_per_s, eff_memory, peak_flop_per_s,
                             launch_s, latency_s)[0]


def as_tokens(values: object) -> np.ndarray:
    """Token counts as the contiguous ``int64`` array the kernels take (one compiled variant)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.int64).reshape(-1))
    if arr.size and arr.min() < 0:
        raise ValueError(f"token counts must be >= 0, got {int(arr.min())}")
    return arr


__all__ = [
    "TILE_N_MIN", "TILE_N_STEP", "as_tokens", "attention_decode_cost", "attention_decode_time_s",
    "attention_prefill_cost", "attention_prefill_time_s", "combine_legs", "gemm_cost",
    "gemm_time_s", "grouped_gemm_cost", "grouped_gemm_time_s", "memory_bound_cost",
    "memory_bound_time_s", "pick_tile_n",
]
