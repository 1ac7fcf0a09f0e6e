"""Operator rows: DeepGEMM dense and grouped FP8 GEMM (H800), FlashMLA / FlashAttention, MAMF.

Every row is predicted with :mod:`hwsim.perf.operators` on the catalog device with launch
overhead set to zero (the sources time kernels on the GPU). A row's prediction is a function of
trial efficiencies and a kernel-shape model, so the same rows serve the fit
(``validation/calibrate_operators.py``) and the validation table (:func:`operator_rows`, which
evaluates them with the catalog files and :data:`hwsim.perf.operators.SHAPE_MODEL`).

Cases: ``deepgemm-fp8-dense-gemm-h800``, ``deepgemm-fp8-grouped-gemm-h800``,
``flashmla-h800-b200``, ``mamf-matmul-bf16-fp8`` (``../shared/validation/cases.yaml``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwsim.io.load import load_device
from hwsim.perf import operators as ops
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.hardware import Device, EfficiencyFactor
from hwsim.validate.rows import ValidationRow

DENSE, GROUPED, FLASHMLA, MAMF = ("deepgemm-fp8-dense-gemm-h800", "deepgemm-fp8-grouped-gemm-h800",
                                  "flashmla-h800-b200", "mamf-matmul-bf16-fp8")
OPERATOR_CASES = (DENSE, GROUPED, FLASHMLA, MAMF)
TIER1 = frozenset({DENSE, GROUPED, MAMF})
MINE = ("gemm", "grouped_gemm", "attention", "memory")
"""The efficiency factors the operator fit owns."""

MAMF_DEVICES = {"NVIDIA A100 SXM": "A100-80GB", "NVIDIA H100 SXM": "H100-SXM",
                "NVIDIA H200 SXM": "H200", "NVIDIA B200 SXM": "B200", "NVIDIA GB200 SXM": "GB200",
                "AMD MI300X": "MI300X", "AMD MI325X": "MI325X", "Intel Gaudi 3": "Gaudi-3"}
MAMF_GRID = range(1024, 16385, 1024)   # MAMF is a maximum over shapes: the model's is taken here

# DeepSeek-V3 MLA (model card config.json); FlashMLA's sparse kernels attend to top-2048 tokens,
# stood in for by a 2048-token sliding window (same number of attended keys per query).
MLA = AttentionSpec(kind="mla", num_heads=128, num_kv_heads=128, head_dim=128, q_lora_rank=1536,
                    kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
MLA_TOPK = dataclasses.replace(MLA, window_tokens=2048, window_pattern=(True,))
MHA = AttentionSpec(kind="mha", num_heads=16, num_kv_heads=16, head_dim=128)


@dataclass
class Eff:
    """A trial efficiency factor while fitting."""

    value: float
    by_dtype: dict[str, float] = field(default_factory=dict)
    calibrated_on: tuple[str, ...] = ()
    note: str = ""


Effs = dict[str, dict[str, Eff]]                        # device -> efficiency name -> Eff
Predict = Callable[[Effs | None, ops.ShapeModel], float]


@dataclass
class Row:
    """A fittable operator row: ``predict(effs, shape)``; ``effs=None`` means the catalog's."""

    group: str
    device: str
    label: str
    unit: str
    measured: float
    predict: Predict
    modelled: bool = True
    note: str = ""
    predicted: float = float("nan")
    case: str = ""

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


# -- devices with trial efficiencies -----------------------------------------------------
@functools.cache
def _base_device(name: str) -> Device:
    return dataclasses.replace(load_device(name), launch_eager_s=0.0, launch_graph_s=0.0)


def device(name: str, effs: Effs | None) -> Device:
    """Catalog device with launch overhead zeroed. With ``effs`` its operator efficiencies
    (:data:`MINE`) are replaced by ``effs[name]`` (defaults where absent), so a fit never depends
    on what the YAML holds now; with None the catalog's own factors are kept."""
    base = _base_device(name)
    if effs is None:
        return base
    mine = effs.get(name, {})
    kept = tuple(e for e in base.efficiency if e.name not in MINE)
    new = tuple(EfficiencyFactor(name=k, value=e.value, by_dtype=dict(e.by_dtype),
                                 calibrated_on=e.calibrated_on or ("trial",)) for k, e in mine.items())
    return dataclasses.replace(base, efficiency=kept + new)


def tflops(op: ops.OpCost) -> float:
    return op.flop / op.time_s / 1e12


