"""Memory footprint of one device of a pool: weights, KV cache, activations, buffers, reserve.

:func:`footprint` answers "what does each device of this pool hold, and how many KV-cache
blocks are left?" for the busiest device of one replica. Everything is bytes (SI floats).

Components, per device, and the estimates behind them:

* **weights** -- :func:`hwsim.spec.sharding.weight_share` (placement by tp/ep/pp, shared vs
  routed experts, redundant expert replicas) plus the **quantisation scales** the payload
  dtypes leave out (:data:`SCALE_BYTES_PER_ELEM`: NVFP4 one FP8 scale per 16 elements, FP8
  one FP32 scale per 128x128 block as in DeepSeek's checkpoint, INT4 an FP16 scale and zero
  per 128-element group). With an expert cache (``deployment.experts.offload``) the device
  holds only the cached experts (:meth:`~hwsim.spec.deployment.ExpertOffload.cached_experts`:
  ``hbm_experts`` per MoE layer, or as many as fit in ``hbm_bytes``); the others live in
  host DRAM (``backing: dram``, a second :class:`TierUse`, this device's share of the node's
  DRAM) or on flash (``backing: flash``, a :class:`TierUse` of the node's storage). The
  explicit ``offload_experts`` fraction moves that share of the routed-expert bytes to host
  DRAM instead (the two cannot be combined).
* **KV cache** -- blocks of ``kv_block_tokens`` tokens x KV bytes per token *per device*:
  a pipeline stage keeps only its layers; with attention TP the KV heads of GQA/MHA are split
  over ``tp`` (a device keeps ``ceil(Hkv / tp)`` heads, so heads are duplicated once
  ``tp > Hkv``), while **MLA's latent KV is replicated on every TP rank** (one latent vector
  serves all heads, so a TP8 group stores every sequence 8 times -- the reason attention-DP is
  preferred for DeepSeek). Each of the ``attention_dp`` groups holds its own sequences, so a
  replica holds ``attention_dp`` times the sequences of one device. Windowed layers are
  counted as keeping every token (an upper bound for gpt-oss/Llama-4 style models).
* **activations and workspace** for one step of ``max_batched_tokens`` (split over the
  attention-DP ranks; ``T`` tokens per rank, ``S`` sequences per rank), in the activation
  dtype: ``4 T h`` (residual, normed input, attention output, FFN output) plus the largest of
  attention ``T (H/tp) (2 d_qk + 2 d_v)`` (q, k, v decompressed for prefill, output), dense
  FFN ``3 T f / tp`` and MoE ``N k / ep (2h + 3 f_e / moe_tp)`` (``N`` tokens of the stage,
  ``k`` experts each, balanced routing: dispatched copy, gate/up/activation, expert output),
  plus FP32 logits ``S V / tp`` of the sampled tokens. Layers run one after the other, so
  only one layer's workspace is live.
* **communication buffers** -- DeepEP-style dispatch/combine buffers when ``ep > 1``, sized
  for a rank receiving every token of every peer once (tokens are deduplicated per
  destination rank): ``(ep + 1) T h (b_dispatch + b_combine)``; dispatch is FP8 when the
  experts are 8-bit or narrower, combine is in the activation dtype. Plus
  :data:`NCCL_BYTES_PER_COMMUNICATOR` for each communicator of more than one rank (TP, EP,
  attention-DP world, PP).
* **runtime reserve** -- ``deployment.memory_reserve_fraction`` of the capacity: CUDA
  context, CUDA graphs, allocator fragmentation, library workspaces; or, with
  ``deployment.kv_cache_free_fraction`` ``x``, ``1 - x`` of what weights, activations and
  buffers leave (TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction``).

>>> from hwsim.spec.attention import AttentionSpec
>>> from hwsim.spec.deployment import Deployment, Pool, SchedulerLimits
>>> from hwsim.spec.hardware import Device, MemoryTier
>>> from hwsim.spec.model import Model
>>> att = AttentionSpec(kind="gqa", num_heads=4, num_kv_heads=2, head_dim=8)
>>> m = Model(name="toy", family="toy", num_layers=2, hidden_size=32, vocab_size=100,
...           attention=att, ffn_dim=64, max_context_tokens=1024)
>>> gpu = Device(name="toy-gpu", kind="gpu", compute_flop_per_s={"bf16": 1e12},
...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=1e6,
...                                 bandwidth_bytes_per_s=1e9),))
>>> pool = Pool(name="p", scheduler=SchedulerLimits(max_seqs=4, max_batched_tokens=16))
>>> fp = footprint(m, Deployment(model_name="toy", pools=(pool,)), pool, gpu)
>>> fp.kv_bytes_per_block          # 16 tokens x 2 layers x 2*2*8 elements x 2 B
2048.0
>>> fp.kv_blocks, max_concurrency(fp, input_tokens=40, output_tokens=8)
(409, 136)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from hwsim.errors import InfeasibleError
from hwsim.spec.deployment import Deployment, Parallelism, Pool
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.hardware import Device, MemoryTier
from hwsim.spec.model import Model
from hwsim.spec.sharding import weight_share
from hwsim.spec.topology import Node
from hwsim.units import Dim, format_quantity

SCALE_BYTES_PER_ELEM: dict[str, float] = {
    "fp4": 1.0 / 16.0,            # NVFP4: one FP8 (E4M3) scale per 16 elements (MXFP4 would be 1/32)
    "int4": 4.0 / 128.0,          # FP16 scale + FP16 zero point per 128-element group (AWQ/GPTQ)
    "fp8": 4.0 / (128.0 * 128.0),  # one FP32 scale per 128x128 block (DeepSeek-V3 checkpoint)
}
"""Bytes of quantisation scales per weight element, by weight dtype (others: none)."""

NCCL_BYTES_PER_COMMUNICATOR = 2.0 * 4 * 2**20 * 32
"""Device memory of one NCCL communicator: send + receive buffers of NCCL_BUFFSIZE (4 MiB,
the default) on 32 channels = 256 MiB. An estimate: NVLS and user buffers add more."""

FP8_DISPATCH_DTYPES = ("fp8", "int8", "fp4", "int4")
"""Expert dtypes for which token dispatch travels in FP8 (DeepEP FP8 dispatch)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TierUse:
    """Bytes one device uses on one memory tier (its share of a host tier shared by a node)."""

    tier: str
    capacity_bytes: float
    weights_bytes: float
    runtime_bytes: float = 0.0      # activations + buffers + reserve
    kv_bytes: float = 0.0

    @property
    def used_bytes(self) -> float:
        return self.weights_bytes + self.runtime_bytes + self.kv_bytes

    @property
    def free_bytes(self) -> float:
        return self.capacity_bytes - self.used_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Footprint:
    """Memory of the busiest device of one replica of a pool (see the module docstring).

    Weight fields include their quantisation scales (``scale_bytes`` says how much of them).
    ``kv_blocks`` is what is left in the device tier after weights, activations, buffers and
    the reserve; ``sequence_groups`` (attention-DP ranks) independent sets of sequences share a
    replica, and ``kv_copies`` devices of one group store the same KV (``tp`` for MLA).
    """

    device_name: str
    pool_name: str
    tier: str
    capacity_bytes: float
    dense_weights_bytes: float
    expert_weights_bytes: float
    embedding_bytes: float
    norms_bytes: float
    scale_bytes: float
    activation_bytes: float
    comm_buffer_bytes: float
    reserve_bytes: float
    kv_bytes_per_token: float
    kv_block_tokens: int
    kv_blocks: int
    kv_copies: float
    sequence_groups: int
    offloaded_expert_bytes: float = 0.0
    cached_experts: int | None = None
    tiers: tuple[TierUse, ...] = ()

    @property
    def weights_bytes(self) -> float:
        """Weights resident in the device tier."""
        return self.dense_weights_bytes + self.expert_weights_bytes + self.embedding_bytes + self.norms_bytes

    @property
    def runtime_bytes(self) -> float:
        """Activations, communication buffers and the reserve."""
        return self.activation_bytes + self.comm_buffer_bytes + self.reserve_bytes

    @property
    def fixed_bytes(self) -> float:
        """Everything but the KV cache."""
        return self.weights_bytes + self.runtime_bytes

    @property
    def kv_free_bytes(self) -> float:
        """Device bytes left for the KV cache (before rounding down to whole blocks)."""
        return self.capacity_bytes - self.fixed_bytes

    @property
    def kv_bytes_per_block(self) -> float:
        return self.kv_block_tokens * self.kv_bytes_per_token

    @property
    def kv_bytes(self) -> float:
        """Bytes of the KV-cache blocks (whole blocks only)."""
        return self.kv_blocks * self.kv_bytes_per_block

    @property
    def max_kv_tokens(self) -> int:
        """Tokens the device's KV blocks hold (per attention-DP group)."""
        return self.kv_blocks * self.kv_block_tokens


