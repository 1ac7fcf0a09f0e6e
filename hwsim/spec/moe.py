"""Mixture-of-Experts layers: routed and shared experts, groups, MoGE, zero-computation experts."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.spec._checks import _positive
from hwsim.spec.dtypes import COMPUTE_DTYPES

ROUTER_SCORING = ("softmax", "sigmoid")


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
