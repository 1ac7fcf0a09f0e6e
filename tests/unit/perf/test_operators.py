"""Operators on a toy device, each checked against arithmetic written out here."""

from __future__ import annotations

import math

import pytest

from hwsim.io.load import load_device
from hwsim.perf import operators as ops
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.hardware import Device, EfficiencyFactor, MemoryTier

SHAPE = ops.ShapeModel(k_half_elems=256.0, latency_s=2e-6, sharpness=2.0)
SMS = 100


def _eff(name: str, value: float, **by: float) -> EfficiencyFactor:
    return EfficiencyFactor(name=name, value=value, by_dtype=by, calibrated_on=("test",))


@pytest.fixture
def gpu() -> Device:
    """1 PFLOP/s bf16, 2 PFLOP/s fp8, 3 TB/s, 100 SMs; 5 us eager and 1 us graph launches."""
    return Device(name="toy", kind="gpu", compute_flop_per_s={"bf16": 1e15, "fp8": 2e15, "fp32": 5e13},
                  memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),),
                  efficiency=(_eff("gemm", 0.8, fp8=0.7), _eff("memory", 0.9), _eff("attention", 0.6)),
                  sm_count=SMS, launch_eager_s=5e-6, launch_graph_s=1e-6)


def blend(compute_s: float, memory_s: float) -> float:
    return math.hypot(compute_s, memory_s)           # p = 2


GQA = AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128)
MLA = AttentionSpec(kind="mla", num_heads=128, num_kv_heads=128, head_dim=128, q_lora_rank=1536,
                    kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)


def test_gemm_hand_computed(gpu):
    # m=128 (one 128-row tile), n = 128 * 100 -> 100 tiles of 128 = one full wave, no padding.
    m, n, k = 128, 12800, 4096
    op = ops.gemm(gpu, m, n, k, dtype="bf16", shape=SHAPE)
    eff = 0.8 * 4096 / (4096 + 256)                              # K ramp: 0.7529
    compute_s = 2 * 128 * 12800 * 4096 / (1e15 * eff)            # 17.83 us
    moved = 128 * 4096 * 2 + 4096 * 12800 * 2 + 128 * 12800 * 2  # 109_182_976 B
    memory_s = moved / (3e12 * 0.9)                              # 40.44 us
    assert op.flop == 2 * m * n * k
    assert op.bytes_moved == moved
    assert op.compute_s == pytest.approx(compute_s)
    assert op.memory_s == pytest.approx(memory_s)
    assert op.overhead_s == pytest.approx(2e-6 + 1e-6)            # latency + graph launch
    assert op.time_s == pytest.approx(blend(compute_s, memory_s) + 3e-6)   # 47.19 us
    assert op.bound == "memory"
    assert op.name == "gemm"


