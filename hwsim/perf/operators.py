"""Operator costs on one device: GEMM, MoE grouped GEMM, attention, streaming ops -> OpCost.

Thin wrappers: they read a :class:`~hwsim.spec.hardware.Device` and an
:class:`~hwsim.spec.attention.AttentionSpec`, turn dtypes into bytes, and call the numba
kernels of :mod:`hwsim.perf.kernels` (which document the model). The LM head is a
:func:`gemm`; norms, activations, router + top-k, sampling and embedding lookups are
:func:`memory_op`.

Device parameters, and what is used when a device does not give them:

* efficiencies ``device.efficiency_of(name, default, dtype=compute dtype)`` for ``gemm``,
  ``grouped_gemm`` (falls back to the device's ``gemm``), ``attention`` and ``memory``;
  :data:`DEFAULT_EFFICIENCY` otherwise.
* ``sm_count``: :data:`DEFAULT_SM_COUNT` (132, H100/H800 SXM) when unknown.
* launch overhead per kernel: ``device.launch_eager_s`` / ``launch_graph_s``, else
  :data:`DEFAULT_LAUNCH_EAGER_S` / :data:`DEFAULT_LAUNCH_GRAPH_S` (zero on a CPU).

Kernel-shape constants (:data:`SHAPE_MODEL`) are fitted once, on H800 (see
``docs/calibration-operators.md``), and applied to every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.perf import kernels
from hwsim.perf.types import OpCost
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.dtypes import bytes_per_elem
from hwsim.spec.hardware import Device

DEFAULT_SM_COUNT = 132
"""SMs assumed when the device file has none: H100/H800 SXM5 (GH100 with 132 SMs enabled)."""

DEFAULT_LAUNCH_EAGER_S = 4.7e-6
"""Host cost of one eager kernel launch. meta-pytorch/tritonbench#1017 (GB200): raw
``cuLaunchKernel`` 3.0 us, through Triton's ``CompiledKernel.run`` 4.7 us, through Inductor's
per-kernel path 6.8 us; HolisticTraceAnalysis docs: 'the launch time on the CPU side is between
5-20 microseconds'."""

DEFAULT_LAUNCH_GRAPH_S = 0.58e-6
"""Cost of one kernel node replayed from a CUDA graph: ahrefs/ocannl#488 measured a graph
replay at '~15 us fixed plus ~0.58 us per node' against ~6.4 us per individual launch (RTX 5070
Ti, CUDA 13.3). The fixed part is paid once per step and is not modelled per operator."""

DEFAULT_EFFICIENCY: dict[str, float] = {
    "gemm": 0.75,       # median (0.753) of the 7 MAMF-fitted bf16 values, AMD 0.52 .. A100 0.88
    "attention": 0.65,  # FlashMLA / FA compute-bound fits: H800 0.69, B200 0.65 (the lower, rounded)
    "memory": 0.85,     # between DeepGEMM small-M (2668 GB/s = 0.80 of 3.35 TB/s) and FlashMLA (0.91)
}
"""Efficiencies used when a device has no fitted value (``grouped_gemm`` falls back to ``gemm``)."""

TILE_M = 128
"""GEMM rows per tile (two 64-row consumer warpgroups); the contiguous grouped-GEMM alignment."""

TILE_M_MIN = 64
"""Smallest GEMM row tile: one Hopper ``wgmma`` warpgroup tile (DeepGEMM uses 64 for m <= 64)."""

TILE_N_MAX = 128
"""Widest GEMM tile tried (DeepGEMM's SM90 heuristic tries 16..128 in steps of 8)."""

