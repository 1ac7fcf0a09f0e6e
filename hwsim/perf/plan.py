"""Resolve a pool's forward pass into an operator plan (rows for :mod:`hwsim.perf.step_kernel`).

Rows are grouped: ``head`` (embedding, final norm, LM head, sampling; once per step), ``dense``
and ``moe`` (one layer each, repeated over the model's dense and MoE layers), ``draft`` (the
speculative/MTP module, repeated per drafted token) and ``pipeline`` (stage-boundary
transfers, ``pp - 1`` per step). Attention rows carry a multiplier: the share of the group's
layers with full or with windowed attention.

Precision rule for GEMMs: weights in an 8-bit or 4-bit format the device computes natively
(FP8, INT8, FP4) run W8A8/W4A4 (activations quantised on the fly, as DeepGEMM and TRT-LLM's
FP4 MoE do); other weight formats compute in the activation dtype (weight-only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwsim.perf import operators as ops
from hwsim.perf import step_kernel as sk
from hwsim.perf.collectives import Collectives
from hwsim.perf.comm_params import COMM_SMS
from hwsim.perf.types import CommCost
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import Deployment, Dtypes, Pool
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.hardware import Device
from hwsim.spec.model import Model

GROUPS = ("head", "dense", "moe", "draft", "pipeline")
_REF_TOKENS = (256.0, 4096.0)
"""Tokens per rank at which communication rows are costed to fit their alpha-beta line."""


@dataclass(frozen=True, slots=True)
class PoolGroups:
    """Devices of the pool's first replica and its communication groups (global indices)."""

    device: Device
    replica: tuple[int, ...]
    tp: tuple[int, ...]
    ep: tuple[int, ...]
    moe_tp: tuple[int, ...]
    stage_pair: tuple[int, int] | None

    @classmethod
    def of(cls, cluster: Cluster, pool: Pool) -> PoolGroups:
        par = pool.parallelism
        first = pool.first_device
        replica = tuple(range(first, first + par.devices))
        stage = replica[: par.stage_devices]
        device = cluster.device_at(first)
        pair = (replica[0], replica[par.stage_devices]) if par.pp > 1 else None
        return cls(device=device, replica=replica, tp=stage[: par.tp], ep=stage[:: par.expert_tp],
                   moe_tp=stage[: par.expert_tp], stage_pair=pair)


@dataclass
class Plan:
    """The rows of a step (see :mod:`hwsim.perf.step_kernel` for the argument layout)."""

    names: list[str] = field(default_factory=list)
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sources: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    args: np.ndarray = field(default_factory=lambda: np.zeros((0, sk.NUM_ARGS)))
    groups: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    comm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stage: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mult: np.ndarray = field(default_factory=lambda: np.zeros(0))
    base_counts: np.ndarray = field(default_factory=lambda: np.zeros(len(GROUPS)))
    draft_per_token: float = 0.0
    ep: int = 1
    group_names: tuple[str, ...] = GROUPS

    @property
    def table(self) -> np.ndarray:
        """Integer columns packed for the kernel: kind, source, group, communication, draft,
        stage (attention or FFN side of the layer)."""
        table: np.ndarray = np.ascontiguousarray(np.stack([self.kinds, self.sources, self.groups, self.comm,
                                              self.draft_rows.astype(np.int64), self.stage], axis=1))
        return table

    @property
    def num_groups(self) -> int:
        return len(GROUPS)

    @property
    def draft_rows(self) -> np.ndarray:
        rows: np.ndarray = self.groups == GROUPS.index("draft")
        return rows

    def counts_for(self, draft_tokens: int) -> np.ndarray:
        counts = self.base_counts.copy()
        counts[GROUPS.index("draft")] = draft_tokens * self.draft_per_token
        return counts

    def uniform_imbalance(self, total_tokens: float) -> float:
        """Expected busiest-rank load / mean under uniform routing (see ``expected_max_load``)."""
        return float(sk.expected_max_load(total_tokens / max(self.ep, 1), self.ep))


