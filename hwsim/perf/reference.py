"""Pure-Python twins of :mod:`hwsim.perf.kernels`, written for reading, not for speed.

Same names, same signatures, same results (a test compares them on many random inputs). The
formulas are spelled out step by step; :mod:`hwsim.perf.kernels` documents the model.
"""

from __future__ import annotations

from collections.abc import Sequence

TILE_N_STEP = 8
TILE_N_MIN = 16

Cost = tuple[float, float, float, float, float, float]
"""``(time_s, flop, bytes_moved, compute_s, memory_s, overhead_s)``."""

_ZERO: Cost = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def combine_legs(compute_s: float, memory_s: float, sharpness: float, latency_s: float,
                 launch_s: float) -> float:
    """The two legs blended as a p-norm (p = sharpness), plus the fixed costs."""
    longer, shorter = max(compute_s, memory_s), min(compute_s, memory_s)
    if longer <= 0.0:
        return latency_s + launch_s
    blended = longer * float((1.0 + (shorter / longer) ** sharpness) ** (1.0 / sharpness))
    return blended + latency_s + launch_s


def pick_tile_n(m_tiles: int, n: int, num_sms: int, tile_n: int) -> int:
    """Width in ``tile_n, tile_n - 8, ... >= 16`` minimising ``waves * num_sms * width``."""
    widths = [tile_n]
    while widths[-1] - TILE_N_STEP >= TILE_N_MIN:
        widths.append(widths[-1] - TILE_N_STEP)
    best_w, best_work = tile_n, None
    for w in widths:
        waves = _ceil_div(m_tiles * _ceil_div(n, w), num_sms)
        work = float(waves) * num_sms * w
        if best_work is None or work < best_work:
            best_w, best_work = w, work
    return best_w


def _tiled_compute_s(m_tiles: int, n: int, k: int, peak_flop_per_s: float, eff_compute: float,
                     num_sms: int, tile_m: int, tile_n: int, k_half: float) -> float:
    width = pick_tile_n(m_tiles, n, num_sms, tile_n)
    tiles = m_tiles * _ceil_div(n, width)
    waves = _ceil_div(tiles, num_sms)
    padded_flop = 2.0 * waves * num_sms * tile_m * width * k   # every SM busy in every wave
    efficiency = eff_compute * k / (k + k_half)                 # per-tile fill/drain ~ k_half of K
    return padded_flop / (peak_flop_per_s * efficiency)


def gemm_cost(m: int, n: int, k: int, a_bytes: float, b_bytes: float, c_bytes: float,
              peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
              eff_memory: float, num_sms: int, tile_m: int, tile_n: int, launch_s: float,
              k_half: float, latency_s: float, sharpness: float) -> Cost:
    if m <= 0 or n <= 0 or k <= 0:
        return _ZERO
    m_tiles = _ceil_div(m, tile_m)
    compute_s = _tiled_compute_s(m_tiles, n, k, peak_flop_per_s, eff_compute, num_sms, tile_m,
                                 tile_n, k_half)
    a = float(m) * k * a_bytes          # activations in
    b = float(k) * n * b_bytes          # weights in
    c = float(m) * n * c_bytes          # output out
    moved = a + b + c
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, 2.0 * m * n * k, moved, compute_s, memory_s, latency_s + launch_s)


def gemm_time_s(m: int, n: int, k: int, a_bytes: float, b_bytes: float, c_bytes: float,
                peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                eff_memory: float, num_sms: int, tile_m: int, tile_n: int, launch_s: float,
                k_half: float, latency_s: float, sharpness: float) -> float:
    return gemm_cost(m, n, k, a_bytes, b_bytes, c_bytes, peak_flop_per_s, mem_bytes_per_s,
                     eff_compute, eff_memory, num_sms, tile_m, tile_n, launch_s, k_half,
                     latency_s, sharpness)[0]


