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

from hwsim.spec._checks import _positive
from hwsim.spec.attention import ATTENTION_KINDS, WINDOW_KINDS, AttentionSpec
from hwsim.spec.dtypes import COMPUTE_DTYPES, bytes_per_elem
from hwsim.spec.hardware import Source
from hwsim.spec.moe import ROUTER_SCORING, MoESpec

EMBEDDING_CONVENTIONS = ("both", "output", "none")
"""Which vocabulary matrices a published *active* count includes: input embedding and output
head (``both``), the output head only (``output``), or neither (``none``)."""

EmbeddingConvention = Literal["both", "output", "none"]

__all__ = ["ATTENTION_KINDS", "EMBEDDING_CONVENTIONS", "ROUTER_SCORING", "WINDOW_KINDS", "AttentionSpec",
           "Model", "ModelDtypes", "MoESpec", "ParamCounts", "PublishedParams"]


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