def max_concurrency(fp: Footprint, input_tokens: int, output_tokens: int, *, per: str = "replica") -> int:
    """Sequences of ``input_tokens + output_tokens`` whose full KV fits at once.

    ``per="replica"``: all attention-DP groups of a replica together; ``per="rank"``: one
    attention-DP group (one device when ``tp == 1``). Scheduler limits are not applied.
    """
    if per not in ("replica", "rank"):
        raise ValueError(f"per must be 'replica' or 'rank', got {per!r}")
    tokens = input_tokens + output_tokens
    if tokens <= 0:
        raise ValueError(f"a sequence needs at least one token, got {input_tokens} + {output_tokens}")
    per_rank = fp.kv_blocks // math.ceil(tokens / fp.kv_block_tokens)
    return per_rank * (fp.sequence_groups if per == "replica" else 1)


def kv_bytes_per_token_per_device(model: Model, par: Parallelism, kv_dtype: str) -> float:
    """KV bytes of one token on one device: the stage's layers, the device's share of KV heads.

    MLA keeps one latent per token that every head reads, so each TP rank stores all of it;
    GQA/MHA split the ``Hkv`` heads over ``tp``, each device keeping ``ceil(Hkv / tp)``.
    """
    full = model.kv_bytes_per_token(kv_dtype)
    stage = math.ceil(model.num_layers / par.pp) / model.num_layers
    att = model.attention
    share = 1.0 if att.kind == "mla" else math.ceil(att.num_kv_heads / par.tp) / att.num_kv_heads
    return full * stage * share


