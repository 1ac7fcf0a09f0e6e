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
PLACEMENTS = ("contiguous", "round-robin", "eplb", "file")


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
    """Per-replica engine limits (vLLM/SGLang style)."""

    max_seqs: int = 256
    max_batched_tokens: int = 8192
    chunked_prefill_tokens: int | None = None
    kv_block_tokens: int = 16
    policy: str = "fcfs"

    def __post_init__(self) -> None:
        if self.max_seqs < 1 or self.max_batched_tokens < 1 or self.kv_block_tokens < 1:
            raise ValueError("max_seqs, max_batched_tokens and kv_block_tokens must be >= 1")
        if self.chunked_prefill_tokens is not None and not 1 <= self.chunked_prefill_tokens <= self.max_batched_tokens:
            raise ValueError(
                f"chunked prefill ({self.chunked_prefill_tokens}) must be in 1..max_batched_tokens "
                f"({self.max_batched_tokens})")
        if self.policy not in SCHEDULER_POLICIES:
            raise ValueError(f"policy must be one of {', '.join(SCHEDULER_POLICIES)}, got {self.policy!r}")


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
class ExpertConfig:
    """Expert placement and routing.

    ``placement`` is a strategy name or ``file`` with ``placement_file`` (the format the
    placement planner writes); ``redundant`` extra expert replicas per MoE layer (EPLB).
    """

    placement: str = "contiguous"
    placement_file: str | None = None
    redundant: int = 0
    routing: RoutingRef = RoutingRef()

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if (self.placement == "file") != (self.placement_file is not None):
            raise ValueError("placement 'file' needs placement_file, and placement_file needs placement 'file'")
        if self.redundant < 0:
            raise ValueError(f"redundant must be >= 0, got {self.redundant}")


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
    """A model served on a cluster: pools of replicas, dtypes, experts, overlap."""

    model_name: str
    dtypes: Dtypes = Dtypes()
    pools: tuple[Pool, ...]
    experts: ExpertConfig = ExpertConfig()
    overlap: str = "none"
    memory_reserve_fraction: float = 0.1
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

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.pools)

    @property
    def disaggregated(self) -> bool:
        return any(p.role != "unified" for p in self.pools)
