"""Invariants of the operator cost model: more hardware is never slower, more work never cheaper."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.perf import kernels
from hwsim.perf import operators as ops
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.hardware import Device, EfficiencyFactor, MemoryTier

GPU = Device(name="toy", kind="gpu", compute_flop_per_s={"bf16": 1e15, "fp8": 2e15},
             memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=80e9, bandwidth_bytes_per_s=3e12),),
             efficiency=(EfficiencyFactor(name="gemm", value=0.8, by_dtype={"fp8": 0.7}, calibrated_on=("t",)),),
             sm_count=132)
GQA = AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128, window_tokens=512,
                    window_pattern=(True, False))
MLA = AttentionSpec(kind="mla", num_heads=128, num_kv_heads=128, head_dim=128, kv_lora_rank=512,
                    qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)

dims = st.integers(min_value=1, max_value=20_000)
tokens = st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=40)
factor = st.floats(min_value=1.0, max_value=10.0)
shapes = st.builds(ops.ShapeModel, k_half_elems=st.floats(0, 1000), latency_s=st.floats(0, 1e-5),
                   sharpness=st.floats(1.0, 30.0))
EPS = 1e-12


def _gemm(m, n, k, peak, bw, shape):
    return kernels.gemm_time_s(m, n, k, 1.0, 1.0, 2.0, peak, bw, 0.7, 0.9, 132, 128, 128, 1e-6,
                               shape.k_half_elems, shape.latency_s, shape.sharpness)


@settings(max_examples=200, deadline=None)
@given(m=dims, n=dims, k=dims, more_bw=factor, more_flops=factor, shape=shapes)
def test_more_bandwidth_or_flops_is_never_slower(m, n, k, more_bw, more_flops, shape):
    base = _gemm(m, n, k, 1e15, 3e12, shape)
    assert _gemm(m, n, k, 1e15, 3e12 * more_bw, shape) <= base * (1 + EPS)
    assert _gemm(m, n, k, 1e15 * more_flops, 3e12, shape) <= base * (1 + EPS)


@settings(max_examples=100, deadline=None)
@given(kv=tokens, heads=st.integers(1, 128), more=factor, q=st.integers(1, 4))
def test_attention_more_bandwidth_or_flops_is_never_slower(kv, heads, more, q):
    args = (heads, 576, 512, 576.0, heads * 1088 * 2.0, 0, False)
    tail = (0.65, 0.9, 1e-6, 2e-6, 2.2)
    t = kernels.as_tokens(kv)
    base = kernels.attention_decode_time_s(t, q, *args, 1e15, 3e12, *tail)
    assert kernels.attention_decode_time_s(t, q, *args, 1e15 * more, 3e12, *tail) <= base * (1 + EPS)
    assert kernels.attention_decode_time_s(t, q, *args, 1e15, 3e12 * more, *tail) <= base * (1 + EPS)


@settings(max_examples=200, deadline=None)
@given(m=st.integers(0, 20_000), dm=st.integers(1, 5000), n=dims, k=dims,
       dtype=st.sampled_from(["bf16", "fp8"]), shape=shapes)
def test_gemm_more_tokens_never_cheaper(m, dm, n, k, dtype, shape):
    a = ops.gemm(GPU, m, n, k, dtype=dtype, weight_dtype=dtype, shape=shape)
    b = ops.gemm(GPU, m + dm, n, k, dtype=dtype, weight_dtype=dtype, shape=shape)
    assert b.time_s >= a.time_s * (1 - EPS)
    assert b.flop > a.flop


@settings(max_examples=200, deadline=None)
@given(t=tokens, data=st.data(), mode=st.sampled_from(["contiguous", "masked"]), shape=shapes)
def test_grouped_gemm_more_tokens_never_cheaper(t, data, mode, shape):
    i = data.draw(st.integers(0, len(t) - 1))
    more = list(t)
    more[i] += data.draw(st.integers(1, 500))
    a = ops.grouped_gemm(GPU, t, 2048, 7168, dtype="fp8", weight_dtype="fp8", mode=mode, shape=shape)
    b = ops.grouped_gemm(GPU, more, 2048, 7168, dtype="fp8", weight_dtype="fp8", mode=mode, shape=shape)
    assert b.time_s >= a.time_s * (1 - EPS)
    assert b.flop == pytest.approx(2.0 * sum(more) * 2048 * 7168)


@settings(max_examples=200, deadline=None)
@given(t=tokens, extra=st.integers(1, 50), mode=st.sampled_from(["contiguous", "masked"]), shape=shapes)
def test_more_experts_touched_never_cheaper(t, extra, mode, shape):
    kw = dict(dtype="fp8", weight_dtype="fp8", mode=mode, shape=shape)
    a = ops.grouped_gemm(GPU, t, 4096, 7168, **kw)
    b = ops.grouped_gemm(GPU, [*t, extra], 4096, 7168, **kw)       # one more expert gets tokens
    assert b.time_s >= a.time_s * (1 - EPS)
    assert b.bytes_moved >= a.bytes_moved + 4096 * 7168               # its weights are read


@settings(max_examples=150, deadline=None)
@given(kv=tokens, data=st.data(), layer=st.sampled_from([None, 0, 1]), shape=shapes)
def test_attention_more_tokens_never_cheaper(kv, data, layer, shape):
    """Full and sliding-window attention (a chunked window legitimately resets at chunk edges)."""
    i = data.draw(st.integers(0, len(kv) - 1))
    more = list(kv)
    more[i] += data.draw(st.integers(1, 1000))
    kw = dict(heads=32, kv_heads=8, dtype="bf16", kv_dtype="bf16", layer=layer, shape=shape)
    assert (ops.attention_decode(GPU, GQA, kv_lens=more, **kw).time_s
            >= ops.attention_decode(GPU, GQA, kv_lens=kv, **kw).time_s * (1 - EPS))
    new = [max(1, x // 7) for x in kv]
    a = ops.attention_prefill(GPU, GQA, new_tokens=new, context_tokens=kv, **kw)
    b = ops.attention_prefill(GPU, GQA, new_tokens=new, context_tokens=more, **kw)
    more_new = list(new)
    more_new[i] += 1
    c = ops.attention_prefill(GPU, GQA, new_tokens=more_new, context_tokens=kv, **kw)
    assert b.time_s >= a.time_s * (1 - EPS)
    assert c.time_s >= a.time_s * (1 - EPS)


@settings(max_examples=100, deadline=None)
@given(kv=tokens, heads=st.integers(1, 127), q=st.integers(1, 3))
def test_mla_decode_more_heads_never_cheaper_and_share_the_latent(kv, heads, q):
    kw = dict(kv_lens=kv, kv_heads=1, dtype="bf16", kv_dtype="bf16", query_tokens=q)
    a = ops.attention_decode(GPU, MLA, heads=heads, **kw)
    b = ops.attention_decode(GPU, MLA, heads=heads + 1, **kw)
    assert b.time_s >= a.time_s * (1 - EPS)
    # the latent is read once however many heads share it; only Q and O grow with heads
    expected = sum(min(q, x) for x in kv if x > 0) * (576 + 512) * 2.0
    assert b.bytes_moved - a.bytes_moved == pytest.approx(expected, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(m=dims, n=dims, k=dims, more=factor)
def test_device_level_more_bandwidth_never_slower(m, n, k, more):
    faster = dataclasses.replace(GPU, memory=(dataclasses.replace(GPU.memory[0],
                                 bandwidth_bytes_per_s=3e12 * more),))
    assert (ops.gemm(faster, m, n, k, dtype="bf16").time_s
            <= ops.gemm(GPU, m, n, k, dtype="bf16").time_s * (1 + EPS))