def kv_copies(model: Model, par: Parallelism) -> float:
    """Devices of one attention-DP group that store each token's KV: ``tp`` for MLA, 1 for
    GQA/MHA while ``tp <= Hkv`` (``tp / Hkv`` once heads are duplicated)."""
    att = model.attention
    if att.kind == "mla":
        return float(par.tp)
    return par.tp * math.ceil(att.num_kv_heads / par.tp) / att.num_kv_heads


def weight_scale_bytes(model: Model, deployment: Deployment, par: Parallelism) -> tuple[float, float]:
    """Quantisation-scale bytes per device: (dense linear weights, routed experts)."""
    share = weight_share(model, par, deployment.dtypes, deployment.experts.redundant)
    d = deployment.dtypes
    pc = model.param_counts()
    stage = math.ceil(model.num_layers / par.pp) / model.num_layers
    router_b = bytes_per_elem(model.moe.router_dtype) if model.moe is not None else 0.0
    router_bytes = pc.router * router_b * stage / par.tp
    dense_elems = (share.dense_bytes - router_bytes) / bytes_per_elem(d.weights)
    expert_elems = share.experts_bytes / bytes_per_elem(d.expert_weights)
    return (dense_elems * SCALE_BYTES_PER_ELEM.get(d.weights, 0.0),
            expert_elems * SCALE_BYTES_PER_ELEM.get(d.expert_weights, 0.0))


def activation_bytes(model: Model, deployment: Deployment, pool: Pool) -> float:
    """Live activations and workspace of one step on one device (module docstring)."""
    par, sched = pool.parallelism, pool.scheduler
    a = bytes_per_elem(deployment.dtypes.activations)
    h, att = model.hidden_size, model.attention
    tokens = math.ceil(sched.max_batched_tokens / par.attention_dp)
    seqs = math.ceil(sched.max_seqs / par.attention_dp)
    hidden = 4.0 * tokens * h * a
    heads = math.ceil(att.num_heads / par.tp)
    attention = tokens * heads * (2 * att.qk_head_dim + 2 * att.value_head_dim) * a
    dense = 3.0 * tokens * model.ffn_dim * a / par.tp if model.ffn_dim else 0.0
    moe = 0.0
    if model.moe is not None:
        copies = sched.max_batched_tokens * model.moe.top_k / par.ep
        moe = copies * (2 * h + 3 * model.moe.expert_ffn_dim / par.expert_tp) * a
    logits = seqs * model.vocab_size / par.tp * 4.0
    return hidden + max(attention, dense, moe) + logits