def test_gemm_fp8_uses_the_fp8_peak_and_efficiency(gpu):
    op = ops.gemm(gpu, 128, 12800, 4096, dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    assert op.compute_s == pytest.approx(2 * 128 * 12800 * 4096 / (2e15 * 0.7 * 4096 / 4352))
    assert op.bytes_moved == 128 * 4096 + 4096 * 12800 + 128 * 12800 * 2   # bf16 output


def test_weight_only_int4_computes_in_bf16_and_reads_4_bit_weights(gpu):
    op = ops.gemm(gpu, 1, 8192, 8192, dtype="bf16", weight_dtype="int4", shape=SHAPE)
    # weights: 0.5 B + 1/32 B of group scales per element
    assert op.bytes_moved == 8192 * 2 + 8192 * 8192 * (0.5 + 1 / 32) + 8192 * 2
    # compute on a 64-row tile at the bf16 peak (m=1 padded to 64)
    bf16 = ops.gemm(gpu, 1, 8192, 8192, dtype="bf16", shape=SHAPE)
    assert op.compute_s == pytest.approx(bf16.compute_s)
    assert op.bound == "memory"
    assert ops.compute_dtype("bf16", "int4") == "bf16"
    assert ops.compute_dtype("fp8", "bf16") == "bf16"
    assert ops.weight_bytes_per_elem("fp4") == 0.5 + 1 / 16


def test_fp8_on_a_device_without_fp8_falls_back_to_bf16(gpu):
    a100ish = Device(name="a", kind="gpu", compute_flop_per_s={"bf16": 1e15}, memory=gpu.memory, sm_count=SMS)
    op = ops.gemm(a100ish, 4096, 12800, 4096, dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    same = ops.gemm(a100ish, 4096, 12800, 4096, dtype="bf16", shape=SHAPE)
    assert op.compute_s == pytest.approx(same.compute_s)
    assert op.bytes_moved < same.bytes_moved


def test_eager_launch_costs_more_than_graph_replay(gpu):
    graph = ops.gemm(gpu, 64, 4096, 4096, dtype="bf16", shape=SHAPE)
    eager = ops.gemm(gpu, 64, 4096, 4096, dtype="bf16", cuda_graph=False, shape=SHAPE)
    assert eager.time_s - graph.time_s == pytest.approx(5e-6 - 1e-6)


def test_launch_overhead_defaults_and_device_values(gpu):
    assert ops.launch_overhead_s(gpu, 10, cuda_graph=True) == pytest.approx(10e-6)
    assert ops.launch_overhead_s(gpu, 10, cuda_graph=False) == pytest.approx(50e-6)
    bare = Device(name="b", kind="gpu", compute_flop_per_s={"bf16": 1e15}, memory=gpu.memory)
    assert ops.launch_overhead_s(bare, 2, cuda_graph=False) == pytest.approx(2 * ops.DEFAULT_LAUNCH_EAGER_S)
    assert ops.launch_overhead_s(bare, 2, cuda_graph=True) == pytest.approx(2 * ops.DEFAULT_LAUNCH_GRAPH_S)
    cpu = Device(name="c", kind="cpu", compute_flop_per_s={"bf16": 1e12}, memory=gpu.memory)
    assert ops.launch_overhead_s(cpu, 100, cuda_graph=False) == 0.0
    assert ops.num_sms(bare) == ops.DEFAULT_SM_COUNT
    assert ops.efficiency(bare, "gemm", "bf16") == ops.DEFAULT_EFFICIENCY["gemm"]
    assert ops.efficiency(gpu, "grouped_gemm", "fp8") == 0.7         # falls back to the device's gemm
    with pytest.raises(ValueError, match=">= 0"):
        ops.launch_overhead_s(gpu, -1)


def test_grouped_gemm_tile_padding_waste_costs_a_full_tile(gpu):
    # 8 experts with 1 token each (contiguous): each padded to a 128-row tile, so compute equals
    # 128 tokens each; the FLOP count stays the real one (128x smaller).
    one = ops.grouped_gemm(gpu, [1] * 8, 4096, 7168, dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    full = ops.grouped_gemm(gpu, [128] * 8, 4096, 7168, dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    assert one.compute_s == pytest.approx(full.compute_s)
    assert one.flop == 2 * 8 * 1 * 4096 * 7168
    assert full.flop == 128 * one.flop
    # weights of the 8 experts read once: 8 * 7168 * 4096 fp8 bytes dominate
    assert one.bytes_moved == 8 * 7168 + 8 * 7168 * 4096 + 8 * 4096 * 2


def test_grouped_gemm_hand_computed(gpu):
    # 2 experts x 640 tokens, contiguous: 5 + 5 = 10 row tiles; n = 1280 -> 10 tiles of 128
    # -> 100 tiles = 1 wave on 100 SMs, no padding.
    op = ops.grouped_gemm(gpu, [640, 0, 640], 1280, 2048, dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    compute_s = 2 * 1280 * 1280 * 2048 / (2e15 * 0.7 * 2048 / (2048 + 256))
    moved = 1280 * 2048 * 1 + 2 * 2048 * 1280 * 1 + 1280 * 1280 * 2
    assert op.compute_s == pytest.approx(compute_s)
    assert op.bytes_moved == moved
    assert op.time_s == pytest.approx(blend(compute_s, moved / 2.7e12) + 3e-6)


def test_untouched_experts_cost_nothing_and_masked_pads_to_the_largest(gpu):
    kw = dict(dtype="fp8", weight_dtype="fp8", shape=SHAPE)
    assert ops.grouped_gemm(gpu, [5, 0, 0, 0], 4096, 7168, **kw) == ops.grouped_gemm(gpu, [5], 4096, 7168, **kw)
    masked = ops.grouped_gemm(gpu, [1, 100], 4096, 7168, mode="masked", **kw)
    even = ops.grouped_gemm(gpu, [100, 100], 4096, 7168, mode="masked", **kw)
    assert masked.compute_s == pytest.approx(even.compute_s)     # 1 is padded to the 100-token slot
    assert masked.flop == 2 * 101 * 4096 * 7168
    small = ops.grouped_gemm(gpu, [1, 3], 4096, 7168, mode="masked", **kw)
    contiguous = ops.grouped_gemm(gpu, [1, 3], 4096, 7168, mode="contiguous", **kw)
    assert small.compute_s == pytest.approx(contiguous.compute_s / 2)   # 64-row vs 128-row tiles
    assert ops.grouped_gemm(gpu, [0, 0], 4096, 7168, **kw).time_s == 0.0
    with pytest.raises(ValueError, match="contiguous"):
        ops.grouped_gemm(gpu, [1], 8, 8, mode="padded", **kw)


def test_attention_prefill_gqa_hand_computed(gpu):
    op = ops.attention_prefill(gpu, GQA, new_tokens=[1024], context_tokens=[0], heads=32, kv_heads=8,
                               dtype="bf16", kv_dtype="bf16", shape=SHAPE)
    pairs = 1024 * 1025 / 2                                      # causal square, halved
    flop = 2 * 32 * pairs * (128 + 128)                          # = 4 * heads * head_dim * pairs
    moved = 1024 * (8 * 2 * 128 * 2) + 1024 * (32 * 256 * 2)     # K/V once per KV head + Q and O
    assert op.flop == flop
    assert op.bytes_moved == moved
    assert op.compute_s == pytest.approx(flop / (1e15 * 0.6))
    assert op.time_s == pytest.approx(blend(flop / 6e14, moved / 2.7e12) + 3e-6)


def test_attention_prefill_with_context_and_windows(gpu):
    kw = dict(heads=32, kv_heads=8, dtype="bf16", kv_dtype="bf16", shape=SHAPE)
    full = ops.attention_prefill(gpu, GQA, new_tokens=[100], context_tokens=[1000], **kw)
    assert full.flop == 2 * 32 * (100 * 1000 + 100 * 101 / 2) * 256
    sliding = AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128, window_tokens=128,
                            window_pattern=(True, False))
    win = ops.attention_prefill(gpu, sliding, new_tokens=[100], context_tokens=[1000], layer=0, **kw)
    assert win.flop == 2 * 32 * (100 * 128) * 256                 # every query sees 128 keys
    assert win.bytes_moved == (128 - 1 + 100) * 4096 + 100 * 16384  # keys 873..1099 read once
    no_win = ops.attention_prefill(gpu, sliding, new_tokens=[100], context_tokens=[1000], layer=1, **kw)
    assert no_win == full
    chunked = AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128, window_tokens=1024,
                            window_kind="chunked", window_pattern=(True,))
    ch = ops.attention_prefill(gpu, chunked, new_tokens=[100], context_tokens=[1000], layer=0, **kw)
    # positions 1000..1023 see 1001..1024 keys; 1024..1099 start a new chunk: 1..76
    pairs = sum(range(1001, 1025)) + sum(range(1, 77))
    assert ch.flop == 2 * 32 * pairs * 256


def test_attention_prefill_mla_non_absorbed_and_absorbed(gpu):
    kw = dict(new_tokens=[512], context_tokens=[0], heads=16, kv_heads=16, dtype="bf16", kv_dtype="bf16",
              shape=SHAPE)
    plain = ops.attention_prefill(gpu, MLA, **kw)
    assert plain.flop == 2 * 16 * (512 * 513 / 2) * (192 + 128)
    assert plain.bytes_moved == 512 * 16 * (192 + 128) * 2 * 2     # decompressed K/V + Q/O
    latent = ops.attention_prefill(gpu, MLA, mla_absorbed=True, **kw)
    assert latent.flop == 2 * 16 * (512 * 513 / 2) * (576 + 512)
    assert latent.bytes_moved == 512 * 576 * 2 + 512 * 16 * (576 + 512) * 2


def test_attention_decode_mla_is_kv_read_bound_with_a_compute_ceiling(gpu):
    kw = dict(kv_lens=[4096] * 64, kv_heads=1, dtype="bf16", kv_dtype="fp8", shape=SHAPE)
    few = ops.attention_decode(gpu, MLA, heads=16, **kw)
    # latent 512 + 64 rope at 1 B per token, read once for all 16 heads; Q and O in bf16
    assert few.bytes_moved == 64 * (4096 * 576 + 16 * (576 + 512) * 2)
    assert few.flop == 2 * 16 * 64 * 4096 * (576 + 512)
    assert few.bound == "memory"
    many = ops.attention_decode(gpu, MLA, heads=128, query_tokens=2, **kw)
    assert many.bound == "compute"                               # 256 query rows share each latent
    pairs = 64 * (4095 + 4096)                                   # the 2 MTP tokens are causal
    assert many.flop == 2 * 128 * pairs * (576 + 512)


def test_attention_decode_gqa_windowed(gpu):
    sliding = AttentionSpec(kind="gqa", num_heads=64, num_kv_heads=8, head_dim=64, window_tokens=128,
                            window_pattern=(True, False))
    kw = dict(kv_lens=[10_000, 50], heads=64, kv_heads=8, dtype="bf16", kv_dtype="bf16", shape=SHAPE)
    win = ops.attention_decode(gpu, sliding, layer=0, **kw)
    per_token = 8 * 2 * 64 * 2
    assert win.bytes_moved == (128 + 50) * per_token + 2 * 64 * 128 * 2
    full = ops.attention_decode(gpu, sliding, layer=1, **kw)
    assert full.bytes_moved == (10_000 + 50) * per_token + 2 * 64 * 128 * 2


def test_attention_input_errors(gpu):
    kw = dict(dtype="bf16", kv_dtype="bf16")
    with pytest.raises(ValueError, match="multiple"):
        ops.attention_decode(gpu, GQA, kv_lens=[10], heads=6, kv_heads=4, **kw)
    with pytest.raises(ValueError, match="length"):
        ops.attention_prefill(gpu, GQA, new_tokens=[1, 2], context_tokens=[0], heads=32, kv_heads=8, **kw)
    with pytest.raises(ValueError, match="query_tokens"):
        ops.attention_decode(gpu, GQA, kv_lens=[10], heads=32, kv_heads=8, query_tokens=0, **kw)
    with pytest.raises(ValueError, match=">= 0"):
        ops.gemm(gpu, -1, 8, 8, dtype="bf16")
    with pytest.raises(ValueError, match="unknown dtype"):
        ops.gemm(gpu, 1, 8, 8, dtype="bf17")


def test_memory_op_hand_computed(gpu):
    op = ops.memory_op(gpu, "rmsnorm", bytes_moved=117_440_512.0, flop=1e8, cuda_graph=False, shape=SHAPE)
    assert op.memory_s == pytest.approx(117_440_512 / 2.7e12)
    assert op.compute_s == pytest.approx(1e8 / 5e13)             # element-wise math at the fp32 peak
    assert op.time_s == pytest.approx(op.memory_s + 2e-6 + 5e-6)
    assert op.name == "rmsnorm"
    assert ops.memory_op(gpu, "nothing", bytes_moved=0.0).time_s == 0.0


def test_catalog_devices_run_every_operator():
    h800 = load_device("H800")
    ops.gemm(h800, 4096, 7168, 16384, dtype="fp8", weight_dtype="fp8")
    ops.grouped_gemm(h800, [256] * 4, 4096, 7168, dtype="fp8", weight_dtype="fp8", mode="masked")
    ops.attention_decode(h800, MLA, kv_lens=[4096] * 8, heads=16, kv_heads=1, dtype="bf16", kv_dtype="bf16")
    ops.attention_prefill(h800, MLA, new_tokens=[4096], context_tokens=[0], heads=16, kv_heads=16,
                          dtype="bf16", kv_dtype="bf16")
    # DeepGEMM's best dense row: 1426 TFLOP/s measured; the calibrated model is within 15 %
    op = ops.gemm(h800, 4096, 7168, 16384, dtype="fp8", weight_dtype="fp8", cuda_graph=True)
    kernel_s = op.time_s - ops.launch_overhead_s(h800, cuda_graph=True)
    assert op.flop / kernel_s / 1e12 == pytest.approx(1426, rel=0.15)
