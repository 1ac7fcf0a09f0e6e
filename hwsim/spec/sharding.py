"""Which weights land on which device under TP/EP/PP: bytes per device, pure arithmetic.

The cost model's memory footprint (KV cache, activations, buffers) builds on this; here
we only need enough to tell whether a deployment's weights fit at all.

Conventions (documented for users in the README):

* attention, dense FFN, shared experts and router are split over ``tp`` devices and
  replicated over ``attention_dp`` groups;
* each MoE layer's ``num_experts + redundant`` routed experts are spread over ``ep`` ranks
  (the busiest rank holds the ceiling), each expert split over ``moe_tp`` devices;
* layers are split over ``pp`` stages; the busiest stage holds ``ceil(layers / pp)``;
* embedding and LM head are vocabulary-parallel over ``tp``; with ``pp > 1`` they sit on
  the first and last stages, so a device holds the larger of the two;
* linear weights use the deployment's weight dtype and routed experts its expert dtype;
  embeddings, LM head, norms and router keep the model's own formats (bf16 in every
  catalog checkpoint: serving engines do not quantise them); the MTP module is not loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.spec.deployment import Dtypes, Parallelism
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.model import Model


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightShare:
    """Weight bytes on the busiest device of a replica, by component."""

    dense_bytes: float        # attention, dense FFN, shared experts, router (per device)
    experts_bytes: float      # routed experts (per device)
    embedding_bytes: float    # embedding and/or LM head (per device)
    norms_bytes: float
    experts_per_device: int   # routed experts per MoE layer on the busiest device

    @property
    def total_bytes(self) -> float:
        return self.dense_bytes + self.experts_bytes + self.embedding_bytes + self.norms_bytes


def weight_share(model: Model, par: Parallelism, dtypes: Dtypes, redundant_experts: int = 0) -> WeightShare:
    """Weight bytes held by the busiest device of one replica."""
    pc = model.param_counts()
    wb = bytes_per_elem(dtypes.weights)
    eb = bytes_per_elem(dtypes.expert_weights)
    emb_b = bytes_per_elem(model.dtypes.embedding)
    norm_b = bytes_per_elem(model.dtypes.norm)
    router_b = bytes_per_elem(model.moe.router_dtype) if model.moe is not None else 0.0
    stage_frac = math.ceil(model.num_layers / par.pp) / model.num_layers
    dense = (pc.attention + pc.dense_ffn + pc.shared_experts) * wb + pc.router * router_b
    dense_bytes = dense * stage_frac / par.tp
    experts_per_device = 0
    experts_bytes = 0.0
    if model.moe is not None:
        n_moe = len(model.moe_layer_indices)
        moe_layers_on_stage = math.ceil(n_moe / par.pp)
        experts_per_device = math.ceil((model.moe.num_experts + redundant_experts) / par.ep)
        experts_bytes = moe_layers_on_stage * experts_per_device * pc.routed_expert_one * eb / par.expert_tp
    emb = pc.embedding + pc.lm_head if par.pp == 1 else max(pc.embedding, pc.lm_head)
    return WeightShare(
        dense_bytes=dense_bytes,
        experts_bytes=experts_bytes,
        embedding_bytes=emb * emb_b / par.tp,
        norms_bytes=pc.norms * norm_b * stage_frac,
        experts_per_device=experts_per_device,
    )