def uniform_dispatch(coll: Collectives, ranks: list[int], tokens_per_rank: float, k: float, mode: str,
                     token_bytes: float, *, combine: bool = False, detail: bool = False) -> CommCost:
    """EP dispatch (or combine) of ``tokens_per_rank`` tokens from every rank under uniform
    routing with ``k`` experts per token: in ``normal`` mode a token goes once to each rank
    (and node) holding at least one of its experts, ``1 - (1 - share)^k`` of tokens per
    destination; in ``low-latency`` mode once per (token, expert) pair, ``k / ranks`` per rank."""
    r = len(ranks)
    nodes = coll.rank_nodes(ranks)
    per_node = np.bincount(nodes, minlength=int(nodes.max()) + 1).astype(float)
    share = k / r if mode == "low-latency" else 1.0 - (1.0 - 1.0 / r) ** k
    to_rank = np.full((r, r), tokens_per_rank * share)
    to_node = np.tile(tokens_per_rank * (1.0 - (1.0 - per_node / r) ** k), (r, 1))
    return coll.moe_dispatch(ranks, to_rank, to_node, token_bytes, mode, combine=combine, detail=detail)


def gather_token_bytes(model: Model, dtypes: Dtypes) -> float:
    """Bytes a token carries into the all-gather of ``experts.exchange: allgather``: its hidden
    state (one byte per element when the experts run FP8 or FP4, quantised before the gather as
    TensorRT-LLM does; else the activation dtype) and its routing (an expert id and a weight,
    4 bytes each, per pick)."""
    quantised = dtypes.expert_weights in ("fp8", "fp4")
    k = model.moe.real_experts_per_token if model.moe is not None else 0.0
    return model.hidden_size * (1.0 if quantised else bytes_per_elem(dtypes.activations)) + 8.0 * k


