"""Stage 2 builder for model files: schema-checked mapping -> :class:`~hwsim.spec.model.Model`.

Semantic checks run here with the field path of the offending value (``moe.top_k``,
``attention.num_kv_heads``, ...); the dataclasses hold the same invariants as a backstop.
"""

from __future__ import annotations

import re
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.fields import Fields, build, sources_of
from hwsim.io.load import Context, builder
from hwsim.io.source import Document
from hwsim.spec.model import AttentionSpec, Model, ModelDtypes, MoESpec, PublishedParams

_SCALE = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
_COUNT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMBT])\s*$")


def parse_count(text: Any, path: str) -> float:
    """``'671B'`` -> 6.71e11. A parameter count must carry its scale (K, M, B, T)."""
    m = _COUNT_RE.match(text) if isinstance(text, str) else None
    if m is None:
        raise SpecError("expected a parameter count with a scale", path=path,
                        expected="e.g. '671B', '46.7B', '1T'", found=text)
    return float(m.group(1)) * _SCALE[m.group(2)]


def count_digits(text: str) -> int:
    """Decimals shown in a count: ``'46.7B'`` -> 1 (used for rounding-aware comparisons)."""
    m = _COUNT_RE.match(text)
    return len(m.group(1).split(".")[1]) if m and "." in m.group(1) else 0


