"""Attention blocks: MHA, GQA, MLA (DeepSeek latent attention), sliding and chunked windows."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.spec._checks import _positive

ATTENTION_KINDS = ("mha", "gqa", "mla")
WINDOW_KINDS = ("sliding", "chunked")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionSpec:
    """One attention block: MHA, GQA or DeepSeek's multi-head latent attention (MLA).

    ``window_tokens`` with ``window_pattern`` describe local attention: layer ``i`` attends
    to at most ``window_tokens`` past tokens when ``window_pattern[i % len(pattern)]`` is
    true. ``window_kind`` is ``sliding`` (gpt-oss: every other layer, window 128) or
    ``chunked`` (Llama 4: attention within 8192-token chunks on 3 of every 4 layers). For a
    chunked layer the number of attended tokens is at most the chunk size, which hwsim uses
    as its bound (KV kept and attention work).
    """

    kind: str
    num_heads: int
    num_kv_heads: int
    head_dim: int
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    window_tokens: int | None = None
    window_kind: str = "sliding"
    window_pattern: tuple[bool, ...] = ()
    sinks: bool = False
    qk_norm: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {', '.join(ATTENTION_KINDS)}, got {self.kind!r}")
        _positive("num_heads", self.num_heads)
        _positive("num_kv_heads", self.num_kv_heads)
        _positive("head_dim", self.head_dim)
        if self.kind == "mla":
            for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
                _positive(f"MLA {name}", getattr(self, name))
            _positive("q_lora_rank", self.q_lora_rank, optional=True)
        else:
            if self.num_heads % self.num_kv_heads:
                raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of "
                                 f"num_kv_heads ({self.num_kv_heads})")
            if self.kind == "mha" and self.num_kv_heads != self.num_heads:
                raise ValueError("mha needs num_kv_heads == num_heads; use kind: gqa otherwise")
        if self.window_kind not in WINDOW_KINDS:
            raise ValueError(f"window kind must be one of {', '.join(WINDOW_KINDS)}, got {self.window_kind!r}")
        if self.window_tokens is not None:
            _positive("window_tokens", self.window_tokens)
            if not any(self.window_pattern):
                raise ValueError("a window needs a pattern with at least one windowed layer")

    @property
    def qk_head_dim(self) -> int:
        """Query/key width per head: ``nope + rope`` for MLA, ``head_dim`` otherwise."""
        if self.kind == "mla":
            assert self.qk_nope_head_dim is not None
            assert self.qk_rope_head_dim is not None
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return self.head_dim

    @property
    def value_head_dim(self) -> int:
        """Value width per head: ``v_head_dim`` for MLA, ``head_dim`` otherwise."""
        return self.v_head_dim if self.kind == "mla" and self.v_head_dim else self.head_dim

    def windowed(self, layer: int) -> bool:
        """Whether ``layer`` uses local (sliding or chunked) attention."""
        if self.window_tokens is None or not self.window_pattern:
            return False
        return self.window_pattern[layer % len(self.window_pattern)]

    def params(self, hidden: int) -> int:
        """Weights of one block.

        GQA/MHA: ``q`` h*H*d + ``k, v`` 2*h*Hkv*d + ``o`` H*d*h, plus ``2d`` q/k-norm weights
        (per-head RMSNorm, as Qwen3) and ``H`` sink logits when present.
        MLA: ``q`` h*q_lora + q_lora (norm) + q_lora*H*(nope+rope) -- or h*H*(nope+rope)
        without query compression -- plus ``kv_a`` h*(kv_lora+rope) + kv_lora (norm) +
        ``kv_b`` kv_lora*H*(nope+v) + ``o`` H*v*h.
        """
        if self.kind == "mla":
            assert self.kv_lora_rank
            assert self.qk_rope_head_dim
            assert self.qk_nope_head_dim
            assert self.v_head_dim
            heads, qk = self.num_heads, self.qk_head_dim
            ql = self.q_lora_rank
            q = hidden * ql + ql + ql * heads * qk if ql else hidden * heads * qk
            kv = (hidden * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
                  + self.kv_lora_rank * heads * (self.qk_nope_head_dim + self.v_head_dim))
            total = q + kv + heads * self.v_head_dim * hidden
        else:
            total = hidden * self.head_dim * (2 * self.num_heads + 2 * self.num_kv_heads)
            total += 2 * self.head_dim if self.qk_norm else 0
        return total + (self.num_heads if self.sinks else 0)

    def kv_elems_per_token(self) -> int:
        """Cached elements per token: MLA ``kv_lora + rope`` (one latent shared by all heads);
        GQA/MHA ``2 * Hkv * d`` (a key and a value per KV head)."""
        if self.kind == "mla":
            assert self.kv_lora_rank is not None
            assert self.qk_rope_head_dim is not None
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def score_value_flops(self, attended: float, *, mla_absorbed: bool = False) -> float:
        """FLOPs of ``QK^T`` and ``PV`` for one query attending to ``attended`` tokens.

        ``2 * H * attended * (d_qk + d_v)``. For MLA the default is the non-absorbed form
        (d_qk = nope+rope, d_v = v_head_dim, keys/values decompressed once per token); with
        ``mla_absorbed`` (decode kernels such as FlashMLA) the scores run over the latent,
        d_qk = kv_lora+rope and d_v = kv_lora. The absorbed projections W_UK, W_UV have as many
        weights as ``kv_b``, so the matmul FLOPs are unchanged.
        """
        if self.kind == "mla" and mla_absorbed:
            assert self.kv_lora_rank is not None
            assert self.qk_rope_head_dim is not None
            d_qk, d_v = self.kv_lora_rank + self.qk_rope_head_dim, self.kv_lora_rank
        else:
            d_qk, d_v = self.qk_head_dim, self.value_head_dim
        return 2.0 * self.num_heads * attended * (d_qk + d_v)
