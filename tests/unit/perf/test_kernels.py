"""Numba kernels: equal to their pure-Python twins, callable from njit code, hand-checked formulas."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from hwsim.perf import kernels, reference

RNG_SEED = 20250325
SMS = 132


def _tokens(rng: np.random.Generator, size: int, high: int) -> np.ndarray:
    t = rng.integers(0, high, size=size).astype(np.int64)
    t[rng.random(size) < 0.3] = 0        # untouched experts / empty sequences
    return t


def _gemm_args(rng: np.random.Generator) -> tuple:
    return (int(rng.integers(0, 20000)), int(rng.integers(1, 40000)), int(rng.integers(1, 20000)),
            float(rng.choice([0.5, 1.0, 2.0])), float(rng.choice([0.53125, 1.0, 2.0])), 2.0,
            float(rng.uniform(1e14, 1e16)), float(rng.uniform(1e12, 1e13)), float(rng.uniform(0.3, 1.0)),
            float(rng.uniform(0.5, 1.0)), int(rng.integers(8, 200)), int(rng.choice([64, 128])),
            int(rng.choice([16, 64, 128, 256])), float(rng.uniform(0, 5e-6)), float(rng.uniform(0, 600)),
            float(rng.uniform(0, 5e-6)), float(rng.uniform(1.0, 8.0)))


def _attn_args(rng: np.random.Generator) -> tuple:
    window = int(rng.choice([0, 0, 128, 4096]))
    return (int(rng.integers(1, 129)), int(rng.choice([64, 128, 576])), int(rng.choice([64, 128, 512])),
            float(rng.uniform(100, 5000)), float(rng.uniform(100, 5000)), window, bool(rng.random() < 0.5),
            float(rng.uniform(1e14, 1e16)), float(rng.uniform(1e12, 1e13)), float(rng.uniform(0.3, 1.0)),
            float(rng.uniform(0.5, 1.0)), float(rng.uniform(0, 5e-6)), float(rng.uniform(0, 5e-6)),
            float(rng.uniform(1.0, 8.0)))


def test_gemm_jit_matches_reference():
    rng = np.random.default_rng(RNG_SEED)
    for _ in range(300):
        args = _gemm_args(rng)
        assert kernels.gemm_cost(*args) == pytest.approx(reference.gemm_cost(*args), rel=1e-12)
        assert kernels.gemm_time_s(*args) == pytest.approx(reference.gemm_time_s(*args), rel=1e-12)


def test_grouped_gemm_jit_matches_reference():
    rng = np.random.default_rng(RNG_SEED + 1)
    for _ in range(300):
        tokens = _tokens(rng, int(rng.integers(1, 64)), int(rng.choice([4, 300, 9000])))
        g = _gemm_args(rng)
        args = (tokens, *g[1:13], bool(rng.random() < 0.5), *g[13:])
        assert kernels.grouped_gemm_cost(*args) == pytest.approx(
            reference.grouped_gemm_cost(list(tokens), *args[1:]), rel=1e-12)
        assert kernels.grouped_gemm_time_s(*args) == pytest.approx(
            reference.grouped_gemm_time_s(list(tokens), *args[1:]), rel=1e-12)


def test_attention_jit_matches_reference():
    rng = np.random.default_rng(RNG_SEED + 2)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        new, ctx, kv = _tokens(rng, n, 3000), _tokens(rng, n, 20000), _tokens(rng, n, 30000)
        a = _attn_args(rng)
        q = int(rng.integers(1, 4))
        assert kernels.attention_prefill_cost(new, ctx, *a) == pytest.approx(
            reference.attention_prefill_cost(list(new), list(ctx), *a), rel=1e-12)
        assert kernels.attention_prefill_time_s(new, ctx, *a) == pytest.approx(
            reference.attention_prefill_time_s(list(new), list(ctx), *a), rel=1e-12)
        assert kernels.attention_decode_cost(kv, q, *a) == pytest.approx(
            reference.attention_decode_cost(list(kv), q, *a), rel=1e-12)
        assert kernels.attention_decode_time_s(kv, q, *a) == pytest.approx(
            reference.attention_decode_time_s(list(kv), q, *a), rel=1e-12)


def test_memory_bound_and_helpers_jit_match_reference():
    rng = np.random.default_rng(RNG_SEED + 3)
    for _ in range(300):
        args = (float(rng.uniform(0, 1e9)), float(rng.choice([0.0, rng.uniform(0, 1e12)])),
                float(rng.uniform(1e12, 1e13)), float(rng.uniform(0.5, 1)), float(rng.uniform(1e13, 1e15)),
                float(rng.uniform(0, 5e-6)), float(rng.uniform(0, 5e-6)))
        assert kernels.memory_bound_cost(*args) == pytest.approx(reference.memory_bound_cost(*args), rel=1e-12)
        assert kernels.memory_bound_time_s(*args) == pytest.approx(reference.memory_bound_time_s(*args), rel=1e-12)
        tiles = (int(rng.integers(1, 500)), int(rng.integers(1, 40000)), int(rng.integers(1, 200)),
                 int(rng.choice([16, 24, 128, 256])))
        assert kernels.pick_tile_n(*tiles) == reference.pick_tile_n(*tiles)
        legs = (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(1, 30)), 1e-6, 2e-6)
        assert kernels.combine_legs(*legs) == pytest.approx(reference.combine_legs(*legs), rel=1e-12)


@pytest.mark.parametrize(("window", "chunked"), [(0, False), (1, False), (7, False), (7, True), (64, True)])
def test_attended_pairs_closed_form_matches_brute_force(window, chunked):
    for x in range(0, 200, 3):
        brute = sum(reference._attended(p, window, chunked) for p in range(x))
        assert reference._attended_prefix(x, window, chunked) == brute
        assert kernels._attended_prefix(x, window, chunked) == brute
        for new in (1, 5, 40):
            keys = {k for p in range(x, x + new) for k in range(p + 1)
                    if window <= 0 or (k // window == p // window if chunked else p - k < window)}
            assert reference._kv_span(x, new, window, chunked) == len(keys)


def test_scalar_kernels_are_callable_from_njit_code():
    from numba import njit

    @njit
    def sweep(ms):
        total = 0.0
        for m in ms:
            total += kernels.gemm_time_s(m, 7168, 2048, 1.0, 1.0, 2.0, 1979e12, 3.35e12, 0.7, 0.9,
                                         132, 128, 128, 1e-6, 230.0, 2.6e-6, 2.2)
            total += kernels.memory_bound_time_s(m * 7168 * 2.0, 0.0, 3.35e12, 0.9, 6.7e13, 1e-6, 2.6e-6)
        return total

    ms = np.arange(1, 2000, dtype=np.int64)
    expected = sum(reference.gemm_time_s(int(m), 7168, 2048, 1.0, 1.0, 2.0, 1979e12, 3.35e12, 0.7, 0.9,
                                         132, 128, 128, 1e-6, 230.0, 2.6e-6, 2.2)
                   + reference.memory_bound_time_s(m * 7168 * 2.0, 0.0, 3.35e12, 0.9, 6.7e13, 1e-6, 2.6e-6)
                   for m in ms)
    assert sweep(ms) == pytest.approx(expected, rel=1e-12)


def test_kernels_run_as_plain_python_with_jit_disabled():
    code = ("from hwsim.perf import kernels, reference; import numpy as np; "
            "a = (300, 7168, 2048, 1.0, 1.0, 2.0, 1979e12, 3.35e12, 0.7, 0.9, 132, 128, 128, 0.0, 230.0, 2e-6, 2.2); "
            "assert not hasattr(kernels.gemm_cost, 'py_func'); "
            "assert kernels.gemm_cost(*a) == reference.gemm_cost(*a); "
            "t = kernels.as_tokens([3, 0, 200]); "
            "b = (7168, 2048, 1.0, 1.0, 2.0, 1979e12, 3.35e12, 0.7, 0.9, 132, 128, 128, True, 0.0, 230.0, 2e-6, 2.2); "
            "assert kernels.grouped_gemm_cost(t, *b) == reference.grouped_gemm_cost([3, 0, 200], *b)")
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- hand-computed values ------------------------------------------------------------------
def _compute_s(m, n, k, tile_m, tile_n, num_sms=SMS):
    """Compute leg only: 1 PFLOP/s, efficiency 1, no K ramp, memory negligible (huge bandwidth)."""
    return kernels.gemm_cost(m, n, k, 2.0, 2.0, 2.0, 1e15, 1e30, 1.0, 1.0, num_sms, tile_m, tile_n,
                             0.0, 0.0, 0.0, 64.0)[3]


def test_wave_quantisation_one_tile_over_a_full_wave_costs_two_waves():
    # 64-row tiles 16 wide (no narrower width to pick): n = 16 * SMS gives SMS tiles = 1 wave;
    # one more tile starts a second wave that costs as much as the first.
    one_wave = _compute_s(64, 16 * SMS, 4096, 64, 16)
    assert one_wave == pytest.approx(2 * 64 * 16 * SMS * 4096 / 1e15)      # = its real FLOP
    assert _compute_s(64, 16 * (SMS + 1), 4096, 64, 16) == pytest.approx(2 * one_wave)
    assert _compute_s(64, 16 * 2 * SMS, 4096, 64, 16) == pytest.approx(2 * one_wave)


def test_tile_padding_small_m_costs_a_full_64_row_tile():
    # m = 1 computes a 64-row tile: same compute time as m = 64, FLOP count stays 2 m n k.
    one = kernels.gemm_cost(1, 4096, 4096, 2.0, 2.0, 2.0, 1e15, 1e30, 1.0, 1.0, SMS, 64, 128, 0.0, 0.0, 0.0, 64.0)
    full = kernels.gemm_cost(64, 4096, 4096, 2.0, 2.0, 2.0, 1e15, 1e30, 1.0, 1.0, SMS, 64, 128, 0.0, 0.0, 0.0, 64.0)
    assert one[3] == pytest.approx(full[3])
    assert one[1] == 2.0 * 1 * 4096 * 4096
    assert full[1] == 64 * one[1]


def test_tile_width_is_picked_to_fill_the_sms():
    # m = 128 (1 row of tiles), n = 2112 on 132 SMs: width 16 makes exactly 132 tiles (1 wave);
    # width 128 would leave 115 SMs idle (17 tiles).
    assert kernels.pick_tile_n(1, 2112, 132, 128) == 16
    # a full machine of 128-wide tiles keeps 128 (ties go to the wider tile)
    assert kernels.pick_tile_n(1, 128 * 132, 132, 128) == 128


def test_k_ramp_halves_efficiency_at_k_half():
    n = 128 * SMS
    base = kernels.gemm_cost(128, n, 1000, 2.0, 2.0, 2.0, 1e15, 1e30, 1.0, 1.0, SMS, 128, 128,
                             0.0, 0.0, 0.0, 64.0)[3]
    ramped = kernels.gemm_cost(128, n, 1000, 2.0, 2.0, 2.0, 1e15, 1e30, 1.0, 1.0, SMS, 128, 128,
                               0.0, 1000.0, 0.0, 64.0)[3]
    assert ramped == pytest.approx(2 * base)      # eff * k / (k + k_half) with k = k_half


def test_gemm_memory_leg_and_fixed_costs():
    # decode GEMV: m=1, n=k=8192, fp8 weights, bf16 in/out on 3 TB/s at 0.9:
    # bytes = 1*8192*2 + 8192*8192*1 + 1*8192*2 = 67_141_632; memory = bytes / 2.7e12
    t, flop, moved, compute_s, memory_s, overhead_s = kernels.gemm_cost(
        1, 8192, 8192, 2.0, 1.0, 2.0, 1e15, 3e12, 1.0, 0.9, SMS, 64, 128, 1e-6, 0.0, 2e-6, 2.0)
    assert moved == 8192 * 2 + 8192 * 8192 + 8192 * 2
    assert memory_s == pytest.approx(moved / 2.7e12)
    assert flop == 2.0 * 8192 * 8192
    assert overhead_s == pytest.approx(3e-6)
    assert t == pytest.approx((compute_s**2 + memory_s**2) ** 0.5 + 3e-6)


def test_combine_legs_blends_equal_legs_and_approaches_the_roofline():
    assert kernels.combine_legs(1.0, 1.0, 2.0, 0.0, 0.0) == pytest.approx(2**0.5)
    assert kernels.combine_legs(1.0, 0.0, 2.0, 0.0, 0.0) == 1.0
    assert kernels.combine_legs(1.0, 0.5, 60.0, 0.0, 0.0) == pytest.approx(1.0)
    assert kernels.combine_legs(0.0, 0.0, 2.0, 1e-6, 2e-6) == pytest.approx(3e-6)


def test_memory_bound_op():
    # RMSNorm of 4096 tokens x 7168 bf16: read + write = 2 * 4096 * 7168 * 2 B at 3 TB/s x 0.9
    t, flop, moved, compute_s, memory_s, overhead = kernels.memory_bound_cost(
        2 * 4096 * 7168 * 2.0, 4 * 4096 * 7168.0, 3e12, 0.9, 6.7e13, 1e-6, 2e-6)
    assert memory_s == pytest.approx(117_440_512 / 2.7e12)
    assert compute_s == pytest.approx(4 * 4096 * 7168 / 6.7e13)
    assert t == pytest.approx(memory_s + 3e-6)
    assert kernels.memory_bound_cost(0.0, 0.0, 3e12, 0.9, 6.7e13, 1e-6, 2e-6) == (0.0,) * 6


def test_empty_problems_cost_nothing():
    assert kernels.gemm_cost(0, 10, 10, 2.0, 2.0, 2.0, 1e15, 3e12, 1.0, 1.0, SMS, 64, 128, 1e-6, 0.0, 1e-6, 2.0) == (0.0,) * 6
    empty = kernels.as_tokens([0, 0])
    assert kernels.grouped_gemm_cost(empty, 10, 10, 2.0, 2.0, 2.0, 1e15, 3e12, 1.0, 1.0, SMS, 64, 128, False,
                                     1e-6, 0.0, 1e-6, 2.0) == (0.0,) * 6
    assert kernels.attention_decode_cost(empty, 1, 8, 128, 128, 1.0, 1.0, 0, False, 1e15, 3e12, 1.0, 1.0,
                                         1e-6, 1e-6, 2.0) == (0.0,) * 6


def test_as_tokens_rejects_negative_counts():
    with pytest.raises(ValueError, match=">= 0"):
        kernels.as_tokens([3, -1])
    assert kernels.as_tokens([[1, 2], [3, 4]]).dtype == np.int64