SCALE_BYTES_PER_ELEM: dict[str, float] = {
    "fp4": 1.0 / 16.0,   # NVFP4: one FP8 (E4M3) scale per 16 elements
    "int4": 1.0 / 32.0,  # GPTQ/AWQ-style group 128: FP16 scale + FP16 zero point
}
"""Block-scale bytes per weight element for narrow weight formats (FP8 block scales are < 0.01%)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShapeModel:
    """Kernel-shape constants shared by all devices (see :mod:`hwsim.perf.kernels`).

    ``k_half_elems``: per-tile pipeline fill/drain and epilogue, in elements of K (GEMM
    efficiency is ``eff * k / (k + k_half)``). ``latency_s``: a kernel's own fixed ramp and
    drain. ``sharpness``: exponent ``p`` of the blend ``(compute**p + memory**p)**(1/p)`` of the
    two roofline legs (large p: ideal roofline).
    """

    k_half_elems: float
    latency_s: float
    sharpness: float
    calibrated_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.k_half_elems < 0 or self.latency_s < 0:
            raise ValueError("k_half and latency must be >= 0")
        if self.sharpness < 1.0:
            raise ValueError(f"sharpness must be >= 1, got {self.sharpness:g}")


SHAPE_MODEL = ShapeModel(k_half_elems=233.2, latency_s=2.63e-6, sharpness=2.23,
                         calibrated_on=("deepgemm-fp8-dense-gemm-h800",))
"""Fitted by ``validation/calibrate_operators.py`` on the DeepGEMM dense table (H800, FP8)."""


# -- device parameters -------------------------------------------------------------------
def launch_overhead_s(device: Device, kernels: int = 1, *, cuda_graph: bool = True) -> float:
    """Launch cost of ``kernels`` kernels: eager launches, or nodes replayed from a CUDA graph.

    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15},
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> round(launch_overhead_s(gpu, 10, cuda_graph=False) * 1e6, 1)   # 10 x 4.7 us default
    47.0
    """
    if kernels < 0:
        raise ValueError(f"kernel count must be >= 0, got {kernels}")
    if device.kind == "cpu":
        return 0.0
    if cuda_graph:
        per = device.launch_graph_s if device.launch_graph_s is not None else DEFAULT_LAUNCH_GRAPH_S
    else:
        per = device.launch_eager_s if device.launch_eager_s is not None else DEFAULT_LAUNCH_EAGER_S
    return kernels * per


def num_sms(device: Device) -> int:
    """SM (or CU / core) count used for wave quantisation."""
    return device.sm_count or DEFAULT_SM_COUNT


def efficiency(device: Device, name: str, dtype: str | None = None) -> float:
    """Fitted efficiency ``name`` for ``dtype``, with the documented defaults."""
    if name == "grouped_gemm":
        return device.efficiency_of("grouped_gemm", efficiency(device, "gemm", dtype), dtype=dtype)
    return device.efficiency_of(name, DEFAULT_EFFICIENCY[name], dtype=dtype)


def compute_dtype(dtype: str, weight_dtype: str | None = None) -> str:
    """The format the math runs in: the wider of activations and weights.

    Weight-only int4/fp4 (W4A16) computes in the activation dtype; W8A8 FP8 in FP8.
    """
    if weight_dtype is None or bytes_per_elem(weight_dtype) <= bytes_per_elem(dtype):
        return dtype
    return weight_dtype


def weight_bytes_per_elem(weight_dtype: str) -> float:
    """Stored bytes per weight element, block scales included."""
    return bytes_per_elem(weight_dtype) + SCALE_BYTES_PER_ELEM.get(weight_dtype, 0.0)


def _peak(device: Device, dtype: str) -> float:
    try:
        return device.peak_flop_per_s(dtype)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from None


def _vector_peak(device: Device) -> float:
    """Peak for element-wise math: fp32 where listed, else the smallest listed peak."""
    peaks = device.compute_flop_per_s
    return peaks.get("fp32", min(peaks.values()))


def _op(name: str, cost: tuple[float, float, float, float, float, float]) -> OpCost:
    time_s, flop, moved, compute_s, memory_s, overhead_s = cost
    return OpCost(name=name, time_s=time_s, flop=flop, bytes_moved=moved, compute_s=compute_s,
                  memory_s=memory_s, overhead_s=overhead_s)


def _check_dims(**dims: int) -> None:
    for key, value in dims.items():
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")


# -- operators ---------------------------------------------------------------------------
def gemm(device: Device, m: int, n: int, k: int, *, dtype: str, weight_dtype: str | None = None,
         out_dtype: str = "bf16", cuda_graph: bool = True, name: str = "gemm",
         shape: ShapeModel = SHAPE_MODEL) -> OpCost:
    """Dense GEMM ``[m, k] @ [k, n]``: activations in ``dtype``, weights in ``weight_dtype``.

    The math runs in the wider of the two (:func:`compute_dtype`) at the device's peak for it
    (falling back to a wider format the device has); weights are read at their stored width.

    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15}, sm_count=128,
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> op = gemm(gpu, 1, 8192, 8192, dtype="bf16", weight_dtype="int4")
    >>> op.bound, op.bytes_moved   # decode: weights at 0.5 B + 1/32 B of scales per element
    ('memory', 35684352.0)
    """
    _check_dims(m=m, n=n, k=k)
    cd = compute_dtype(dtype, weight_dtype)
    tile_m = TILE_M_MIN if m <= TILE_M_MIN else TILE_M
    cost = kernels.gemm_cost(
        int(m), int(n), int(k), bytes_per_elem(dtype), weight_bytes_per_elem(weight_dtype or dtype),
        bytes_per_elem(out_dtype), _peak(device, cd), device.hbm_bytes_per_s,
        efficiency(device, "gemm", cd), efficiency(device, "memory"), num_sms(device),
        tile_m, TILE_N_MAX, launch_overhead_s(device, cuda_graph=cuda_graph),
        shape.k_half_elems, shape.latency_s, shape.sharpness)
    return _op(name, cost)


def grouped_gemm(device: Device, tokens_per_expert: Sequence[int], n: int, k: int, *,
                 dtype: str, weight_dtype: str | None = None, out_dtype: str = "bf16",
                 mode: str = "contiguous", cuda_graph: bool = True, name: str = "grouped_gemm",
                 shape: ShapeModel = SHAPE_MODEL) -> OpCost:
    """MoE experts of one device as one grouped GEMM (each expert ``[t_e, k] @ [k, n]``).

    ``mode="contiguous"`` (prefill): each expert's tokens padded to 128 rows. ``"masked"``
    (decode, CUDA-graph friendly): every touched expert padded to the largest group. Experts
    with no token cost nothing; each touched expert's weights are read once.

    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15},
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> one = grouped_gemm(gpu, [1, 1, 0, 0], 4096, 7168, dtype="fp8", weight_dtype="fp8")
    >>> full = grouped_gemm(gpu, [128, 128, 0, 0], 4096, 7168, dtype="fp8", weight_dtype="fp8")
    >>> one.compute_s == full.compute_s, full.flop / one.flop   # padding: same tiles, real FLOP
    (True, 128.0)
    """
    if mode not in ("contiguous", "masked"):
        raise ValueError(f"grouped GEMM mode must be 'contiguous' or 'masked', got {mode!r}")
    _check_dims(n=n, k=k)
    tokens = kernels.as_tokens(tokens_per_expert)
    masked = mode == "masked"
    largest = int(tokens.max()) if tokens.size else 0
    tile_m = TILE_M_MIN if masked and largest <= TILE_M_MIN else TILE_M
    cd = compute_dtype(dtype, weight_dtype)
    cost = kernels.grouped_gemm_cost(
        tokens, int(n), int(k), bytes_per_elem(dtype), weight_bytes_per_elem(weight_dtype or dtype),
        bytes_per_elem(out_dtype), _peak(device, cd), device.hbm_bytes_per_s,
        efficiency(device, "grouped_gemm", cd), efficiency(device, "memory"), num_sms(device),
        tile_m, TILE_N_MAX, masked, launch_overhead_s(device, cuda_graph=cuda_graph),
        shape.k_half_elems, shape.latency_s, shape.sharpness)
    return _op(name, cost)


@dataclass(frozen=True, slots=True)
class _AttnDims:
    heads: int
    d_qk: int
    d_v: int
    kv_bytes_per_token: float
    qo_bytes_per_token: float
    window_tokens: int
    chunked: bool


def _attn_dims(attn: AttentionSpec, *, heads: int, kv_heads: int, dtype: str, kv_dtype: str,
               absorbed: bool, layer: int | None) -> _AttnDims:
    """Per-device attention widths: query/key and value width, KV and Q/O bytes per token."""
    if heads < 1 or kv_heads < 1:
        raise ValueError(f"heads and kv_heads must be >= 1, got {heads} and {kv_heads}")
    kv_b, act_b = bytes_per_elem(kv_dtype), bytes_per_elem(dtype)
    if attn.kind == "mla" and absorbed:
        # One latent (kv_lora + rope) per token serves every head as key; its first kv_lora
        # columns serve as value, so it is read once.
        assert attn.kv_lora_rank is not None
        d_qk, d_v = attn.kv_elems_per_token(), attn.kv_lora_rank
        kv_token = d_qk * kv_b
    elif attn.kind == "mla":
        # Non-absorbed (prefill): keys (nope + rope) and values decompressed per head.
        d_qk, d_v = attn.qk_head_dim, attn.value_head_dim
        kv_token = heads * (d_qk + d_v) * kv_b
    else:
        if heads % kv_heads:
            raise ValueError(f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
        d_qk = d_v = attn.head_dim
        kv_token = kv_heads * 2 * attn.head_dim * kv_b
    window = 0
    chunked = False
    if layer is not None and attn.windowed(layer):
        assert attn.window_tokens is not None
        window, chunked = attn.window_tokens, attn.window_kind == "chunked"
    return _AttnDims(heads, d_qk, d_v, float(kv_token), float(heads * (d_qk + d_v) * act_b),
                     window, chunked)


def attention_prefill(device: Device, attn: AttentionSpec, *, new_tokens: Sequence[int],
                      context_tokens: Sequence[int], heads: int, kv_heads: int, dtype: str,
                      kv_dtype: str, cuda_graph: bool = True, name: str = "attention_prefill",
                      layer: int | None = None, mla_absorbed: bool = False,
                      shape: ShapeModel = SHAPE_MODEL) -> OpCost:
    """Prefill (or a chunk of it): sequence ``i`` adds ``new_tokens[i]`` after
    ``context_tokens[i]`` cached tokens. ``heads`` / ``kv_heads`` are those on this device.

    ``layer`` selects the window of that layer (None: full attention). MLA runs non-absorbed
    by default (decompressed K/V per head); ``mla_absorbed`` runs it over the latent, as
    FlashMLA's sparse prefill does.

    >>> from hwsim.spec.attention import AttentionSpec
    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15},
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> gqa = AttentionSpec(kind="gqa", num_heads=32, num_kv_heads=8, head_dim=128)
    >>> op = attention_prefill(gpu, gqa, new_tokens=[1024], context_tokens=[0], heads=32,
    ...                        kv_heads=8, dtype="bf16", kv_dtype="bf16")
    >>> op.flop == 4 * 32 * 128 * (1024 * 1025 / 2)   # 4 h d x causal pairs
    True
    """
    dims = _attn_dims(attn, heads=heads, kv_heads=kv_heads, dtype=dtype, kv_dtype=kv_dtype,
                      absorbed=mla_absorbed, layer=layer)
    new, ctx = kernels.as_tokens(new_tokens), kernels.as_tokens(context_tokens)
    if new.shape != ctx.shape:
        raise ValueError(f"new_tokens and context_tokens differ in length "
                         f"({new.size} vs {ctx.size})")
    cost = kernels.attention_prefill_cost(
        new, ctx, dims.heads, dims.d_qk, dims.d_v, dims.kv_bytes_per_token,
        dims.qo_bytes_per_token, dims.window_tokens, dims.chunked, _peak(device, dtype),
        device.hbm_bytes_per_s, efficiency(device, "attention", dtype),
        efficiency(device, "memory"), launch_overhead_s(device, cuda_graph=cuda_graph),
        shape.latency_s, shape.sharpness)
    return _op(name, cost)


def attention_decode(device: Device, attn: AttentionSpec, *, kv_lens: Sequence[int], heads: int,
                     kv_heads: int, dtype: str, kv_dtype: str, cuda_graph: bool = True,
                     name: str = "attention_decode", layer: int | None = None,
                     query_tokens: int = 1, shape: ShapeModel = SHAPE_MODEL) -> OpCost:
    """Decode attention over sequences of ``kv_lens[i]`` tokens (the new ones included).

    ``query_tokens`` per sequence (1; 2 or more with MTP / speculative decoding). MLA is
    absorbed (FlashMLA): ``heads`` query heads on this device share one latent KV of
    ``kv_lora_rank + qk_rope_head_dim`` elements per token; ``kv_heads`` is not used for MLA.

    >>> from hwsim.spec.attention import AttentionSpec
    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15},
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> mla = AttentionSpec(kind="mla", num_heads=128, num_kv_heads=128, head_dim=128,
    ...                     kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64,
    ...                     v_head_dim=128)
    >>> op = attention_decode(gpu, mla, kv_lens=[4096] * 64, heads=16, kv_heads=1,
    ...                       dtype="bf16", kv_dtype="fp8")
    >>> op.bound, op.bytes_moved == 64 * (4096 * 576 + 16 * 1088 * 2)
    ('memory', True)
    """
    if query_tokens < 1:
        raise ValueError(f"query_tokens must be >= 1, got {query_tokens}")
    dims = _attn_dims(attn, heads=heads, kv_heads=kv_heads, dtype=dtype, kv_dtype=kv_dtype,
                      absorbed=True, layer=layer)
    cost = kernels.attention_decode_cost(
        kernels.as_tokens(kv_lens), int(query_tokens), dims.heads, dims.d_qk, dims.d_v,
        dims.kv_bytes_per_token, dims.qo_bytes_per_token, dims.window_tokens, dims.chunked,
        _peak(device, dtype), device.hbm_bytes_per_s, efficiency(device, "attention", dtype),
        efficiency(device, "memory"), launch_overhead_s(device, cuda_graph=cuda_graph),
        shape.latency_s, shape.sharpness)
    return _op(name, cost)


def memory_op(device: Device, name: str, *, bytes_moved: float, flop: float = 0.0,
              cuda_graph: bool = True, shape: ShapeModel = SHAPE_MODEL) -> OpCost:
    """A streaming kernel: element-wise op, norm, router + top-k, sampling, embedding lookup.

    >>> from hwsim.spec.hardware import Device, MemoryTier
    >>> gpu = Device(name="g", kind="gpu", compute_flop_per_s={"bf16": 1e15},
    ...              memory=(MemoryTier(name="hbm", kind="hbm", capacity_bytes=8e10,
    ...                                 bandwidth_bytes_per_s=3e12),))
    >>> memory_op(gpu, "rmsnorm", bytes_moved=2 * 4096 * 7168 * 2.0).bound
    'memory'
    """
    if bytes_moved < 0 or flop < 0:
        raise ValueError(f"{name}: bytes and FLOP must be >= 0")
    cost = kernels.memory_bound_cost(
        float(bytes_moved), float(flop), device.hbm_bytes_per_s, efficiency(device, "memory"),
        _vector_peak(device), launch_overhead_s(device, cuda_graph=cuda_graph), shape.latency_s)
    return _op(name, cost)


__all__ = [
    "DEFAULT_EFFICIENCY", "DEFAULT_LAUNCH_EAGER_S", "DEFAULT_LAUNCH_GRAPH_S", "DEFAULT_SM_COUNT",
    "SHAPE_MODEL", "ShapeModel", "attention_decode", "attention_prefill", "compute_dtype",
    "efficiency", "gemm", "grouped_gemm", "launch_overhead_s", "memory_op", "num_sms",
    "weight_bytes_per_elem",
]