def grouped_gemm_cost(tokens_per_expert: Sequence[int], n: int, k: int, a_bytes: float,
                      b_bytes: float, c_bytes: float, peak_flop_per_s: float,
                      mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                      num_sms: int, tile_m: int, tile_n: int, masked: bool, launch_s: float,
                      k_half: float, latency_s: float, sharpness: float) -> Cost:
    groups = [int(t) for t in tokens_per_expert if t > 0]      # untouched experts cost nothing
    if not groups or n <= 0 or k <= 0:
        return _ZERO
    total = sum(groups)
    if masked:                                                  # every group padded to the largest
        m_tiles = len(groups) * _ceil_div(max(groups), tile_m)
    else:                                                       # each group padded to tile_m
        m_tiles = sum(_ceil_div(t, tile_m) for t in groups)
    compute_s = _tiled_compute_s(m_tiles, n, k, peak_flop_per_s, eff_compute, num_sms, tile_m,
                                 tile_n, k_half)
    a = float(total) * k * a_bytes
    b = float(len(groups)) * k * n * b_bytes                    # each touched expert read once
    c = float(total) * n * c_bytes
    moved = a + b + c
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, 2.0 * total * n * k, moved, compute_s, memory_s, latency_s + launch_s)


def grouped_gemm_time_s(tokens_per_expert: Sequence[int], n: int, k: int, a_bytes: float,
                        b_bytes: float, c_bytes: float, peak_flop_per_s: float,
                        mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                        num_sms: int, tile_m: int, tile_n: int, masked: bool, launch_s: float,
                        k_half: float, latency_s: float, sharpness: float) -> float:
    return grouped_gemm_cost(tokens_per_expert, n, k, a_bytes, b_bytes, c_bytes, peak_flop_per_s,
                             mem_bytes_per_s, eff_compute, eff_memory, num_sms, tile_m, tile_n,
                             masked, launch_s, k_half, latency_s, sharpness)[0]


def _attended(position: int, window_tokens: int, chunked: bool) -> int:
    """Keys the query at ``position`` sees (causal)."""
    if window_tokens <= 0:
        return position + 1
    if chunked:
        return position % window_tokens + 1
    return min(position + 1, window_tokens)


def _attended_prefix(x: int, window_tokens: int, chunked: bool) -> float:
    """Sum of :func:`_attended` over positions ``0 .. x-1``, in closed form."""
    if window_tokens <= 0 or (not chunked and x <= window_tokens):
        return x * (x + 1) / 2.0
    w = window_tokens
    if chunked:
        full, r = divmod(x, w)
        return full * w * (w + 1) / 2.0 + r * (r + 1) / 2.0
    return w * (w + 1) / 2.0 + (x - w) * float(w)


def _kv_span(context: int, new: int, window_tokens: int, chunked: bool) -> int:
    """Distinct key positions read by queries ``context .. context+new-1``."""
    first_query, end = context, context + new
    if window_tokens <= 0:
        first_key = 0
    elif chunked:
        first_key = first_query - first_query % window_tokens
    else:
        first_key = max(0, first_query - window_tokens + 1)
    return end - first_key


def _attention(queries: list[tuple[int, int]], heads: int, d_qk: int, d_v: int,
               kv_bytes_per_token: float, qo_bytes_per_token: float, window_tokens: int,
               chunked: bool, peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
               eff_memory: float, launch_s: float, latency_s: float, sharpness: float) -> Cost:
    """``queries``: (tokens already cached, new queries) per sequence."""
    pairs, moved = 0.0, 0.0
    for c, q in queries:
        if q <= 0:
            continue
        pairs += (_attended_prefix(c + q, window_tokens, chunked)
                  - _attended_prefix(c, window_tokens, chunked))
        moved += float(_kv_span(c, q, window_tokens, chunked)) * kv_bytes_per_token
        moved += float(q) * qo_bytes_per_token
    if pairs <= 0.0:
        return _ZERO
    flop = 2.0 * heads * pairs * (d_qk + d_v)                   # QK^T (d_qk) and PV (d_v)
    compute_s = flop / (peak_flop_per_s * eff_compute)
    memory_s = moved / (mem_bytes_per_s * eff_memory)
    time_s = combine_legs(compute_s, memory_s, sharpness, latency_s, launch_s)
    return (time_s, flop, moved, compute_s, memory_s, latency_s + launch_s)