def comm_buffer_bytes(model: Model, deployment: Deployment, pool: Pool) -> float:
    """Expert-parallel dispatch/combine buffers plus NCCL communicators (module docstring)."""
    par = pool.parallelism
    a = bytes_per_elem(deployment.dtypes.activations)
    ep_bytes = 0.0
    if par.ep > 1 and model.moe is not None:
        tokens = math.ceil(pool.scheduler.max_batched_tokens / par.attention_dp)
        dispatch = 1.0 if deployment.dtypes.expert_weights in FP8_DISPATCH_DTYPES else a
        ep_bytes = (par.ep + 1) * tokens * model.hidden_size * (dispatch + a)
    groups = (par.tp, par.ep, par.stage_devices, par.pp)
    communicators = sum(1 for i, g in enumerate(groups) if g > 1 and g not in groups[:i])
    return ep_bytes + communicators * NCCL_BYTES_PER_COMMUNICATOR


def footprint(model: Model, deployment: Deployment, pool: Pool, device: Device, *,
              host_memory: MemoryTier | None = None, devices_per_host: int = 1,
              offload_experts: float = 0.0, flash_bytes: float | None = None) -> Footprint:
    """Memory footprint of the busiest device of one replica of ``pool`` on ``device``.

    ``offload_experts`` (0..1) moves that fraction of the routed-expert bytes to
    ``host_memory``, shared by ``devices_per_host`` devices; a deployment with an expert cache
    (``experts.offload``) keeps only the cached experts on the device, the rest in
    ``host_memory`` (``backing: dram``, checked when given) or on flash (``backing: flash``,
    checked against ``flash_bytes``, this device's share of the node's storage, when given).
    Raises :class:`~hwsim.errors.InfeasibleError` naming the device, the tier and the
    shortfall when weights (dense + cache), activations, buffers, the reserve and one KV block
    per sequence of ``max_seqs`` (per attention-DP group) do not fit, or offloaded experts
    overflow the host tier or the flash.
    """
    if not 0.0 <= offload_experts <= 1.0:
        raise ValueError(f"offload_experts must be in [0, 1], got {offload_experts:g}")
    par, sched = pool.parallelism, pool.scheduler
    share = weight_share(model, par, deployment.dtypes, deployment.experts.redundant)
    dense_scale, expert_scale = weight_scale_bytes(model, deployment, par)
    experts_total = share.experts_bytes + expert_scale
    cache = deployment.experts.offload if model.moe is not None else None
    cached: int | None = None
    if cache is not None:
        if offload_experts:
            raise ValueError("offload_experts cannot be combined with an expert cache (experts.offload)")
        layers = math.ceil(model.num_moe_layers / par.pp)
        slots = layers * share.experts_per_device
        one = experts_total / slots if slots else 0.0
        cached = cache.cached_experts(local_experts=share.experts_per_device, layers=layers, expert_bytes=one)
        offload_experts = 1.0 - cached / slots if slots else 0.0
    offloaded = experts_total * offload_experts
    tier = device.main_memory
    capacity = tier.capacity_bytes
    kv_token = kv_bytes_per_token_per_device(model, par, deployment.dtypes.kv)
    fp = Footprint(
        device_name=device.name, pool_name=pool.name, tier=tier.name, capacity_bytes=capacity,
        dense_weights_bytes=share.dense_bytes + dense_scale, expert_weights_bytes=experts_total - offloaded,
        embedding_bytes=share.embedding_bytes, norms_bytes=share.norms_bytes,
        scale_bytes=dense_scale + expert_scale * (1.0 - offload_experts),
        activation_bytes=activation_bytes(model, deployment, pool),
        comm_buffer_bytes=comm_buffer_bytes(model, deployment, pool),
        reserve_bytes=0.0 if deployment.kv_cache_free_fraction is not None
        else deployment.memory_reserve_fraction * capacity,
        kv_bytes_per_token=kv_token, kv_block_tokens=sched.kv_block_tokens, kv_blocks=0,
        kv_copies=kv_copies(model, par), sequence_groups=par.attention_dp, offloaded_expert_bytes=offloaded,
        cached_experts=cached)
    if deployment.kv_cache_free_fraction is not None:
        fp = replace(fp, reserve_bytes=(1.0 - deployment.kv_cache_free_fraction) * max(0.0, fp.kv_free_bytes))
    _check_device_fits(fp, model, math.ceil(sched.max_seqs / par.attention_dp))
    host = None
    backing = "dram" if cache is None else cache.backing
    if offloaded > 0 and backing == "dram" and (cache is None or host_memory is not None):
        host = _host_use(fp, deployment, host_memory, devices_per_host, model)
    elif offloaded > 0 and backing == "flash" and flash_bytes is not None:
        host = _flash_use(fp, flash_bytes, model)
    blocks = int(fp.kv_free_bytes // fp.kv_bytes_per_block)
    device_use = TierUse(tier=tier.name, capacity_bytes=capacity, weights_bytes=fp.weights_bytes,
                         runtime_bytes=fp.runtime_bytes, kv_bytes=blocks * fp.kv_bytes_per_block)
    tiers = (device_use,) if host is None else (device_use, host)
    return replace(fp, kv_blocks=blocks, tiers=tiers)


def node_footprint(node: Node, model: Model, deployment: Deployment, pool: Pool, *,
                   offload_experts: float = 0.0) -> Footprint:
    """:func:`footprint` on a node's device, offloading to the node's host DRAM or flash (shared
    by all of its devices)."""
    flash = sum(st.capacity_bytes for st in node.storage) / node.device_count
    return footprint(model, deployment, pool, node.device, host_memory=node.dram,
                     devices_per_host=node.device_count, offload_experts=offload_experts, flash_bytes=flash)


def _gb(x: float) -> str:
    return format_quantity(x, Dim.BYTES)


def _check_device_fits(fp: Footprint, model: Model, seqs: int) -> None:
    need_kv = seqs * fp.kv_bytes_per_block
    need = fp.fixed_bytes + need_kv
    if need <= fp.capacity_bytes:
        return
    raise InfeasibleError(
        f"{model.name} does not fit on {fp.device_name} (pool '{fp.pool_name}', tier '{fp.tier}'): "
        f"needs {_gb(need)} per device = weights {_gb(fp.weights_bytes)} + activations "
        f"{_gb(fp.activation_bytes)} + buffers {_gb(fp.comm_buffer_bytes)} + reserve {_gb(fp.reserve_bytes)} "
        f"+ one KV block for each of {seqs} sequences {_gb(need_kv)}; the tier holds "
        f"{_gb(fp.capacity_bytes)}: short by {_gb(need - fp.capacity_bytes)}")


def _host_use(fp: Footprint, deployment: Deployment, host: MemoryTier | None, sharers: int,
              model: Model) -> TierUse:
    if host is None:
        raise InfeasibleError(
            f"{model.name} on {fp.device_name} (pool '{fp.pool_name}'): offloading "
            f"{_gb(fp.offloaded_expert_bytes)} of experts needs a host memory tier, and none is given")
    if sharers < 1:
        raise ValueError(f"devices_per_host must be >= 1, got {sharers}")
    capacity = host.capacity_bytes / sharers
    reserve = deployment.memory_reserve_fraction * capacity
    need = fp.offloaded_expert_bytes + reserve
    if need > capacity:
        raise InfeasibleError(
            f"{model.name} on {fp.device_name} (pool '{fp.pool_name}', tier '{host.name}'): offloaded experts "
            f"{_gb(fp.offloaded_expert_bytes)} + reserve {_gb(reserve)} exceed this device's share of the "
            f"host tier ({_gb(capacity)} = {_gb(host.capacity_bytes)} / {sharers} devices): "
            f"short by {_gb(need - capacity)}")
    return TierUse(tier=host.name, capacity_bytes=capacity, weights_bytes=fp.offloaded_expert_bytes,
                   runtime_bytes=reserve)


def _flash_use(fp: Footprint, flash_bytes: float, model: Model) -> TierUse:
    if fp.offloaded_expert_bytes > flash_bytes:
        raise InfeasibleError(
            f"{model.name} on {fp.device_name} (pool '{fp.pool_name}', tier 'flash'): offloaded experts "
            f"{_gb(fp.offloaded_expert_bytes)} exceed this device's share of the node's flash ({_gb(flash_bytes)}): "
            f"short by {_gb(fp.offloaded_expert_bytes - flash_bytes)}")
    return TierUse(tier="flash", capacity_bytes=flash_bytes, weights_bytes=fp.offloaded_expert_bytes)
