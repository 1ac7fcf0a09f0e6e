"""Memory rows: the footprint module against published budgets.

Case ``trtllm-dsr1-b200-memory-budget`` (TensorRT-LLM tech blog 3, DeepSeek-R1 FP4 on 8x B200):
weights + activations and free KV per GPU, KV per 1K/2K request, and the concurrency that fits
per GPU, per node with attention DP and per node with attention TP (the 8x KV duplication of
attention-TP for MLA). The scenario file's header lists the assumptions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hwsim.io.scenario import load_scenario
from hwsim.perf.memory import footprint, max_concurrency
from hwsim.spec.deployment import Parallelism
from hwsim.validate.rows import ValidationRow

TRTLLM_BUDGET = "trtllm-dsr1-b200-memory-budget"


def _published(case: dict, name: str) -> float:
    for m in case["metrics"]:
        if m["name"] == name:
            return float(str(m["value"]).rstrip("%"))
    raise KeyError(f"{case['id']}: no metric {name}")


def trtllm_budget_rows(case: dict, scenario: str | Path, *, input_tokens: int = 1024,
                       output_tokens: int = 2048, tier: int = 1) -> list[ValidationRow]:
    """The six memory-budget rows of the TensorRT-LLM DeepSeek-R1 FP4 case.

    The attention-TP row keeps the scenario's per-rank scheduler caps (384 sequences, 1536
    tokens) on one TP8 x EP8 replica.
    """
    s = load_scenario(scenario)
    pool = s.deployment.pools[0]
    device = s.cluster.nodes[0].device
    fp = footprint(s.model, s.deployment, pool, device)
    ranks = pool.parallelism.attention_dp
    tp_pool = replace(pool, parallelism=Parallelism(tp=pool.parallelism.devices, ep=pool.parallelism.ep),
                      scheduler=replace(pool.scheduler, max_seqs=pool.scheduler.max_seqs // ranks,
                                        max_batched_tokens=pool.scheduler.max_batched_tokens // ranks))
    fp_tp = footprint(s.model, s.deployment, tp_pool, device)
    kv_dtype = s.deployment.dtypes.kv
    ours = {
        "weights_plus_activation_per_gpu": ((fp.weights_bytes + fp.activation_bytes + fp.comm_buffer_bytes) / 1e9,
                                            "GB", "weights + activations + communication buffers"),
        "free_kv_cache_per_gpu": (fp.kv_free_bytes / 1e9, "GB", ""),
        "kv_per_request_1K_2K": (s.model.kv_bytes(input_tokens + output_tokens, kv_dtype) / 1e6, "MB", ""),
        "max_concurrency_per_gpu": (float(max_concurrency(fp, input_tokens, output_tokens, per="rank")),
                                    "requests", ""),
        "max_concurrency_node_attention_DP": (float(max_concurrency(fp, input_tokens, output_tokens)),
                                              "requests", ""),
        "max_concurrency_node_attention_TP": (float(max_concurrency(fp_tp, input_tokens, output_tokens)),
                                              "requests", "attention TP also spreads the attention weights, "
                                              "which the blog's round numbers ignore"),
    }
    return [ValidationRow(kind="memory", case=case["id"], label=name, unit=unit,
                          measured=_published(case, name), predicted=value, tier=tier,
                          note=note + ("; " if note else "") + "published as a round figure ('about')")
            for name, (value, unit, note) in ours.items()]


__all__ = ["TRTLLM_BUDGET", "trtllm_budget_rows"]
