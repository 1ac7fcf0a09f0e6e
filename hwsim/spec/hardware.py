"""Frozen descriptions of one device: compute, memory tiers, efficiency, power, price.

Every quantity is a float in SI units (see :mod:`hwsim.units`); the unit is in the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwsim.spec.dtypes import COMPUTE_DTYPES
from hwsim.units import SECONDS_PER_HOUR

MEMORY_KINDS = ("sram", "l2", "hbm", "gddr", "dram", "lpddr", "unified", "flash")
"""Kinds of memory tier, from fastest and smallest to slowest and largest."""

DEVICE_KINDS = ("gpu", "npu", "accelerator", "cpu", "soc")

EFFICIENCY_NAMES = (
    "gemm",           # dense GEMM: achieved / peak FLOP/s at large shapes
    "grouped_gemm",   # MoE grouped GEMM (contiguous / masked) relative to peak
    "attention",      # attention kernels, compute-bound regime
    "memory",         # achieved / peak memory bandwidth for streaming kernels
    "scale_up",       # achieved / peak bandwidth of the intra-node fabric (NVLink, xGMI...)
    "scale_out",      # achieved / peak NIC bandwidth (RDMA)
    "host_link",      # achieved / peak PCIe or C2C bandwidth
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """Where a figure comes from: a datasheet, a paper, a measurement."""

    text: str
    url: str | None = None

    def __str__(self) -> str:
        return f"{self.text} <{self.url}>" if self.url else self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryTier:
    """One level of memory (HBM, DRAM, flash, on-chip SRAM/L2)."""

    name: str
    kind: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.kind not in MEMORY_KINDS:
            raise ValueError(f"memory kind must be one of {', '.join(MEMORY_KINDS)}, got {self.kind!r}")
        if self.capacity_bytes <= 0:
            raise ValueError(f"capacity must be > 0, got {self.capacity_bytes:g} bytes")
        if self.bandwidth_bytes_per_s <= 0:
            raise ValueError(f"bandwidth must be > 0, got {self.bandwidth_bytes_per_s:g} bytes/s")
        if self.latency_s < 0:
            raise ValueError(f"latency must be >= 0, got {self.latency_s:g} s")


@dataclass(frozen=True, slots=True, kw_only=True)
class EfficiencyFactor:
    """A fitted fraction of a peak, with what it was calibrated on.

    ``value`` is the achieved fraction of peak at large, well-shaped problems; the cost
    model derates further for small or odd shapes. ``by_dtype`` overrides ``value`` for
    particular dtypes (FP8 GEMMs usually reach a smaller fraction of their peak than BF16).
    """

    name: str
    value: float
    by_dtype: dict[str, float] = field(default_factory=dict)
    calibrated_on: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self) -> None:
        if self.name not in EFFICIENCY_NAMES:
            raise ValueError(f"efficiency must be one of {', '.join(EFFICIENCY_NAMES)}, got {self.name!r}")
        for key, v in {"value": self.value, **self.by_dtype}.items():
            if not 0.0 < v <= 1.0:
                raise ValueError(f"efficiency ({key}) must be in (0, 1], got {v:g}")
            if key != "value" and key not in COMPUTE_DTYPES:
                raise ValueError(f"unknown dtype {key!r} in by_dtype; known: {', '.join(COMPUTE_DTYPES)}")

    def for_dtype(self, dtype: str | None) -> float:
        return self.by_dtype.get(dtype, self.value) if dtype is not None else self.value


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerSpec:
    """Board power: idle, TDP, dynamic coefficients and the settable cap range.

    ``compute_dynamic_w`` and ``memory_dynamic_w`` are the power drawn above idle when
    compute units (resp. memory) are fully busy; the cost model combines them with a step's
    utilisation. ``None`` means the figure is not known.
    """

    idle_w: float | None
    tdp_w: float
    compute_dynamic_w: float | None = None
    memory_dynamic_w: float | None = None
    cap_min_w: float | None = None
    cap_max_w: float | None = None
    source: Source | None = None

    def __post_init__(self) -> None:
        if self.tdp_w <= 0:
            raise ValueError(f"tdp must be > 0, got {self.tdp_w:g} W")
        if self.idle_w is not None and not 0 <= self.idle_w < self.tdp_w:
            raise ValueError(f"idle power must be in [0, tdp={self.tdp_w:g} W), got {self.idle_w:g} W")
        lo, hi = self.cap_min_w, self.cap_max_w
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"cap range is empty: min {lo:g} W > max {hi:g} W")


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceSpec:
    """What a device costs: a rental rate, or capital cost amortised over a lifetime."""

    usd_per_s: float | None = None
    capex_usd: float | None = None
    lifetime_s: float | None = None
    source: Source | None = None

    def __post_init__(self) -> None:
        rental = self.usd_per_s is not None
        owned = self.capex_usd is not None
        if rental == owned:
            raise ValueError("give either a rental price (USD/h) or capex and lifetime, not both or neither")
        if owned and (self.lifetime_s is None or self.lifetime_s <= 0):
            raise ValueError("capex needs a lifetime > 0")
        if (self.usd_per_s or 0.0) < 0 or (self.capex_usd or 0.0) < 0:
            raise ValueError("prices must be >= 0")

    @property
    def effective_usd_per_s(self) -> float:
        """Rental rate, or capex spread evenly over the lifetime."""
        if self.usd_per_s is not None:
            return self.usd_per_s
        assert self.capex_usd is not None
        assert self.lifetime_s is not None
        return self.capex_usd / self.lifetime_s

    @property
    def usd_per_hour(self) -> float:
        return self.effective_usd_per_s * SECONDS_PER_HOUR


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """An accelerator (or CPU/SoC used as one): compute peaks, memory tiers, power, price.

    ``compute_flop_per_s`` maps a dtype name (see :data:`hwsim.spec.dtypes.COMPUTE_DTYPES`)
    to the dense peak; a dtype the device cannot run is absent.
    """

    name: str
    kind: str
    vendor: str = ""
    compute_flop_per_s: dict[str, float]
    memory: tuple[MemoryTier, ...]
    efficiency: tuple[EfficiencyFactor, ...] = ()
    power: PowerSpec | None = None
    price: PriceSpec | None = None
    sm_count: int | None = None
    frequency_hz: float | None = None
    launch_eager_s: float | None = None
    launch_graph_s: float | None = None
    sources: dict[str, Source] = field(default_factory=dict)
    notes: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise ValueError(f"device kind must be one of {', '.join(DEVICE_KINDS)}, got {self.kind!r}")
        if not self.compute_flop_per_s:
            raise ValueError("a device needs at least one compute peak")
        for dtype, peak in self.compute_flop_per_s.items():
            if dtype not in COMPUTE_DTYPES:
                raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(COMPUTE_DTYPES)}")
            if peak <= 0:
                raise ValueError(f"compute peak for {dtype} must be > 0, got {peak:g} FLOP/s")
        if not self.memory:
            raise ValueError("a device needs at least one memory tier")
        names = [t.name for t in self.memory]
        if len(set(names)) != len(names):
            raise ValueError(f"memory tier names must be unique, got {names}")
        eff = [e.name for e in self.efficiency]
        if len(set(eff)) != len(eff):
            raise ValueError(f"efficiency names must be unique, got {eff}")

    # -- derived -----------------------------------------------------------------
    @property
    def main_memory(self) -> MemoryTier:
        """The largest off-chip tier the device computes from (HBM, GDDR, unified...)."""
        offchip = [t for t in self.memory if t.kind not in ("sram", "l2", "flash", "dram")]
        pool = offchip or [t for t in self.memory if t.kind not in ("sram", "l2")] or list(self.memory)
        return max(pool, key=lambda t: t.capacity_bytes)

    @property
    def hbm_bytes(self) -> float:
        return self.main_memory.capacity_bytes

    @property
    def hbm_bytes_per_s(self) -> float:
        return self.main_memory.bandwidth_bytes_per_s

    def tier(self, name: str) -> MemoryTier:
        for t in self.memory:
            if t.name == name:
                return t
        raise KeyError(f"{self.name} has no memory tier {name!r}; tiers: {[t.name for t in self.memory]}")

    def peak_flop_per_s(self, dtype: str) -> float:
        """Dense peak for ``dtype``, falling back to the nearest wider dtype the device has.

        Weight-only formats (int4, fp4 on devices without fp4 units) compute in a wider type.
        """
        for candidate in _COMPUTE_FALLBACK[dtype]:
            if candidate in self.compute_flop_per_s:
                return self.compute_flop_per_s[candidate]
        raise KeyError(f"{self.name} has no compute peak for {dtype} or a wider type")

    def efficiency_of(self, name: str, default: float = 1.0, dtype: str | None = None) -> float:
        """The fitted efficiency ``name`` (for ``dtype`` where one is given), else ``default``."""
        for e in self.efficiency:
            if e.name == name:
                return e.for_dtype(dtype)
        return default


_COMPUTE_FALLBACK: dict[str, tuple[str, ...]] = {
    "fp4": ("fp4", "fp8", "bf16", "fp16", "fp32"),
    "int4": ("int4", "int8", "fp8", "bf16", "fp16", "fp32"),
    "fp8": ("fp8", "bf16", "fp16", "fp32"),
    "int8": ("int8", "fp8", "bf16", "fp16", "fp32"),
    "bf16": ("bf16", "fp16", "fp32"),
    "fp16": ("fp16", "bf16", "fp32"),
    "tf32": ("tf32", "fp32"),
    "fp32": ("fp32",),
}