class PlanBuilder:
    """Builds the :class:`Plan` of one pool (see the module docstring)."""

    def __init__(self, cluster: Cluster, model: Model, deployment: Deployment, pool: Pool,
                 groups: PoolGroups, collectives: Collectives) -> None:
        self.cluster, self.model, self.dep, self.pool, self.g = cluster, model, deployment, pool, groups
        self.coll = collectives
        self.dev = groups.device
        self.par = pool.parallelism
        self.act = deployment.dtypes.activations
        self.act_b = bytes_per_elem(self.act)
        self.launch = ops.launch_overhead_s(self.dev, cuda_graph=deployment.cuda_graph)
        self.rows: list[tuple[str, int, int, np.ndarray, int, bool, int, float]] = []
        self.stage = sk.ATTN_SIDE  # side of the layer the rows being added belong to

    # -- row helpers ------------------------------------------------------------------------
    def _add(self, group: str, name: str, kind: int, source: int, args: list[float], *,
             comm: bool = False, mult: float = 1.0) -> None:
        a = np.zeros(sk.NUM_ARGS)
        a[: len(args)] = args
        self.rows.append((f"{group}.{name}", kind, source, a, GROUPS.index(group), comm, self.stage, mult))

    def _gemm_dtypes(self, weight_dtype: str) -> tuple[str, float, float]:
        """(compute dtype, activation bytes, weight bytes) under the module's precision rule."""
        native = weight_dtype in ("fp8", "int8", "fp4") and weight_dtype in self.dev.compute_flop_per_s
        compute = weight_dtype if native else ops.compute_dtype(self.act, weight_dtype)
        a_bytes = bytes_per_elem(weight_dtype) if native else self.act_b
        return compute, a_bytes, ops.weight_bytes_per_elem(weight_dtype)

    def _matmul_args(self, n: float, k: float, weight_dtype: str, local_experts: int = 0) -> list[float]:
        compute, a_b, w_b = self._gemm_dtypes(weight_dtype)
        eff = ops.efficiency(self.dev, "grouped_gemm" if local_experts else "gemm", compute)
        sh = ops.SHAPE_MODEL
        return [max(1, round(n)), max(1, round(k)), a_b, w_b, self.act_b, self.dev.peak_flop_per_s(compute),
                self.dev.hbm_bytes_per_s, eff, ops.efficiency(self.dev, "memory"), ops.num_sms(self.dev),
                ops.TILE_N_MAX, self.launch, sh.k_half_elems, sh.latency_s, sh.sharpness, local_experts]

    def gemm(self, group: str, name: str, source: int, n: float, k: float, weight_dtype: str) -> None:
        self._add(group, name, sk.GEMM, source, self._matmul_args(n, k, weight_dtype))

    def memory(self, group: str, name: str, source: int, bytes_per_token: float, flop_per_token: float = 0.0) -> None:
        sh = ops.SHAPE_MODEL
        peak = max(self.dev.compute_flop_per_s.values())
        self._add(group, name, sk.MEMORY, source, [bytes_per_token, flop_per_token, self.dev.hbm_bytes_per_s,
                                                   ops.efficiency(self.dev, "memory"), peak, self.launch,
                                                   sh.latency_s, 0.0])

    def comm(self, group: str, name: str, source: int, bytes_per_token: float,
             cost_of_bytes: Callable[[float], float], mode: int = 0, kernel: str = "collective") -> None:
        """A communication row: alpha-beta fitted on ``cost_of_bytes(nbytes) -> seconds``;
        ``kernel`` names its kind in :data:`~hwsim.perf.comm_params.COMM_SMS` (the SMs it holds)."""
        x0, x1 = (t * bytes_per_token for t in _REF_TOKENS)
        t0, t1 = cost_of_bytes(x0), cost_of_bytes(x1)
        beta = max(0.0, (t1 - t0) / (x1 - x0))
        alpha = max(0.0, t0 - beta * x0)
        sm_share = min(1.0, COMM_SMS[kernel] / ops.num_sms(self.dev))
        self._add(group, name, sk.COMM, source, [alpha, beta, bytes_per_token, float(mode), sm_share], comm=True)

    # -- the model ---------------------------------------------------------------------------
    def attention(self, group: str, query_tokens: int) -> None:
        m, par, att = self.model, self.par, self.model.attention
        self.stage = sk.ATTN_SIDE
        h = m.hidden_size
        heads = max(1, att.num_heads // par.tp)
        kv_heads = max(1, att.num_kv_heads // par.tp)
        o_params = att.num_heads * att.value_head_dim * h
        in_params = att.params(h) - o_params
        w = self.dep.dtypes.weights
        self.memory(group, "norm", sk.SRC_RANK_TOKENS, 2 * h * self.act_b, 4 * h)
        if att.kind == "mla":
            self._mla_projections(group, heads, w)
        else:
            self.gemm(group, "qkv_proj", sk.SRC_RANK_TOKENS, in_params / (h * par.tp), h, w)
        layers = range(m.num_layers)
        windowed = sum(1 for i in layers if att.windowed(i)) / m.num_layers
        kv_dtype = self.dep.dtypes.kv
        for share, layer, tag in ((1.0 - windowed, None, ""), (windowed, self._first_windowed(), "_window")):
            if share <= 0.0:
                continue
            self._attention_rows(group, tag, share, layer, heads, kv_heads, kv_dtype, query_tokens)
        kv_token = self.model.kv_bytes_per_token(kv_dtype) / m.num_layers / (par.tp if att.kind != "mla" else 1)
        self.memory(group, "kv_write", sk.SRC_RANK_TOKENS, kv_token)
        self.gemm(group, "o_proj", sk.SRC_RANK_TOKENS, h, att.num_heads * att.value_head_dim / par.tp, w)
        if par.tp > 1:
            self.comm(group, "attn_allreduce", sk.SRC_RANK_TOKENS, h * self.act_b,
                      lambda b: self.coll.all_reduce(self.g.tp, b, detail=False).time_s)
        self.memory(group, "ffn_norm", sk.SRC_RANK_TOKENS, 2 * h * self.act_b, 4 * h)

    def _mla_projections(self, group: str, heads: int, w: str) -> None:
        """MLA's input projections as the GEMMs engines run (DeepSeek-V3 inference code,
        SGLang, vLLM): the down-projections of query and latent KV fused into one GEMM over the
        hidden state, replicated across tensor-parallel ranks; the per-head up-projections of
        the query (from ``q_lora``) and of keys/values (``kv_b``, from ``kv_lora``) split by
        heads. Their small inner dimensions (1536, 512 for DeepSeek-V3) run well below the
        large-K GEMM rate, which one fused row over the hidden state would hide. Decode kernels
        absorb ``kv_b`` into the query and output (same weights, same FLOPs)."""
        att, h = self.model.attention, self.model.hidden_size
        assert att.kv_lora_rank is not None
        assert att.qk_rope_head_dim is not None
        assert att.qk_nope_head_dim is not None
        assert att.v_head_dim is not None
        ql = att.q_lora_rank or 0
        self.gemm(group, "qkv_a_proj", sk.SRC_RANK_TOKENS, ql + att.kv_lora_rank + att.qk_rope_head_dim, h, w)
        if ql:
            self.gemm(group, "q_b_proj", sk.SRC_RANK_TOKENS, heads * att.qk_head_dim, ql, w)
        else:
            self.gemm(group, "q_proj", sk.SRC_RANK_TOKENS, heads * att.qk_head_dim, h, w)
        self.gemm(group, "kv_b_proj", sk.SRC_RANK_TOKENS, heads * (att.qk_nope_head_dim + att.v_head_dim),
                  att.kv_lora_rank, w)

    def _first_windowed(self) -> int | None:
        att = self.model.attention
        return next((i for i in range(self.model.num_layers) if att.windowed(i)), None)

    def _attention_rows(self, group: str, tag: str, share: float, layer: int | None, heads: int, kv_heads: int,
                        kv_dtype: str, query_tokens: int) -> None:
        att, sh = self.model.attention, ops.SHAPE_MODEL
        peak = self.dev.peak_flop_per_s(self.act)
        eff_c, eff_m = ops.efficiency(self.dev, "attention", self.act), ops.efficiency(self.dev, "memory")
        for kind, absorbed, name in ((sk.ATTN_PREFILL, False, "attn_prefill"), (sk.ATTN_DECODE, True, "attn_decode")):
            d = ops._attn_dims(att, heads=heads, kv_heads=kv_heads, dtype=self.act, kv_dtype=kv_dtype,
                               absorbed=absorbed, layer=layer)
            self._add(group, name + tag, kind, sk.SRC_RANK_TOKENS,
                      [d.heads, d.d_qk, d.d_v, d.kv_bytes_per_token, d.qo_bytes_per_token, d.window_tokens,
                       float(d.chunked), peak, self.dev.hbm_bytes_per_s, eff_c, eff_m, self.launch, sh.latency_s,
                       sh.sharpness, query_tokens], mult=share)

    def dense_ffn(self, group: str) -> None:
        m, par, h = self.model, self.par, self.model.hidden_size
        self.stage = sk.FFN_SIDE
        f = m.ffn_dim or 0
        w = self.dep.dtypes.weights
        self.gemm(group, "ffn_up", sk.SRC_RANK_TOKENS, (2 if m.gated_ffn else 1) * f / par.tp, h, w)
        self.memory(group, "ffn_act", sk.SRC_RANK_TOKENS, 3 * f / par.tp * self.act_b, 4 * f / par.tp)
        self.gemm(group, "ffn_down", sk.SRC_RANK_TOKENS, h, f / par.tp, w)
        if par.tp > 1:
            self.comm(group, "ffn_allreduce", sk.SRC_RANK_TOKENS, h * self.act_b,
                      lambda b: self.coll.all_reduce(self.g.tp, b, detail=False).time_s)

    def moe_ffn(self, group: str) -> None:
        m, par, h = self.model, self.par, self.model.hidden_size
        moe = m.moe
        assert moe is not None
        gate = 2 if m.gated_ffn else 1
        ew = self.dep.dtypes.expert_weights
        slots = moe.num_experts + self.dep.experts.redundant
        local = max(1, slots // par.ep)
        f = moe.expert_ffn_dim / par.expert_tp
        self.gemm(group, "router", sk.SRC_RANK_TOKENS, moe.num_experts + moe.num_zero_experts, h, moe.router_dtype)
        gather = par.ep > 1 and self.dep.experts.exchange == "allgather"
        if gather:
            self._gather_rows(group, combine=False)
        elif par.ep > 1:
            self._dispatch_rows(group, combine=False)
        self.stage = sk.FFN_SIDE
        self._add(group, "experts_up", sk.GROUPED, sk.SRC_EXPERT_TOKENS, self._matmul_args(gate * f, h, ew, local))
        self.memory(group, "experts_act", sk.SRC_EXPERT_ROWS, 3 * f * self.act_b, 4 * f)
        self._add(group, "experts_down", sk.GROUPED, sk.SRC_EXPERT_TOKENS, self._matmul_args(h, f, ew, local))
        if moe.num_shared_experts:
            fs = moe.num_shared_experts * (moe.shared_expert_ffn_dim or moe.expert_ffn_dim) / par.tp
            w = self.dep.dtypes.weights
            self.gemm(group, "shared_up", sk.SRC_RANK_TOKENS, gate * fs, h, w)
            self.gemm(group, "shared_down", sk.SRC_RANK_TOKENS, h, fs, w)
        if gather:
            self._gather_rows(group, combine=True)
        elif par.ep > 1:
            self._dispatch_rows(group, combine=True)
        if par.expert_tp > 1:
            self.comm(group, "moe_allreduce", sk.SRC_RANK_TOKENS, h * self.act_b,
                      lambda b: self.coll.all_reduce(self.g.moe_tp, b, detail=False).time_s)

    def _dispatch_rows(self, group: str, *, combine: bool) -> None:
        """EP all-to-all: DeepEP normal mode when the step has prefill, low-latency otherwise.

        Dispatch carries FP8 tokens when the experts run FP8 (DeepEP's FP8 dispatch), else the
        activation dtype; combine carries the activation dtype.
        """
        h, k = self.model.hidden_size, self.model.moe.real_experts_per_token  # type: ignore[union-attr]
        token_b = h * (1.0 if not combine and self.dep.dtypes.expert_weights == "fp8" else self.act_b)
        ranks = list(self.g.ep)
        name = "combine" if combine else "dispatch"
        for mode, code in (("normal", 1), ("low-latency", 2)):

            def cost(nbytes: float, mode: str = mode) -> float:
                return uniform_dispatch(self.coll, ranks, nbytes / token_b, k, mode, token_b,
                                        combine=combine).time_s

            tag = mode.replace("-", "_")
            self.comm(group, f"{name}_{tag}", sk.SRC_DISPATCH_TOKENS, token_b, cost, mode=code, kernel=f"ep_{tag}")

    def _gather_rows(self, group: str, *, combine: bool) -> None:
        """EP exchange by all-gather and reduce-scatter (``experts.exchange: allgather``).

        Dispatch all-gathers every EP rank's tokens on every rank (:func:`gather_token_bytes`
        each). The experts compute the rows routed to them; combine
        reduce-scatters every token's output (activation dtype), so each rank gets its own
        tokens' sums. Both move all ranks' tokens whatever the routing; the busiest rank's
        tokens stand for every rank's (padding to the largest, as the collectives do). Before
        the reduce-scatter each rank writes that all-token output (``finalize``: its own
        experts' weighted sums, zero elsewhere), a memory-bound pass over every gathered token.
        """
        h = self.model.hidden_size
        ranks = list(self.g.ep)
        r = len(ranks)
        if combine:
            token_b = h * self.act_b
            self.memory(group, "finalize", sk.SRC_DISPATCH_TOKENS, r * token_b, r * h)
            self.comm(group, "combine_reducescatter", sk.SRC_DISPATCH_TOKENS, token_b,
                      lambda nb: self.coll.reduce_scatter(ranks, nb * r, detail=False).time_s)
            return
        token_b = gather_token_bytes(self.model, self.dep.dtypes)
        self.comm(group, "dispatch_allgather", sk.SRC_DISPATCH_TOKENS, token_b,
                  lambda nb: self.coll.all_gather(ranks, nb * r, detail=False).time_s)

    def head(self) -> None:
        m, par, h = self.model, self.par, self.model.hidden_size
        self.stage = sk.ATTN_SIDE
        self.memory("head", "embedding", sk.SRC_RANK_TOKENS, 2 * h * self.act_b)
        self.memory("head", "final_norm", sk.SRC_RANK_LOGITS, 2 * h * self.act_b, 4 * h)
        self.gemm("head", "lm_head", sk.SRC_RANK_LOGITS, m.vocab_size / par.tp, h, m.dtypes.embedding)
        self.memory("head", "sampling", sk.SRC_RANK_LOGITS, 4.0 * m.vocab_size / par.tp, 5.0 * m.vocab_size / par.tp)

    def build(self) -> Plan:
        m, par = self.model, self.par
        query = 1 + self.dep.speculative.tokens
        self.head()
        if m.num_dense_layers:
            self.attention("dense", query)
            self.dense_ffn("dense")
        if m.moe is not None:
            self.attention("moe", query)
            self.moe_ffn("moe")
        if self.dep.speculative.tokens:
            self.attention("draft", 1)
            self.moe_ffn("draft") if m.moe is not None else self.dense_ffn("draft")
        if par.pp > 1 and self.g.stage_pair is not None:
            self.stage = sk.FFN_SIDE
            a, b = self.g.stage_pair
            self.comm("pipeline", "stage_send", sk.SRC_STAGE_TOKENS, m.hidden_size * self.act_b,
                      lambda nb: self.coll.p2p(a, b, nb, detail=False).time_s)
        counts = np.zeros(len(GROUPS))
        counts[GROUPS.index("head")] = 1
        counts[GROUPS.index("dense")] = m.num_dense_layers
        counts[GROUPS.index("moe")] = m.num_moe_layers
        counts[GROUPS.index("pipeline")] = par.pp - 1
        names, kinds, sources, args, groups, comm, stage, mult = zip(*self.rows, strict=True)
        table = np.vstack(args)
        table[:, sk.NUM_ARGS - 1] = mult
        return Plan(names=list(names), kinds=np.array(kinds, np.int64), sources=np.array(sources, np.int64),
                    args=table, groups=np.array(groups, np.int64), comm=np.array(comm, np.int64),
                    stage=np.array(stage, np.int64), mult=np.array(mult, float), base_counts=counts,
                    draft_per_token=float(max(1, m.mtp_layers)), ep=par.ep)