# -- rows ---------------------------------------------------------------------------------
def dense_rows(case: dict[str, Any]) -> list[Row]:
    rows = []
    for r in case["metrics"]:
        m, n, k = r["M"], r["N"], r["K"]

        def pred(effs: Effs | None, shape: ops.ShapeModel, m: int = m, n: int = n, k: int = k) -> float:
            return tflops(ops.gemm(device("H800", effs), m, n, k, dtype="fp8", weight_dtype="fp8",
                                   shape=shape))
        rows.append(Row("dense GEMM (DeepGEMM, H800, FP8)", "H800", f"M={m} N={n} K={k}", "TFLOP/s",
                        r["TFLOPS"], pred, case=DENSE))
    return rows


def grouped_rows(case: dict[str, Any]) -> list[Row]:
    rows = []
    for mode, entries in case["metrics"].items():
        for r in entries:
            g, mg, n, k = r["groups"], r["M_per_group"], r["N"], r["K"]

            def pred(effs: Effs | None, shape: ops.ShapeModel, g: int = g, mg: int = mg, n: int = n,
                     k: int = k, mode: str = mode) -> float:
                return tflops(ops.grouped_gemm(device("H800", effs), [mg] * g, n, k, dtype="fp8",
                                               weight_dtype="fp8", mode=mode, shape=shape))
            rows.append(Row("grouped GEMM (DeepGEMM, H800, FP8)", "H800",
                            f"{mode} {g} x {mg} N={n} K={k}", "TFLOP/s", r["TFLOPS"], pred, case=GROUPED))
    return rows


def _decode(dev: str, heads: int, q: int, kv: int, kv_dtype: str, unit: str) -> Predict:
    def pred(effs: Effs | None, shape: ops.ShapeModel) -> float:
        op = ops.attention_decode(device(dev, effs), MLA, kv_lens=[kv] * 128, heads=heads,
                                  kv_heads=1, dtype="bf16", kv_dtype=kv_dtype, query_tokens=q,
                                  shape=shape)
        return op.bytes_moved / op.time_s / 1e9 if unit == "GB/s" else tflops(op)
    return pred


def _prefill(dev: str, attn: AttentionSpec, heads: int, new: int, ctx: int, absorbed: bool) -> Predict:
    def pred(effs: Effs | None, shape: ops.ShapeModel) -> float:
        return tflops(ops.attention_prefill(device(dev, effs), attn, new_tokens=[new],
                                            context_tokens=[ctx], heads=heads, kv_heads=heads,
                                            dtype="bf16", kv_dtype="bf16", layer=0,
                                            mla_absorbed=absorbed, shape=shape))
    return pred


def flashmla_rows(case: dict[str, Any]) -> list[Row]:
    """Configurations (FlashMLA's README gives peak figures, not shapes): 128 sequences of 4096
    tokens; memory-bound with 16 query heads, compute-bound with 128 heads x 2 MTP tokens."""
    spec: dict[str, tuple[str, Predict, bool, str]] = {
        "dense_MLA_decode_memory_bound_H800": ("H800", _decode("H800", 16, 1, 4096, "bf16", "GB/s"), True,
                                               "128 x 4096 tokens, 16 heads, BF16 KV"),
        "dense_MLA_decode_compute_bound_H800": ("H800", _decode("H800", 128, 2, 4096, "bf16", "TF"), True,
                                                "128 x 4096 tokens, 128 heads x 2 tokens"),
        "sparse_MLA_decode_FP8KV_H800": ("H800", _decode("H800", 128, 2, 2048, "fp8", "TF"), False,
                                         "not modelled: top-k gather + FP8 dequant (dense stand-in)"),
        "sparse_MLA_decode_B200": ("B200", _decode("B200", 128, 2, 2048, "fp8", "TF"), False,
                                   "not modelled: 'not really optimized yet' (source)"),
        "sparse_MLA_prefill_H800": ("H800", _prefill("H800", MLA_TOPK, 128, 4096, 4096, True), True,
                                    "4096 new after 4096, 128 heads, latent, 2048 keys/query"),
        "sparse_MLA_prefill_B200": ("B200", _prefill("B200", MLA_TOPK, 128, 4096, 4096, True), True,
                                    "as the H800 row"),
        "MHA_prefill_fwd_B200": ("B200", _prefill("B200", MHA, 16, 8192, 0, False), True,
                                 "causal 8192 tokens, 16 heads x 128"),
    }
    rows = []
    for r in case["metrics"]:
        name = r["name"]
        if name in spec:
            dev, pred, modelled, note = spec[name]
            unit = "GB/s" if r["unit"] == "GB/s" else "TFLOP/s"
            rows.append(Row("attention (FlashMLA / FA)", dev, name, unit, r["value"], pred, modelled, note,
                            case=FLASHMLA))
        elif name == "FP8_KV_bytes_per_token_V32":
            kv = float(MLA.kv_elems_per_token())   # 576 FP8 bytes; scales and BF16 RoPE not modelled
            rows.append(Row("attention (FlashMLA / FA)", "-", name, "B", r["value"],
                            lambda effs, shape, kv=kv: kv, False,
                            "not modelled: V3.2 layout adds 16 B scales and keeps RoPE in BF16", case=FLASHMLA))
    return rows