def attention_prefill_cost(new_tokens: Sequence[int], context_tokens: Sequence[int], heads: int,
                           d_qk: int, d_v: int, kv_bytes_per_token: float,
                           qo_bytes_per_token: float, window_tokens: int, chunked: bool,
                           peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                           eff_memory: float, launch_s: float, latency_s: float,
                           sharpness: float) -> Cost:
    queries = [(int(c), int(q)) for q, c in zip(new_tokens, context_tokens, strict=True)]
    return _attention(queries, heads, d_qk, d_v, kv_bytes_per_token, qo_bytes_per_token,
                      window_tokens, chunked, peak_flop_per_s, mem_bytes_per_s, eff_compute,
                      eff_memory, launch_s, latency_s, sharpness)


def attention_prefill_time_s(new_tokens: Sequence[int], context_tokens: Sequence[int], heads: int,
                             d_qk: int, d_v: int, kv_bytes_per_token: float,
                             qo_bytes_per_token: float, window_tokens: int, chunked: bool,
                             peak_flop_per_s: float, mem_bytes_per_s: float, eff_compute: float,
                             eff_memory: float, launch_s: float, latency_s: float,
                             sharpness: float) -> float:
    return attention_prefill_cost(new_tokens, context_tokens, heads, d_qk, d_v, kv_bytes_per_token,
                                  qo_bytes_per_token, window_tokens, chunked, peak_flop_per_s,
                                  mem_bytes_per_s, eff_compute, eff_memory, launch_s, latency_s,
                                  sharpness)[0]


def attention_decode_cost(kv_lens: Sequence[int], query_tokens: int, heads: int, d_qk: int,
                          d_v: int, kv_bytes_per_token: float, qo_bytes_per_token: float,
                          window_tokens: int, chunked: bool, peak_flop_per_s: float,
                          mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                          launch_s: float, latency_s: float, sharpness: float) -> Cost:
    queries = []
    for kv in kv_lens:
        if kv <= 0:
            continue
        q = min(query_tokens, int(kv))          # the newest q tokens are the queries
        queries.append((int(kv) - q, q))
    return _attention(queries, heads, d_qk, d_v, kv_bytes_per_token, qo_bytes_per_token,
                      window_tokens, chunked, peak_flop_per_s, mem_bytes_per_s, eff_compute,
                      eff_memory, launch_s, latency_s, sharpness)


def attention_decode_time_s(kv_lens: Sequence[int], query_tokens: int, heads: int, d_qk: int,
                            d_v: int, kv_bytes_per_token: float, qo_bytes_per_token: float,
                            window_tokens: int, chunked: bool, peak_flop_per_s: float,
                            mem_bytes_per_s: float, eff_compute: float, eff_memory: float,
                            launch_s: float, latency_s: float, sharpness: float) -> float:
    return attention_decode_cost(kv_lens, query_tokens, heads, d_qk, d_v, kv_bytes_per_token,
                                 qo_bytes_per_token, window_tokens, chunked, peak_flop_per_s,
                                 mem_bytes_per_s, eff_compute, eff_memory, launch_s, latency_s,
                                 sharpness)[0]


def memory_bound_cost(bytes_moved: float, flop: float, mem_bytes_per_s: float, eff_memory: float,
                      peak_flop_per_s: float, launch_s: float, latency_s: float) -> Cost:
    if bytes_moved <= 0.0 and flop <= 0.0:
        return _ZERO
    memory_s = bytes_moved / (mem_bytes_per_s * eff_memory)
    compute_s = flop / peak_flop_per_s
    time_s = max(compute_s, memory_s) + latency_s + launch_s
    return (time_s, flop, bytes_moved, compute_s, memory_s, latency_s + launch_s)


def memory_bound_time_s(bytes_moved: float, flop: float, mem_bytes_per_s: float,
                        eff_memory: float, peak_flop_per_s: float, launch_s: float,
                        latency_s: float) -> float:
    return memory_bound_cost(bytes_moved, flop, mem_bytes_per_s, eff_memory, peak_flop_per_s,
                             launch_s, latency_s)[0]
