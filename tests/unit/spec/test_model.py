"""Formulas of hwsim.spec.model against hand-computed values on small models."""

from __future__ import annotations

import dataclasses

import pytest

from hwsim.spec.model import AttentionSpec, Model, ModelDtypes, MoESpec

H, V = 64, 1000


def gqa(**kw):
    base = dict(kind="gqa", num_heads=8, num_kv_heads=2, head_dim=8)
    base.update(kw)
    return AttentionSpec(**base)


def mla(**kw):
    base = dict(kind="mla", num_heads=4, num_kv_heads=4, head_dim=24, q_lora_rank=16, kv_lora_rank=32,
                qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16)
    base.update(kw)
    return AttentionSpec(**base)


def model(**kw):
    base = dict(name="toy", family="toy", num_layers=4, hidden_size=H, vocab_size=V, attention=gqa(),
                ffn_dim=128, max_context_tokens=4096)
    base.update(kw)
    return Model(**base)


def moe(**kw):
    base = dict(num_experts=8, top_k=2, expert_ffn_dim=32)
    base.update(kw)
    return MoESpec(**base)


# -- attention ------------------------------------------------------------------------
def test_gqa_params_and_kv():
    a = gqa()
    # q 64*64 + k,v 2*64*16 + o 64*64
    assert a.params(H) == 64 * 64 + 2 * 64 * 16 + 64 * 64
    assert a.kv_elems_per_token() == 2 * 2 * 8


def test_qk_norm_and_sinks_add_small_vectors():
    assert gqa(qk_norm=True).params(H) == gqa().params(H) + 2 * 8
    assert gqa(sinks=True).params(H) == gqa().params(H) + 8


def test_mla_params_with_and_without_query_compression():
    a = mla()
    q = 64 * 16 + 16 + 16 * 4 * 24
    kv = 64 * (32 + 8) + 32 + 32 * 4 * (16 + 16)
    o = 4 * 16 * 64
    assert a.params(H) == q + kv + o
    assert mla(q_lora_rank=None).params(H) == 64 * 4 * 24 + kv + o
    assert a.kv_elems_per_token() == 32 + 8


def test_mla_score_value_flops_absorbed_or_not():
    a = mla()
    assert a.score_value_flops(10) == 2 * 4 * 10 * (24 + 16)
    assert a.score_value_flops(10, mla_absorbed=True) == 2 * 4 * 10 * (40 + 32)


@pytest.mark.parametrize(("kw", "match"), [
    ({"num_kv_heads": 3}, "multiple of num_kv_heads"),
    ({"kind": "mha"}, "mha needs"),
    ({"kind": "xyz"}, "attention kind"),
    ({"window_tokens": 16, "window_pattern": (False,)}, "pattern"),
])
def test_attention_invariants(kw, match):
    with pytest.raises(ValueError, match=match):
        gqa(**kw)


def test_mla_needs_its_ranks():
    with pytest.raises(ValueError, match="kv_lora_rank"):
        mla(kv_lora_rank=None)


def test_window_pattern_repeats_over_layers():
    a = gqa(window_tokens=16, window_pattern=(True, True, True, False))
    assert [a.windowed(i) for i in range(8)] == [True, True, True, False] * 2


# -- MoE ------------------------------------------------------------------------------
def test_moe_layer_rule_first_dense_interval_phase_and_exceptions():
    assert model(moe=moe(first_dense_layers=1)).moe_layer_indices == (1, 2, 3)
    assert model(num_layers=8, moe=moe(layer_interval=2, layer_phase=1)).moe_layer_indices == (1, 3, 5, 7)
    assert model(moe=moe(dense_layers=(2,))).moe_layer_indices == (0, 1, 3)
    assert model(moe=None).moe_layer_indices == ()


@pytest.mark.parametrize(("kw", "match"), [
    ({"top_k": 9}, "exceeds"),
    ({"num_expert_groups": 3}, "multiple of num_expert_groups"),
    ({"num_expert_groups": 4, "topk_groups": 5}, "topk_groups"),
    ({"num_expert_groups": 4, "topk_groups": 1, "top_k": 3}, "cannot fit"),
    ({"num_expert_groups": 4, "moge": True, "top_k": 6}, "MoGE"),
    ({"layer_interval": 2, "layer_phase": 2}, "layer_phase"),
    ({"scoring": "relu"}, "scoring"),
    ({"num_zero_experts": 4, "top_k": 4, "expected_real_experts": 5}, "expected_real_experts"),
])
def test_moe_invariants(kw, match):
    with pytest.raises(ValueError, match=match):
        moe(**kw)


def test_moge_and_zero_experts():
    m = moe(num_experts=64, top_k=8, num_expert_groups=8, moge=True)
    assert m.k_per_group == 1
    assert m.experts_per_group == 8
    z = moe(num_experts=512, num_zero_experts=256, top_k=12)
    assert z.real_experts_per_token == pytest.approx(8.0)          # uniform: 12 * 512/768
    assert dataclasses.replace(z, expected_real_experts=7.5).real_experts_per_token == 7.5
    assert moe().real_experts_per_token == 2.0


def test_top_k_may_use_zero_expert_slots():
    assert moe(num_experts=8, num_zero_experts=4, top_k=12).top_k == 12