def _attention(f: Fields, hidden: int) -> AttentionSpec:
    kind = f.require("kind")
    heads = f.require("num_heads")
    kv_heads = f.get("num_kv_heads", heads)
    if kind == "mla":
        for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if not f.has(key):
                raise SpecError(f"multi-head latent attention needs '{key}'", path=f.at(key),
                                expected="a positive integer")
        head_dim = f.get("head_dim", f.data["qk_nope_head_dim"] + f.data["qk_rope_head_dim"])
    else:
        if heads % kv_heads:
            raise SpecError(f"num_heads ({heads}) must be a multiple of num_kv_heads", path=f.at("num_kv_heads"),
                            expected=f"a divisor of {heads}", found=kv_heads)
        if kind == "mha" and kv_heads != heads:
            raise SpecError("mha has one key/value head per query head; use kind: gqa",
                            path=f.at("num_kv_heads"), expected=str(heads), found=kv_heads)
        if not f.has("head_dim") and hidden % heads:
            raise SpecError("give head_dim: hidden_size is not a multiple of num_heads", path=f.at("head_dim"))
        head_dim = f.get("head_dim", hidden // heads)
    w = f.sub("window")
    pattern = tuple(p == "window" for p in w.get("pattern", []))
    if w.data and not any(pattern):
        raise SpecError("a window pattern needs at least one 'window' layer", path=w.at("pattern"),
                        found=w.get("pattern"))
    att: AttentionSpec = build(f.path, AttentionSpec, kind=kind, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
                 q_lora_rank=f.get("q_lora_rank"), kv_lora_rank=f.get("kv_lora_rank"),
                 qk_nope_head_dim=f.get("qk_nope_head_dim"), qk_rope_head_dim=f.get("qk_rope_head_dim"),
                 v_head_dim=f.get("v_head_dim"), window_tokens=w.get("tokens"),
                 window_kind=w.get("kind", "sliding"), window_pattern=pattern,
                 sinks=f.get("sinks", False), qk_norm=f.get("qk_norm", False))
    return att


def _check_moe(f: Fields) -> None:
    experts, top_k = f.require("num_experts"), f.require("top_k")
    zero = f.get("num_zero_experts", 0)
    if top_k > experts + zero:
        raise SpecError("top_k is larger than the number of experts", path=f.at("top_k"),
                        expected=f"at most {experts + zero}", found=top_k)
    groups = f.get("num_expert_groups", 1)
    if experts % groups:
        raise SpecError("num_experts must split evenly into groups", path=f.at("num_expert_groups"),
                        expected=f"a divisor of {experts}", found=groups)
    if f.has("topk_groups") and f.get("topk_groups") > groups:
        raise SpecError("topk_groups cannot exceed num_expert_groups", path=f.at("topk_groups"),
                        expected=f"at most {groups}", found=f.get("topk_groups"))
    if f.get("moge", False) and top_k % groups:
        raise SpecError("MoGE picks the same number of experts in every group: top_k must be a multiple "
                        "of num_expert_groups", path=f.at("moge"), expected=f"top_k divisible by {groups}",
                        found=top_k)
    expected = f.get("expected_real_experts")
    if expected is not None and expected > top_k:
        raise SpecError("expected_real_experts cannot exceed top_k", path=f.at("expected_real_experts"),
                        expected=f"at most {top_k}", found=expected)


def _moe(f: Fields) -> MoESpec | None:
    if not f.data:
        return None
    _check_moe(f)
    lay = f.sub("layers")
    spec: MoESpec = build(f.path, MoESpec, num_experts=f.require("num_experts"), top_k=f.require("top_k"),
                 expert_ffn_dim=f.require("expert_ffn_dim"),
                 num_shared_experts=f.get("num_shared_experts", 0),
                 shared_expert_ffn_dim=f.get("shared_expert_ffn_dim"),
                 num_expert_groups=f.get("num_expert_groups", 1), topk_groups=f.get("topk_groups"),
                 moge=f.get("moge", False), num_zero_experts=f.get("num_zero_experts", 0),
                 expected_real_experts=f.get("expected_real_experts"), scoring=f.get("scoring", "softmax"),
                 router_dtype=f.get("router_dtype", "bf16"), first_dense_layers=lay.get("first_dense", 0),
                 layer_interval=lay.get("interval", 1), layer_phase=lay.get("phase", 0),
                 dense_layers=tuple(lay.get("dense", [])))
    return spec


def _published(f: Fields) -> PublishedParams | None:
    if not f.data:
        return None
    counts = {}
    for key in ("total_params", "active_params", "active_params_min", "active_params_max"):
        counts[key] = parse_count(f.data[key], f.at(key)) if f.has(key) else None
    pub: PublishedParams = build(f.path, PublishedParams, total=counts["total_params"], active=counts["active_params"],
                 active_min=counts["active_params_min"], active_max=counts["active_params_max"],
                 active_embeddings=f.get("active_counts", "both"), source=f.source())
    return pub


@builder("model")
def build_model(f: Fields, ctx: Context, doc: Document) -> Model:
    """Build a :class:`Model` from a schema-checked ``kind: model`` mapping."""
    hidden = f.require("hidden_size")
    moe = _moe(f.sub("moe"))
    if moe is not None and f.get("moe", {}).get("layers", {}).get("phase", 0) >= moe.layer_interval:
        raise SpecError("layers.phase must be smaller than layers.interval", path=f.at("moe.layers.phase"))
    dt = f.sub("dtypes")
    dtypes = build(dt.path, ModelDtypes, **dt.data)
    model_fields: dict[str, Any] = dict(
        name=f.require("name"), family=f.require("family"), num_layers=f.require("num_layers"),
        hidden_size=hidden, vocab_size=f.require("vocab_size"), attention=_attention(f.sub("attention"), hidden),
        max_context_tokens=f.require("max_context_tokens"), ffn_dim=f.get("ffn_dim"),
        gated_ffn=f.get("gated_ffn", True), moe=moe, mtp_layers=f.get("mtp_layers", 0),
        tie_word_embeddings=f.get("tie_word_embeddings", False),
        attention_per_layer=f.get("attention_per_layer", 1),
        dense_ffn_per_moe_layer=f.get("dense_ffn_per_moe_layer", 0), dtypes=dtypes,
        published=_published(f.sub("published")), sources=sources_of(f), notes=f.get("notes", ""),
    )
    if moe is not None and not any(moe.is_moe_layer(i) for i in range(model_fields["num_layers"])):
        raise SpecError("the MoE layer rule selects no layer", path=f.at("moe.layers"))
    if model_fields["ffn_dim"] is None:
        n_moe = sum(moe.is_moe_layer(i) for i in range(model_fields["num_layers"])) if moe else 0
        if n_moe < model_fields["num_layers"] or model_fields["dense_ffn_per_moe_layer"]:
            raise SpecError("ffn_dim is required: the model has dense FFN layers", path=f.at("ffn_dim"),
                            expected="the dense intermediate size (config intermediate_size)")
    model: Model = build(f.path, Model, **model_fields)
    return model
