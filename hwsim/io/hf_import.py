"""Convert a Hugging Face ``config.json`` into an hwsim model mapping (the YAML format).

>>> cfg = {"model_type": "mixtral", "num_hidden_layers": 32, "hidden_size": 4096,
...        "vocab_size": 32000, "max_position_embeddings": 32768, "num_attention_heads": 32,
...        "num_key_value_heads": 8, "intermediate_size": 14336, "num_local_experts": 8,
...        "num_experts_per_tok": 2, "torch_dtype": "bfloat16"}
>>> data = import_hf_config(cfg, name="mixtral-8x7b")
>>> data["moe"]["num_experts"], data["attention"]["num_kv_heads"]
(8, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import yaml

from hwsim.errors import SpecError
from hwsim.spec.model import Model

_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "float8_e4m3fn": "fp8"}


class _Config:
    """A config.json mapping with located errors for missing keys."""

    def __init__(self, data: Mapping[str, Any], file: str | None) -> None:
        self.data, self.file = data, file

    def req(self, key: str) -> Any:
        value = self.data.get(key)
        if value is None:
            raise SpecError(f"config.json has no '{key}'", file=self.file, path=key, expected="a value")
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self.data.get(key)
        return default if value is None else value


def _base(c: _Config, family: str) -> dict[str, Any]:
    return {
        "family": family,
        "num_layers": c.req("num_hidden_layers"),
        "hidden_size": c.req("hidden_size"),
        "vocab_size": c.req("vocab_size"),
        "max_context_tokens": c.req("max_position_embeddings"),
        "gated_ffn": True,
        "tie_word_embeddings": bool(c.get("tie_word_embeddings", False)),
    }


def _gqa(c: _Config, **extra: Any) -> dict[str, Any]:
    heads = c.req("num_attention_heads")
    kv = c.get("num_key_value_heads", heads)
    head_dim = c.get("head_dim", c.req("hidden_size") // heads)
    att = {"kind": "gqa" if kv != heads else "mha", "num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim}
    att.update({k: v for k, v in extra.items() if v})
    return att


def _period(pattern: list[str]) -> list[str]:
    """Shortest repeating unit of a per-layer pattern: ``[w, f, w, f]`` -> ``[w, f]``."""
    for p in range(1, len(pattern) + 1):
        if len(pattern) % p == 0 and pattern == pattern[:p] * (len(pattern) // p):
            return pattern[:p]
    return pattern


def _window_all_layers(c: _Config) -> dict[str, Any] | None:
    window = c.get("sliding_window")
    if not window or c.get("use_sliding_window") is False:
        return None
    return {"tokens": window, "kind": "sliding", "pattern": ["window"]}


def _deepseek(c: _Config) -> dict[str, Any]:
    out = _base(c, "deepseek")
    out["ffn_dim"] = c.req("intermediate_size")
    out["mtp_layers"] = c.get("num_nextn_predict_layers", 0)
    out["attention"] = {"kind": "mla", "num_heads": c.req("num_attention_heads"),
                        "q_lora_rank": c.get("q_lora_rank"), "kv_lora_rank": c.req("kv_lora_rank"),
                        "qk_nope_head_dim": c.req("qk_nope_head_dim"),
                        "qk_rope_head_dim": c.req("qk_rope_head_dim"), "v_head_dim": c.req("v_head_dim")}
    moe: dict[str, Any] = {"num_experts": c.req("n_routed_experts"), "top_k": c.req("num_experts_per_tok"),
                           "expert_ffn_dim": c.req("moe_intermediate_size"),
                           "num_shared_experts": c.get("n_shared_experts", 0),
                           "scoring": c.get("scoring_func", "softmax")}
    if c.get("n_group", 1) > 1:
        moe.update(num_expert_groups=c.get("n_group"), topk_groups=c.get("topk_group"))
    moe["layers"] = {"first_dense": c.get("first_k_dense_replace", 0), "interval": c.get("moe_layer_freq", 1)}
    out["moe"] = moe
    return out


def _mixtral(c: _Config) -> dict[str, Any]:
    out = _base(c, "mixtral")
    out["attention"] = _gqa(c, window=_window_all_layers(c))
    out["moe"] = {"num_experts": c.req("num_local_experts"), "top_k": c.req("num_experts_per_tok"),
                  "expert_ffn_dim": c.req("intermediate_size"), "scoring": "softmax"}
    return out


def _qwen_moe(c: _Config) -> dict[str, Any]:
    out = _base(c, "qwen3-moe" if c.get("model_type") == "qwen3_moe" else "qwen2-moe")
    qk_norm = c.get("model_type") == "qwen3_moe"
    out["attention"] = _gqa(c, qk_norm=qk_norm, window=_window_all_layers(c))
    step = c.get("decoder_sparse_step", 1)
    dense = list(c.get("mlp_only_layers", []))
    moe: dict[str, Any] = {"num_experts": c.req("num_experts"), "top_k": c.req("num_experts_per_tok"),
                           "expert_ffn_dim": c.req("moe_intermediate_size"), "scoring": "softmax",
                           "layers": {"interval": step, "phase": step - 1, "dense": dense}}
    if c.get("shared_expert_intermediate_size", 0) > 0:
        moe.update(num_shared_experts=1, shared_expert_ffn_dim=c.get("shared_expert_intermediate_size"))
    out["moe"] = moe
    if step > 1 or dense:
        out["ffn_dim"] = c.req("intermediate_size")
    return out


def _gpt_oss(c: _Config) -> dict[str, Any]:
    out = _base(c, "gpt-oss")
    kinds = c.get("layer_types") or []
    pattern = ["window" if k == "sliding_attention" else "full" for k in kinds] or ["window", "full"]
    window = {"tokens": c.req("sliding_window"), "kind": "sliding", "pattern": _period(pattern)}
    out["attention"] = _gqa(c, sinks=True, window=window)
    top_k = c.get("experts_per_token") or c.req("num_experts_per_tok")
    out["moe"] = {"num_experts": c.req("num_local_experts"), "top_k": top_k,
                  "expert_ffn_dim": c.req("intermediate_size"), "scoring": "softmax"}
    return out


def _llama4(c: _Config) -> dict[str, Any]:
    out = _base(c, "llama4")
    step = c.get("interleave_moe_layer_step", 1)
    layers = c.req("num_hidden_layers")
    chunk = c.get("attention_chunk_size")
    window = None
    if chunk:
        nope = c.get("no_rope_layers") or []
        pattern = (["window" if flag else "full" for flag in nope][:layers] if nope
                   else ["window", "window", "window", "full"])  # no_rope_layer_interval 4
        window = {"tokens": chunk, "kind": "chunked", "pattern": _period(pattern)}
    out["attention"] = _gqa(c, qk_norm=bool(c.get("use_qk_norm", False)), window=window)
    out["moe"] = {"num_experts": c.req("num_local_experts"), "top_k": c.req("num_experts_per_tok"),
                  "expert_ffn_dim": c.req("intermediate_size"), "num_shared_experts": 1,
                  "scoring": "sigmoid", "layers": {"interval": step, "phase": step - 1}}
    if step > 1:
        out["ffn_dim"] = c.req("intermediate_size_mlp")
    return out


def _olmoe(c: _Config) -> dict[str, Any]:
    out = _base(c, "olmoe")
    out["attention"] = _gqa(c, qk_norm=True)
    out["moe"] = {"num_experts": c.req("num_experts"), "top_k": c.req("num_experts_per_tok"),
                  "expert_ffn_dim": c.req("intermediate_size"), "scoring": "softmax"}
    return out


def _dense(family: str, qk_norm: bool = False) -> Callable[[_Config], dict[str, Any]]:
    def convert(c: _Config) -> dict[str, Any]:
        out = _base(c, family)
        out["ffn_dim"] = c.req("intermediate_size")
        out["attention"] = _gqa(c, qk_norm=qk_norm, window=_window_all_layers(c))
        return out

    return convert


CONVERTERS: dict[str, Callable[[_Config], dict[str, Any]]] = {
    "deepseek_v3": _deepseek,
    "deepseek_v2": _deepseek,
    "kimi_k2": _deepseek,
    "mixtral": _mixtral,
    "qwen3_moe": _qwen_moe,
    "qwen2_moe": _qwen_moe,
    "gpt_oss": _gpt_oss,
    "llama4": _llama4,
    "llama4_text": _llama4,
    "olmoe": _olmoe,
    "llama": _dense("llama"),
    "mistral": _dense("mistral"),
    "qwen2": _dense("qwen2"),
    "qwen3": _dense("qwen3", qk_norm=True),
}
"""Supported ``model_type`` values and their converters."""


def _dtypes(c: _Config, top: Mapping[str, Any]) -> dict[str, str]:
    torch_dtype = c.get("torch_dtype") or c.get("dtype") or top.get("torch_dtype") or "bfloat16"
    weights = _DTYPES.get(str(torch_dtype), "bf16")
    out = {"weights": weights, "activations": "bf16", "kv": "bf16"}
    quant = top.get("quantization_config") or c.get("quantization_config") or {}
    method = str(quant.get("quant_method", "")).lower()
    if method == "fp8":
        out["weights"] = "fp8"
    elif method == "mxfp4":
        out["experts"] = "fp4"
    return out


def import_hf_config(config: Mapping[str, Any], *, name: str, source: str | None = None) -> dict[str, Any]:
    """Return the hwsim model mapping for a Hugging Face ``config.json`` (already parsed).

    Raises :class:`SpecError` for an unknown ``model_type`` (listing the supported ones) or a
    missing key. The result is validated by building a :class:`Model` from it.
    """
    if not isinstance(config, Mapping):
        raise SpecError("a config.json must hold a JSON object", file=source, found=type(config).__name__)
    model_type = str(config.get("model_type", ""))
    text = config.get("text_config")
    inner = text if isinstance(text, Mapping) and model_type in ("llama4",) else config
    if model_type not in CONVERTERS:
        known = ", ".join(sorted(CONVERTERS))
        raise SpecError(f"unsupported model_type '{model_type}'; supported: {known}", file=source,
                        path="model_type", expected=f"one of {known}", found=model_type or None)
    c = _Config(inner, source)
    data: dict[str, Any] = {"version": 1, "kind": "model", "name": name,
                            "title": f"{name} (imported from a Hugging Face config.json)"}
    body = CONVERTERS[model_type](c)
    if inner is not config and "tie_word_embeddings" in config:
        body["tie_word_embeddings"] = bool(config["tie_word_embeddings"])
    data.update(body)
    data["dtypes"] = _dtypes(c, config)
    data["sources"] = {"config": {"text": f"Hugging Face config.json ({source or 'imported'})"}}
    validate_import(data, source)
    return data


def validate_import(data: dict[str, Any], source: str | None = None) -> Model:
    """Build the :class:`Model` an imported mapping describes (schema and semantic checks)."""
    from hwsim.io.load import Context, _ensure_builders
    from hwsim.io.source import Document

    _ensure_builders()
    doc = Document(data=data, file=source or "<imported config.json>")
    model: Model = Context().build("model", data, doc=doc, prefix="")
    return model


def to_yaml(data: Mapping[str, Any]) -> str:
    """The model mapping as YAML, keys in the order of the format (see ``docs/models.md``)."""
    text: str = yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return text
