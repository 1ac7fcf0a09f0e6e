"""Frozen descriptions of a (Mixture-of-Experts) transformer and its derived sizes.

A :class:`Model` holds the architecture as published in the model's Hugging Face
``config.json`` (dimensions are element counts, not bytes) and derives, by pure arithmetic:

* :meth:`Model.param_counts` -- parameters per component (:class:`ParamCounts`);
* :meth:`Model.active_params` -- parameters used per token;
* :meth:`Model.weight_bytes` -- bytes of weights for a choice of dtypes;
* :meth:`Model.kv_bytes_per_token` / :meth:`Model.kv_bytes` -- KV-cache size;
* :meth:`Model.flops_per_token` -- forward FLOPs of one token at a given context.

Notation used in the formulas below: ``h`` hidden size, ``V`` vocabulary, ``L`` layers,
``H`` query heads, ``Hkv`` key/value heads, ``d`` head dim, ``f`` an FFN's intermediate size,
``E`` routed experts, ``Z`` zero-computation experts, ``S`` shared experts, ``k`` top-k.

>>> att = AttentionSpec(kind="gqa", num_heads=4, num_kv_heads=2, head_dim=8)
>>> m = Model(name="toy", family="toy", num_layers=2, hidden_size=32, vocab_size=100,
...           attention=att, ffn_dim=64, max_context_tokens=1024)
>>> m.param_counts().attention            # L * h*d*(2H + 2Hkv) = 2 * 32*8*12
6144
>>> m.kv_bytes_per_token("bf16")          # L * 2*Hkv*d * 2 B = 2 * 32 * 2
128.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hwsim.spec.dtypes import COMPUTE_DTYPES, bytes_per_elem
from hwsim.spec.hardware import Source

ATTENTION_KINDS = ("mha", "gqa", "mla")
WINDOW_KINDS = ("sliding", "chunked")
ROUTER_SCORING = ("softmax", "sigmoid")
EMBEDDING_CONVENTIONS = ("both", "output", "none")
"""Which vocabulary matrices a published *active* count includes: input embedding and output
head (``both``), the output head only (``output``), or neither (``none``)."""

EmbeddingConvention = Literal["both", "output", "none"]


def _positive(name: str, value: int | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class MoESpec:
    """Routed experts, shared experts, routing constraints and which layers are MoE.

    Layer rule: layer ``i`` is an MoE layer when ``i >= first_dense_layers`` and
    ``i % layer_interval == layer_phase`` and ``i not in dense_layers``. DeepSeek's
    ``first_k_dense_replace=3`` is ``first_dense_layers=3``; Llama-4 Maverick's
    ``interleave_moe_layer_step=2`` (MoE on layers 1, 3, 5, ...) is ``layer_interval=2,
    layer_phase=1``; Qwen's ``mlp_only_layers`` are ``dense_layers``.

    Routing: ``num_expert_groups`` groups with at most ``topk_groups`` of them per token
    (DeepSeek group-limited routing; ``None`` = any group). With ``moge`` (Pangu's Mixture
    of Grouped Experts) every group contributes exactly ``top_k / num_expert_groups`` experts.
    ``num_zero_experts`` are LongCat-Flash's zero-computation (identity) experts: they take
    router slots but no weights; ``expected_real_experts`` is the published mean number of
    real experts per token, else hwsim assumes uniform routing, ``k * E / (E + Z)``.
    """

    num_experts: int
    top_k: int
    expert_ffn_dim: int
    num_shared_experts: int = 0
    shared_expert_ffn_dim: int | None = None
    num_expert_groups: int = 1
    topk_groups: int | None = None
    moge: bool = False
    num_zero_experts: int = 0
    expected_real_experts: float | None = None
    scoring: str = "softmax"
    router_dtype: str = "bf16"
    first_dense_layers: int = 0
    layer_interval: int = 1
    layer_phase: int = 0
    dense_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _positive("num_experts", self.num_experts)
        _positive("top_k", self.top_k)
        _positive("expert_ffn_dim", self.expert_ffn_dim)
        slots = self.num_experts + self.num_zero_experts
        if self.top_k > slots:
            raise ValueError(f"top_k ({self.top_k}) exceeds the {slots} experts a token can pick from")
        if self.num_shared_experts < 0 or self.num_zero_experts < 0:
            raise ValueError("expert counts must be >= 0")
        _positive("shared_expert_ffn_dim", self.shared_expert_ffn_dim, optional=True)
        self._check_groups()
        if self.expected_real_experts is not None and not 0 <= self.expected_real_experts <= self.top_k:
            raise ValueError(f"expected_real_experts must be in [0, top_k={self.top_k}], "
                             f"got {self.expected_real_experts:g}")
        if self.scoring not in ROUTER_SCORING:
            raise ValueError(f"router scoring must be one of {', '.join(ROUTER_SCORING)}, got {self.scoring!r}")
        if self.router_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown router dtype {self.router_dtype!r}; known: {', '.join(COMPUTE_DTYPES)}")
        if self.first_dense_layers < 0:
            raise ValueError("first_dense_layers must be >= 0")
        _positive("layer_interval", self.layer_interval)
        if not 0 <= self.layer_phase < self.layer_interval:
            raise ValueError(f"layer_phase must be in [0, {self.layer_interval}), got {self.layer_phase}")

    def _check_groups(self) -> None:
        groups = self.num_expert_groups
        _positive("num_expert_groups", groups)
        if self.num_experts % groups:
            raise ValueError(f"num_experts ({self.num_experts}) must be a multiple of num_expert_groups ({groups})")
        if self.topk_groups is not None:
            if not 0 < self.topk_groups <= groups:
                raise ValueError(f"topk_groups ({self.topk_groups}) must be in [1, num_expert_groups={groups}]")
            if self.top_k > self.topk_groups * (self.num_experts // groups):
                raise ValueError(f"top_k ({self.top_k}) cannot fit in {self.topk_groups} groups of "
                                 f"{self.num_experts // groups} experts")
        if self.moge and self.top_k % groups:
            raise ValueError(f"MoGE needs top_k ({self.top_k}) divisible by num_expert_groups ({groups})")

    @property
    def experts_per_group(self) -> int:
        return self.num_experts // self.num_expert_groups

    @property
    def k_per_group(self) -> int | None:
        """Experts chosen in each group under MoGE (``top_k / groups``); None otherwise."""
        return self.top_k // self.num_expert_groups if self.moge else None

    @property
    def real_experts_per_token(self) -> float:
        """Mean routed experts with weights per token: ``top_k`` without zero experts."""
        if self.num_zero_experts == 0:
            return float(self.top_k)
        if self.expected_real_experts is not None:
            return self.expected_real_experts
        return self.top_k * self.num_experts / (self.num_experts + self.num_zero_experts)

    def is_moe_layer(self, layer: int) -> bool:
        return (layer >= self.first_dense_layers and layer % self.layer_interval == self.layer_phase
                and layer not in self.dense_layers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDtypes:
    """Default storage/compute formats. ``experts`` overrides ``weights`` for routed experts
    (gpt-oss ships MXFP4 experts); embeddings, output head and norms keep ``embedding`` and
    ``norm`` (bf16 in every checkpoint in the catalog); the router keeps ``MoESpec.router_dtype``."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv: str = "bf16"
    experts: str | None = None
    embedding: str = "bf16"
    norm: str = "bf16"

    def __post_init__(self) -> None:
        for name in ("weights", "activations", "kv", "experts", "embedding", "norm"):
            value = getattr(self, name)
            if value is not None and value not in COMPUTE_DTYPES:
                raise ValueError(f"unknown {name} dtype {value!r}; known: {', '.join(COMPUTE_DTYPES)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedParams:
    """Parameter counts as the publisher states them, for comparison with the derived ones.

    ``active_embeddings`` says which vocabulary matrices the publisher's active count
    includes (see :data:`EMBEDDING_CONVENTIONS`). ``active_min/max`` give a published range
    (LongCat-Flash activates 18.6B-31.3B depending on the token).
    """

    total: float | None = None
    active: float | None = None
    active_min: float | None = None
    active_max: float | None = None
    active_embeddings: str = "both"
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.active_embeddings not in EMBEDDING_CONVENTIONS:
            raise ValueError(f"active_embeddings must be one of {', '.join(EMBEDDING_CONVENTIONS)}")
        for name in ("total", "active", "active_min", "active_max"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"published {name} must be > 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class ParamCounts:
    """Parameters per component (counts of weights, not bytes)."""

    embedding: int
    lm_head: int
    attention: int
    dense_ffn: int
    router: int
    shared_experts: int
    routed_experts: int
    routed_expert_one: int
    norms: int
    mtp: int

    @property
    def total(self) -> int:
        """Everything except the multi-token-prediction modules, as publishers count."""
        return (self.embedding + self.lm_head + self.attention + self.dense_ffn + self.router
                + self.shared_experts + self.routed_experts + self.norms)

    @property
    def total_with_mtp(self) -> int:
        return self.total + self.mtp


@dataclass(frozen=True, slots=True, kw_only=True)
class Model:
    """A decoder-only transformer, dense or MoE.

    ``attention_per_layer`` and ``dense_ffn_per_moe_layer`` describe LongCat-Flash's
    shortcut-connected layers (2 attention blocks and 2 dense FFNs beside the MoE in each of
    its 28 layers); they are 1 and 0 for an ordinary decoder. ``mtp_layers`` counts
    DeepSeek-style multi-token-prediction modules, which publishers leave out of totals.
    """

    name: str
    family: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    attention: AttentionSpec
    max_context_tokens: int
    ffn_dim: int | None = None
    gated_ffn: bool = True
    moe: MoESpec | None = None
    mtp_layers: int = 0
    tie_word_embeddings: bool = False
    attention_per_layer: int = 1
    dense_ffn_per_moe_layer: int = 0
    dtypes: ModelDtypes = field(default_factory=ModelDtypes)
    published: PublishedParams | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "vocab_size", "max_context_tokens", "attention_per_layer"):
            _positive(name, getattr(self, name))
        _positive("ffn_dim", self.ffn_dim, optional=True)
        if self.mtp_layers < 0 or self.dense_ffn_per_moe_layer < 0:
            raise ValueError("mtp_layers and dense_ffn_per_moe_layer must be >= 0")
        moe_layers = self.moe_layer_indices
        if self.moe is not None and not moe_layers:
            raise ValueError("the MoE layer rule selects no layer")
        needs_ffn = len(moe_layers) < self.num_layers or self.dense_ffn_per_moe_layer > 0
        if needs_ffn and self.ffn_dim is None:
            raise ValueError("ffn_dim is required: the model has dense FFN layers")

    # -- structure -----------------------------------------------------------------
    @property
    def moe_layer_indices(self) -> tuple[int, ...]:
        """Indices (0-based) of the layers whose FFN is a mixture of experts."""
        if self.moe is None:
            return ()
        return tuple(i for i in range(self.num_layers) if self.moe.is_moe_layer(i))

    @property
    def num_moe_layers(self) -> int:
        return len(self.moe_layer_indices)

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    def _ffn_params(self, dim: int) -> int:
        """One FFN: gated (SwiGLU: gate, up, down) ``3*h*f``; plain MLP ``2*h*f``."""
        return (3 if self.gated_ffn else 2) * self.hidden_size * dim

    # -- parameters ----------------------------------------------------------------
    def param_counts(self) -> ParamCounts:
        """Parameters per component.

        embedding ``V*h``; lm_head ``V*h`` unless tied; attention ``L * attention_per_layer *
        AttentionSpec.params``; dense FFN ``(dense layers + MoE layers * dense_ffn_per_moe_layer)
        * ffn(ffn_dim)``; router ``MoE layers * h * (E + Z)``; shared ``MoE layers * S *
        ffn(shared dim)``; routed ``MoE layers * E * ffn(expert dim)``; norms ``2h`` per
        attention block plus the final ``h``; MTP per module ``2h*h`` (projection) + ``2h``
        (norms) + one MoE (or dense) layer + ``h`` (head norm) -- the embedding and output head
        are shared with the main model.
        """
        h, moe = self.hidden_size, self.moe
        n_moe, n_dense = self.num_moe_layers, self.num_dense_layers
        attention_one = self.attention.params(h)
        dense_one = self._ffn_params(self.ffn_dim) if self.ffn_dim else 0
        expert_one = self._ffn_params(moe.expert_ffn_dim) if moe else 0
        router_one = h * (moe.num_experts + moe.num_zero_experts) if moe else 0
        shared_one = (moe.num_shared_experts * self._ffn_params(moe.shared_expert_ffn_dim or moe.expert_ffn_dim)
                      if moe else 0)
        extra_dense = n_moe * self.dense_ffn_per_moe_layer
        norms_one = 2 * h * self.attention_per_layer
        ffn_one = (router_one + shared_one + (moe.num_experts if moe else 0) * expert_one
                   + self.dense_ffn_per_moe_layer * dense_one) if moe else dense_one
        mtp_one = 2 * h * h + 2 * h + self.attention_per_layer * attention_one + norms_one + ffn_one + h
        return ParamCounts(
            embedding=self.vocab_size * h,
            lm_head=0 if self.tie_word_embeddings else self.vocab_size * h,
            attention=self.num_layers * self.attention_per_layer * attention_one,
            dense_ffn=(n_dense + extra_dense) * dense_one,
            router=n_moe * router_one,
            shared_experts=n_moe * shared_one,
            routed_experts=n_moe * (moe.num_experts if moe else 0) * expert_one,
            routed_expert_one=expert_one,
            norms=self.num_layers * norms_one + h,
            mtp=self.mtp_layers * mtp_one,
        )

    @property
    def total_params(self) -> int:
        """All weights except MTP modules (see :attr:`mtp_params`), as published totals count."""
        return self.param_counts().total

    @property
    def mtp_params(self) -> int:
        return self.param_counts().mtp

    def active_params(self, embeddings: EmbeddingConvention = "both") -> float:
        """Parameters used by one token (MTP excluded).

        ``total - routed + MoE layers * real_experts_per_token * one expert``, where real
        experts per token is ``top_k`` (or the expected count with zero-computation
        experts). ``embeddings`` picks the vocabulary matrices counted: ``both`` (Mistral,
        Qwen, Meta, AI2 count this way), ``output`` (the head multiplies every token but the
        input embedding is a row lookup: DeepSeek, Moonshot, OpenAI's gpt-oss card, LongCat),
        or ``none``.
        """
        if embeddings not in EMBEDDING_CONVENTIONS:
            raise ValueError(f"embeddings must be one of {', '.join(EMBEDDING_CONVENTIONS)}, got {embeddings!r}")
        c = self.param_counts()
        routed = self.num_moe_layers * self.moe.real_experts_per_token * c.routed_expert_one if self.moe else 0.0
        body = c.total - c.embedding - c.lm_head - c.routed_experts + routed
        vocab = {"both": c.embedding + c.lm_head, "output": c.lm_head or c.embedding, "none": 0}[embeddings]
        return body + vocab

    @property
    def active_params_per_token(self) -> float:
        """:meth:`active_params` with both embedding matrices, the most common published convention."""
        return self.active_params("both")

    # -- bytes ---------------------------------------------------------------------
    def weight_bytes(self, dtypes: ModelDtypes | None = None, *, include_mtp: bool = False) -> float:
        """Bytes of weights: linear layers (attention, dense FFN, shared experts) at
        ``dtypes.weights``, routed experts at ``dtypes.experts`` (else ``weights``), embedding
        and output head at ``dtypes.embedding``, norms at ``dtypes.norm``, router at
        ``moe.router_dtype``. MTP modules, when included, count as linear weights.
        Quantisation scales (block scales of fp8/fp4 formats) are not included.
        """
        d = dtypes or self.dtypes
        c = self.param_counts()
        linear = c.attention + c.dense_ffn + c.shared_experts + (c.mtp if include_mtp else 0)
        router_dtype = self.moe.router_dtype if self.moe else "bf16"
        return (linear * bytes_per_elem(d.weights)
                + c.routed_experts * bytes_per_elem(d.experts or d.weights)
                + (c.embedding + c.lm_head) * bytes_per_elem(d.embedding)
                + c.norms * bytes_per_elem(d.norm)
                + c.router * bytes_per_elem(router_dtype))

    def _cached_tokens(self, layer: int, context_tokens: float) -> float:
        att = self.attention
        if att.windowed(layer):
            assert att.window_tokens is not None
            return min(context_tokens, float(att.window_tokens))
        return context_tokens

    def kv_bytes(self, context_tokens: float, kv_dtype: str | None = None) -> float:
        """KV-cache bytes of one sequence of ``context_tokens`` tokens.

        ``sum over layers of attention_per_layer * kv_elems_per_token * cached tokens *
        bytes(kv_dtype)``, where cached tokens is ``min(context, window)`` on windowed layers.
        MTP layers are not included.
        """
        per_token = self.attention.kv_elems_per_token() * self.attention_per_layer
        elems = sum(per_token * self._cached_tokens(i, context_tokens) for i in range(self.num_layers))
        return elems * bytes_per_elem(kv_dtype or self.dtypes.kv)

    def kv_bytes_per_token(self, kv_dtype: str | None = None, context_tokens: float | None = None) -> float:
        """KV-cache bytes per token.

        Without ``context_tokens``: ``L * attention_per_layer * kv_elems_per_token *
        bytes(kv_dtype)`` (every layer keeps every token; DeepSeek-V3 in bf16:
        61 * (512 + 64) * 2 B = 70,272 B). With it: ``kv_bytes(context) / context``, which
        caps windowed layers at their window.
        """
        if context_tokens is None:
            per_token = self.attention.kv_elems_per_token() * self.attention_per_layer * self.num_layers
            return per_token * bytes_per_elem(kv_dtype or self.dtypes.kv)
        if context_tokens <= 0:
            raise ValueError(f"context_tokens must be > 0, got {context_tokens:g}")
        return self.kv_bytes(context_tokens, kv_dtype) / context_tokens

    # -- FLOPs ---------------------------------------------------------------------
    def matmul_params_per_token(self) -> float:
        """Weights multiplied per token: active params without the input embedding (a row
        lookup) and without norms and sinks (elementwise); the output head counts."""
        c = self.param_counts()
        sinks = self.num_layers * self.attention_per_layer * self.attention.num_heads if self.attention.sinks else 0
        qk_norm = (self.num_layers * self.attention_per_layer * 2 * self.attention.head_dim
                   if self.attention.qk_norm and self.attention.kind != "mla" else 0)
        mla_norms = 0
        if self.attention.kind == "mla":
            assert self.attention.kv_lora_rank is not None
            mla_norms = self.num_layers * self.attention_per_layer * (
                (self.attention.q_lora_rank or 0) + self.attention.kv_lora_rank)
        return self.active_params("output") - c.norms - sinks - qk_norm - mla_norms

    def flops_per_token(self, context_tokens: float, *, mla_absorbed: bool = False) -> float:
        """Forward FLOPs to process one token that attends to ``context_tokens`` tokens.

        ``2 * matmul_params_per_token + sum over attention blocks of
        AttentionSpec.score_value_flops(attended)``, with attended = ``min(context, window)``
        on windowed layers. Softmax, norms, activations and the router's top-k are not counted.
        MTP modules are not run.
        """
        if context_tokens < 0:
            raise ValueError(f"context_tokens must be >= 0, got {context_tokens:g}")
        attention = sum(
            self.attention.score_value_flops(self._cached_tokens(i, context_tokens), mla_absorbed=mla_absorbed)
            for i in range(self.num_layers)
        ) * self.attention_per_layer
        return 2.0 * self.matmul_params_per_token() + attention