def _mamf_shape(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    m, n, k = (int(x) for x in text.split("x"))
    return m, n, k


GRID = [(m, n, k) for m in MAMF_GRID for n in MAMF_GRID for k in MAMF_GRID]


def mamf_rows(case: dict[str, Any], best: dict[tuple[str, str], tuple[int, int, int]]) -> list[Row]:
    """MAMF rows; ``best`` holds each row's argmax shape (the fit holds it while it searches;
    clear it to search afresh)."""
    rows = []
    for dtype, entries in case["metrics"].items():
        for r in entries:
            label = str(r.get("device"))
            dev = MAMF_DEVICES.get(label)
            if dev is None or "MAMF" not in r:
                continue
            shape_mnk = _mamf_shape(r.get("shape"))
            candidates = GRID + ([shape_mnk] if shape_mnk else [])

            def pred(effs: Effs | None, shape: ops.ShapeModel, dev: str = dev, dtype: str = dtype,
                     candidates: list[tuple[int, int, int]] = candidates) -> float:
                """The model's best TFLOP/s over the shapes (the argmax is held while fitting)."""
                d = device(dev, effs)
                mnk = best.get((dev, dtype)) or max(candidates, key=lambda s: tflops(
                    ops.gemm(d, *s, dtype=dtype, shape=shape)))
                best[(dev, dtype)] = mnk
                return tflops(ops.gemm(d, *mnk, dtype=dtype, shape=shape))
            where = f"measured best {r['shape']}" if shape_mnk else "measured best shape not given"
            rows.append(Row("MAMF best-shape matmul", dev, f"{label} {dtype}", "TFLOP/s", r["MAMF"],
                            pred, True, f"{where}; model: best of a 1024..16384 grid and that shape; "
                            "in-sample (1 parameter per row)", case=MAMF))
    return rows


def all_rows(cases: dict[str, dict[str, Any]], best: dict[tuple[str, str], tuple[int, int, int]]) -> list[Row]:
    """Every operator row of the four cases (those present in ``cases``)."""
    out: list[Row] = []
    for cid, build in ((DENSE, dense_rows), (GROUPED, grouped_rows), (FLASHMLA, flashmla_rows)):
        if cid in cases:
            out += build(cases[cid])
    if MAMF in cases:
        out += mamf_rows(cases[MAMF], best)
    return out


def operator_rows(cases: dict[str, dict[str, Any]], *, mamf: bool = True) -> list[ValidationRow]:
    """Validation rows predicted with the catalog devices and the committed shape model.

    MAMF rows are in-sample by construction (one parameter per row sets each device's GEMM
    ceiling); they are listed but not counted in the median. ``mamf=False`` skips their
    best-shape search (4096 shapes per row).
    """
    sel = {k: v for k, v in cases.items() if mamf or k != MAMF}
    out = []
    for r in all_rows(sel, {}):
        pred = r.predict(None, ops.SHAPE_MODEL)
        in_sample = r.case == MAMF
        note = r.note if not in_sample else "in-sample: sets the device's GEMM ceiling; " + r.note
        out.append(ValidationRow(kind="operator", case=r.case, label=f"{r.device} {r.label}", unit=r.unit,
                                 measured=float(r.measured), predicted=pred,
                                 tier=1 if r.case in TIER1 else 2, modelled=r.modelled and not in_sample,
                                 note=note))
    return out


__all__ = ["DENSE", "FLASHMLA", "GROUPED", "MAMF", "MINE", "OPERATOR_CASES", "Eff", "Effs", "Row",
           "all_rows", "dense_rows", "device", "flashmla_rows", "grouped_rows", "mamf_rows",
           "operator_rows", "tflops"]
