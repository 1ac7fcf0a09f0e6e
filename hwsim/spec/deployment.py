"""How a model is served on a cluster: pools, parallelism, scheduler limits, experts.

Parallelism follows the DeepSeek/SGLang convention. In each pipeline stage of a replica the
attention part runs ``attention_dp`` data-parallel groups of ``tp`` tensor-parallel devices;
the MoE part spreads the same devices as ``ep`` expert-parallel ranks of ``moe_tp`` devices:

    devices per replica = pp x attention_dp x tp = pp x ep x moe_tp
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.spec.dtypes import COMPUTE_DTYPES

POOL_ROLES = ("unified", "prefill", "decode")
OVERLAP_MODES = ("none", "two-microbatch", "fine-grained")
SCHEDULER_POLICIES = ("fcfs", "priority")
KV_RESERVATIONS = ("on-demand", "full")
PLACEMENTS = ("contiguous", "round-robin", "eplb", "file")
EXCHANGES = ("all-to-all", "allgather")
OFFLOAD_SCOPES = ("layer", "device")
OFFLOAD_POLICIES = ("lru", "lfu", "fifo", "static", "window")
OFFLOAD_BACKINGS = ("dram", "flash")
PREFETCH_SOURCES = ("none", "predictor", "pre-attention")
CPU_COMPUTE_MODES = ("never", "always", "auto")
FLASH_READS = ("row", "bundle", "expert")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dtypes:
    """Numeric formats of weights, routed experts, activations and the KV cache.

    ``experts`` is the format of routed-expert weights (gpt-oss ships MXFP4 experts beside
    bf16 attention); ``None`` means the same as ``weights``.
    """

    weights: str = "bf16"
    activations: str = "bf16"
    kv: str = "bf16"
    experts: str | None = None

    @property
    def expert_weights(self) -> str:
        return self.experts or self.weights

    def __post_init__(self) -> None:
        for name in ("weights", "activations", "kv", "expert_weights"):
            value = getattr(self, name)
            if value not in COMPUTE_DTYPES:
                raise ValueError(f"{name} dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Parallelism:
    """Per-replica parallel degrees (see the module docstring)."""

    tp: int = 1
    attention_dp: int = 1
    ep: int = 1
    moe_tp: int | None = None
    pp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "attention_dp", "ep", "pp"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.moe_tp is not None and self.moe_tp < 1:
            raise ValueError(f"moe_tp must be >= 1, got {self.moe_tp}")
        stage = self.tp * self.attention_dp
        if stage % self.ep:
            raise ValueError(
                f"ep ({self.ep}) must divide the devices of a pipeline stage (tp x attention_dp = {stage})")
        if self.moe_tp is not None and self.ep * self.moe_tp != stage:
            raise ValueError(
                f"ep x moe_tp ({self.ep} x {self.moe_tp}) must equal tp x attention_dp ({stage})")

    @property
    def stage_devices(self) -> int:
        return self.tp * self.attention_dp

    @property
    def devices(self) -> int:
        """Devices in one replica."""
        return self.pp * self.stage_devices

    @property
    def expert_tp(self) -> int:
        """Devices each expert is split over (``moe_tp``, derived when not given)."""
        return self.moe_tp if self.moe_tp is not None else self.stage_devices // self.ep


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerLimits:
    """Per-replica engine limits (vLLM/SGLang style).

    ``kv_reservation`` says when a sequence takes its KV blocks: ``on-demand`` as it grows,
    preempting the newest sequence when none is free (vLLM, SGLang); ``full`` at admission, for
    its prompt and every output token, so nothing is ever preempted (TensorRT-LLM's default
    ``GUARANTEED_NO_EVICT`` capacity scheduler).
    """

    max_seqs: int = 256
    max_batched_tokens: int = 8192
    chunked_prefill_tokens: int | None = None
    kv_block_tokens: int = 16
    policy: str = "fcfs"
    kv_reservation: str = "on-demand"

    def __post_init__(self) -> None:
        if self.max_seqs < 1 or self.max_batched_tokens < 1 or self.kv_block_tokens < 1:
            raise ValueError("max_seqs, max_batched_tokens and kv_block_tokens must be >= 1")
        if self.chunked_prefill_tokens is not None and not 1 <= self.chunked_prefill_tokens <= self.max_batched_tokens:
            raise ValueError(
                f"chunked prefill ({self.chunked_prefill_tokens}) must be in 1..max_batched_tokens "
                f"({self.max_batched_tokens})")
        if self.policy not in SCHEDULER_POLICIES:
            raise ValueError(f"policy must be one of {', '.join(SCHEDULER_POLICIES)}, got {self.policy!r}")
        if self.kv_reservation not in KV_RESERVATIONS:
            raise ValueError(f"kv_reservation must be one of {', '.join(KV_RESERVATIONS)}, "
                             f"got {self.kv_reservation!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """``replicas`` identical model replicas with one role, on consecutive cluster devices."""

    name: str
    role: str = "unified"
    replicas: int = 1
    parallelism: Parallelism = Parallelism()
    scheduler: SchedulerLimits = SchedulerLimits()
    first_device: int = 0

    def __post_init__(self) -> None:
        if self.role not in POOL_ROLES:
            raise ValueError(f"role must be one of {', '.join(POOL_ROLES)}, got {self.role!r}")
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")

    @property
    def devices(self) -> int:
        """Devices used by all replicas of the pool."""
        return self.replicas * self.parallelism.devices

    @property
    def device_range(self) -> range:
        return range(self.first_device, self.first_device + self.devices)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingRef:
    """Which routing model drives expert loads, with its parameters (resolved by ``workload``)."""

    model: str = "uniform"
    params: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefetch:
    """Fetching a layer's missing experts before the layer needs them.

    ``source``: ``none``; ``predictor`` (a gate predictor guesses layer ``l``'s experts while
    layer ``l - 1`` computes: Pre-gated MoE, Fate's cross-layer gate); ``pre-attention``
    (SmallThinker: the router runs before attention, so layer ``l``'s fetch overlaps layer
    ``l``'s attention). ``accuracy``: the share of a layer's missing experts predicted right;
    the same number of experts is prefetched, so the wrong guesses cost bandwidth and take
    cache slots.
    """

    source: str = "none"
    accuracy: float = 1.0

    def __post_init__(self) -> None:
        if self.source not in PREFETCH_SOURCES:
            raise ValueError(f"source must be one of {', '.join(PREFETCH_SOURCES)}, got {self.source!r}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy must be in [0, 1], got {self.accuracy:g}")

    @property
    def enabled(self) -> bool:
        return self.source != "none"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlashReads:
    """How experts are read from flash (LLM in a flash, Alizadeh et al. 2024).

    ``read``: ``row`` (one weight row of one matrix per read request), ``bundle`` (row-column
    bundling: the rows of one neuron in every FFN matrix stored together, one request),
    ``expert`` (a whole expert stored contiguously, one request). ``queue_depth`` read
    requests are in flight at once. ``window_tokens``: experts used in the last that many
    engine steps stay in host DRAM (the paper's windowing), so a miss on one of them is
    fetched from DRAM, not flash.
    """

    read: str = "expert"
    queue_depth: int = 32
    window_tokens: int = 0

    def __post_init__(self) -> None:
        if self.read not in FLASH_READS:
            raise ValueError(f"read must be one of {', '.join(FLASH_READS)}, got {self.read!r}")
        if self.queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, got {self.queue_depth}")
        if self.window_tokens < 0:
            raise ValueError(f"window_tokens must be >= 0, got {self.window_tokens}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpertOffload:
    """Only some routed experts live in device memory (an expert cache); the rest in host
    DRAM or on flash.

    The cache holds ``hbm_experts`` experts per MoE layer on each device, or as many as fit
    in ``hbm_bytes`` of the device (exactly one of the two). ``scope``: ``layer`` (one cache
    per MoE layer) or ``device`` (one cache shared by the device's MoE layers, SmallThinker
    style). ``policy`` evicts (``window`` keeps the experts used in the last ``window``
    steps). ``backing``: where the other experts live. ``cpu_compute``: run a missed expert
    on the host CPU ``never``, ``always``, or when faster (``auto``, Fiddler's rule).
    """

    hbm_experts: int | None = None
    hbm_bytes: float | None = None
    scope: str = "layer"
    policy: str = "lru"
    window: int = 1
    backing: str = "dram"
    prefetch: Prefetch = Prefetch()
    cpu_compute: str = "never"
    flash: FlashReads = FlashReads()

    def __post_init__(self) -> None:
        if (self.hbm_experts is None) == (self.hbm_bytes is None):
            raise ValueError("give exactly one of hbm_experts and hbm_bytes")
        if self.hbm_experts is not None and self.hbm_experts < 0:
            raise ValueError(f"hbm_experts must be >= 0, got {self.hbm_experts}")
        if self.hbm_bytes is not None and self.hbm_bytes < 0:
            raise ValueError(f"hbm_bytes must be >= 0, got {self.hbm_bytes:g}")
        if self.scope not in OFFLOAD_SCOPES:
            raise ValueError(f"scope must be one of {', '.join(OFFLOAD_SCOPES)}, got {self.scope!r}")
        if self.policy not in OFFLOAD_POLICIES:
            raise ValueError(f"policy must be one of {', '.join(OFFLOAD_POLICIES)}, got {self.policy!r}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.backing not in OFFLOAD_BACKINGS:
            raise ValueError(f"backing must be one of {', '.join(OFFLOAD_BACKINGS)}, got {self.backing!r}")
        if self.cpu_compute not in CPU_COMPUTE_MODES:
            raise ValueError(f"cpu_compute must be one of {', '.join(CPU_COMPUTE_MODES)}, got {self.cpu_compute!r}")

    def cached_experts(self, *, local_experts: int, layers: int, expert_bytes: float) -> int:
        """Experts the cache of one device holds over its ``layers`` MoE layers, at most all
        ``local_experts`` of each layer. ``expert_bytes``: one expert's bytes on the device.

        With ``hbm_bytes`` and ``scope: layer`` every layer gets the same whole number of slots.

        >>> ExpertOffload(hbm_bytes=10e9).cached_experts(local_experts=8, layers=4, expert_bytes=1e9)
        8
        >>> ExpertOffload(hbm_bytes=10e9, scope="device").cached_experts(local_experts=8, layers=4, expert_bytes=1e9)
        10
        """
        if self.hbm_experts is not None:
            total = self.hbm_experts * layers
        else:
            assert self.hbm_bytes is not None
            total = int(self.hbm_bytes // expert_bytes) if expert_bytes > 0 else local_experts * layers
            if self.scope == "layer":
                total = total // max(layers, 1) * layers
        return max(0, min(total, local_experts * layers))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpertConfig:
    """Expert placement and routing.

    ``placement`` is a strategy name or ``file`` with ``placement_file`` (the format the
    placement planner writes); ``redundant`` extra expert replicas per MoE layer (EPLB).
    ``offload``: an expert cache in device memory over host DRAM or flash (None: every
    expert resident). ``exchange`` is how tokens reach the EP ranks: ``all-to-all`` sends each
    token to the ranks holding its experts and back (DeepEP; normal mode with prefill in the
    step, low-latency otherwise); ``allgather`` gathers every rank's tokens on every rank and
    reduce-scatters the experts' outputs, whatever the routing (TensorRT-LLM's MoE with
    attention DP where its all-to-all does not apply, vLLM's ``allgather_reducescatter``).
    """

    placement: str = "contiguous"
    placement_file: str | None = None
    redundant: int = 0
    routing: RoutingRef = RoutingRef()
    offload: ExpertOffload | None = None
    exchange: str = "all-to-all"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if (self.placement == "file") != (self.placement_file is not None):
            raise ValueError("placement 'file' needs placement_file, and placement_file needs placement 'file'")
        if self.redundant < 0:
            raise ValueError(f"redundant must be >= 0, got {self.redundant}")
        if self.exchange not in EXCHANGES:
            raise ValueError(f"exchange must be one of {', '.join(EXCHANGES)}, got {self.exchange!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Speculative:
    """Speculative decoding (e.g. DeepSeek MTP): ``tokens`` drafted per step, each accepted
    with probability ``acceptance`` given the previous one was (a geometric chain)."""

    tokens: int = 0
    acceptance: float = 0.0
    method: str = "mtp"

    def __post_init__(self) -> None:
        if self.tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {self.tokens}")
        if not 0.0 <= self.acceptance <= 1.0:
            raise ValueError(f"acceptance must be in [0, 1], got {self.acceptance:g}")
        if self.method not in ("mtp", "draft"):
            raise ValueError(f"method must be mtp or draft, got {self.method!r}")

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens a decode sequence gains per step: 1 + a + a^2 + ... + a^tokens."""
        return sum(self.acceptance**i for i in range(self.tokens + 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """A model served on a cluster: pools of replicas, dtypes, experts, overlap.

    Device memory for the runtime: ``memory_reserve_fraction`` of the capacity is kept free
    (vLLM's ``gpu_memory_utilization``, SGLang's ``mem_fraction_static``); or, when
    ``kv_cache_free_fraction`` is set, the KV cache takes that share of what weights,
    activations and buffers leave (TensorRT-LLM's ``kv_cache_free_gpu_mem_fraction``) and the
    rest is the reserve.
    """

    model_name: str
    dtypes: Dtypes = Dtypes()
    pools: tuple[Pool, ...]
    experts: ExpertConfig = ExpertConfig()
    overlap: str = "none"
    memory_reserve_fraction: float = 0.1
    kv_cache_free_fraction: float | None = None
    speculative: Speculative = Speculative()
    cuda_graph: bool = True

    def __post_init__(self) -> None:
        if not self.pools:
            raise ValueError("a deployment needs at least one pool")
        roles = {p.role for p in self.pools}
        if "unified" in roles and len(roles) > 1:
            raise ValueError("a unified pool cannot be mixed with prefill/decode pools")
        if roles & {"prefill", "decode"} and roles != {"prefill", "decode"}:
            raise ValueError("disaggregated serving needs both a prefill and a decode pool")
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {names}")
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f"overlap must be one of {', '.join(OVERLAP_MODES)}, got {self.overlap!r}")
        if not 0 <= self.memory_reserve_fraction < 1:
            raise ValueError("memory reserve must be in [0, 1)")
        if self.kv_cache_free_fraction is not None and not 0 < self.kv_cache_free_fraction <= 1:
            raise ValueError("kv_cache_free_fraction must be in (0, 1]")

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.pools)

    @property
    def disaggregated(self) -> bool:
        return any(p.role != "unified" for p in self.pools)