# -- parameters -------------------------------------------------------------------------
def test_dense_param_counts():
    c = model().param_counts()
    att = model().attention.params(H)
    assert c.embedding == c.lm_head == V * H
    assert c.attention == 4 * att
    assert c.dense_ffn == 4 * 3 * H * 128
    assert c.norms == 4 * 2 * H + H
    assert c.total == 2 * V * H + 4 * att + 4 * 3 * H * 128 + 4 * 2 * H + H
    assert model().active_params_per_token == c.total
    assert model(gated_ffn=False).param_counts().dense_ffn == 4 * 2 * H * 128


def test_tied_embeddings_count_once():
    m = model(tie_word_embeddings=True)
    assert m.param_counts().lm_head == 0
    assert m.active_params("both") == m.active_params("output") == m.total_params


def test_moe_param_counts_and_active():
    m = model(moe=moe(first_dense_layers=1, num_shared_experts=1, shared_expert_ffn_dim=48))
    c = m.param_counts()
    one = 3 * H * 32
    assert c.routed_expert_one == one
    assert c.routed_experts == 3 * 8 * one
    assert c.shared_experts == 3 * 3 * H * 48
    assert c.router == 3 * H * 8
    assert c.dense_ffn == 1 * 3 * H * 128
    body = c.total - c.embedding - c.lm_head - c.routed_experts + 3 * 2 * one
    assert m.active_params("none") == body
    assert m.active_params("output") == body + V * H
    assert m.active_params("both") == body + 2 * V * H
    with pytest.raises(ValueError, match="embeddings"):
        m.active_params("half")


def test_zero_experts_use_expected_real_count():
    m = model(moe=moe(num_experts=8, num_zero_experts=8, top_k=4))
    c = m.param_counts()
    assert c.router == 4 * H * 16
    assert m.active_params("none") == pytest.approx(
        c.total - c.embedding - c.lm_head - c.routed_experts + 4 * 2.0 * c.routed_expert_one)


def test_shortcut_layers_count_two_blocks_and_extra_ffns():
    m = model(moe=moe(), attention_per_layer=2, dense_ffn_per_moe_layer=2)
    c = m.param_counts()
    assert c.attention == 4 * 2 * m.attention.params(H)
    assert c.dense_ffn == 4 * 2 * 3 * H * 128
    assert m.kv_bytes_per_token("bf16") == 4 * 2 * 32 * 2


def test_mtp_excluded_from_total():
    m = model(mtp_layers=1)
    c = m.param_counts()
    assert c.mtp == 2 * H * H + 2 * H + m.attention.params(H) + 2 * H + 3 * H * 128 + H
    assert m.total_params == model().total_params
    assert c.total_with_mtp == c.total + c.mtp


def test_model_invariants():
    with pytest.raises(ValueError, match="ffn_dim is required"):
        model(ffn_dim=None)
    with pytest.raises(ValueError, match="selects no layer"):
        model(moe=moe(first_dense_layers=10))
    with pytest.raises(ValueError, match="hidden_size"):
        model(hidden_size=0)
    assert model(ffn_dim=None, moe=moe()).num_dense_layers == 0


# -- bytes and FLOPs -----------------------------------------------------------------
def test_weight_bytes_by_component_dtype():
    m = model(moe=moe(first_dense_layers=1))
    c = m.param_counts()
    d = ModelDtypes(weights="fp8", experts="fp4")
    expected = ((c.attention + c.dense_ffn) * 1 + c.routed_experts * 0.5 + (c.embedding + c.lm_head) * 2
                + c.norms * 2 + c.router * 2)
    assert m.weight_bytes(d) == expected
    assert m.weight_bytes(ModelDtypes(weights="bf16")) == 2 * c.total
    with pytest.raises(ValueError, match="dtype"):
        ModelDtypes(weights="fp12")


def test_kv_bytes_sliding_window_capped():
    m = model(attention=gqa(window_tokens=16, window_pattern=(True, False)))
    full = m.kv_bytes_per_token("bf16")
    assert full == 4 * 32 * 2
    # 2 windowed layers keep 16 tokens, 2 full layers keep 100
    assert m.kv_bytes(100, "bf16") == 32 * 2 * (2 * 16 + 2 * 100)
    assert m.kv_bytes_per_token("bf16", context_tokens=100) == pytest.approx(m.kv_bytes(100, "bf16") / 100)
    assert m.kv_bytes_per_token("bf16", context_tokens=10) == full
    assert m.kv_bytes_per_token("fp8") == full / 2


def test_flops_per_token():
    m = model(moe=moe())
    matmul = m.active_params("output") - m.param_counts().norms
    assert m.matmul_params_per_token() == matmul
    assert m.flops_per_token(0) == 2 * matmul
    # 4 layers x 2*H*c*(d+d)
    assert m.flops_per_token(100) - m.flops_per_token(0) == 4 * 2 * 8 * 100 * 16
    windowed = model(attention=gqa(window_tokens=16, window_pattern=(True,)))
    assert windowed.flops_per_token(100) - windowed.flops_per_token(0) == 4 * 2 * 8 * 16 * 16
    with pytest.raises(ValueError, match="context_tokens"):
        m.flops_per_token(-1)
