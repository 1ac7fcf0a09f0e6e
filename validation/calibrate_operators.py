"""Fit the operator cost model on published kernel measurements and report how well it predicts.

    python validation/calibrate_operators.py                 # fit, print, write the doc
    python validation/calibrate_operators.py --write-yaml    # ... and the device efficiencies

Cases (``../shared/validation/cases.yaml``): ``deepgemm-fp8-dense-gemm-h800``,
``deepgemm-fp8-grouped-gemm-h800``, ``flashmla-h800-b200``, ``mamf-matmul-bf16-fp8``. Every
row is predicted with :mod:`hwsim.perf.operators` on the catalog device, launch overhead set to
zero (the sources time kernels on the GPU). Fits minimise the sum of squared log errors
``log(predicted / measured)`` (over- and under-prediction weigh the same):

1. H800 ``memory``: FlashMLA's memory-bound decode row (1 parameter, 1 row).
2. ``SHAPE_MODEL`` (k_half, latency, sharpness) and H800 ``gemm`` fp8: the 18 DeepGEMM dense rows
   (4 parameters, pattern search from a coarse grid).
3. ``attention``: H800 on FlashMLA's dense compute-bound decode and sparse prefill; B200 on its
   sparse prefill and FA prefill rows (1 parameter per device). Steps 1-3 repeat until stable.
4. H800 ``grouped_gemm`` fp8: the 10 DeepGEMM grouped rows (1 parameter; shape model fixed).
5. ``gemm`` per device and dtype from its MAMF row (1 parameter, 1 row each; in-sample).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hwsim.io.load import load_device
from hwsim.perf import operators as ops
from hwsim.spec.attention import AttentionSpec
from hwsim.spec.hardware import Device, EfficiencyFactor

REPO = Path(__file__).resolve().parents[1]
CASES = REPO.parent / "shared" / "validation" / "cases.yaml"
DOC = REPO / "docs" / "calibration-operators.md"
DEVICES = REPO / "hardware" / "devices"
MINE = ("gemm", "grouped_gemm", "attention", "memory")

DENSE, GROUPED, FLASHMLA, MAMF = ("deepgemm-fp8-dense-gemm-h800", "deepgemm-fp8-grouped-gemm-h800",
                                  "flashmla-h800-b200", "mamf-matmul-bf16-fp8")
MAMF_DEVICES = {"NVIDIA A100 SXM": "A100-80GB", "NVIDIA H100 SXM": "H100-SXM",
                "NVIDIA H200 SXM": "H200", "NVIDIA B200 SXM": "B200", "NVIDIA GB200 SXM": "GB200",
                "AMD MI300X": "MI300X", "AMD MI325X": "MI325X", "Intel Gaudi 3": "Gaudi-3"}
DEVICE_FILES = {"H800": "h800", "B200": "b200", "H100-SXM": "h100-sxm", "H200": "h200",
                "A100-80GB": "a100-80gb", "GB200": "gb200", "MI300X": "mi300x", "MI325X": "mi325x",
                "Gaudi-3": "gaudi-3"}
MAMF_GRID = range(1024, 16385, 1024)   # MAMF is a maximum over shapes: the model's is taken here

# DeepSeek-V3 MLA (model card config.json); FlashMLA's sparse kernels attend to top-2048 tokens,
# stood in for by a 2048-token sliding window (same number of attended keys per query).
MLA = AttentionSpec(kind="mla", num_heads=128, num_kv_heads=128, head_dim=128, q_lora_rank=1536,
                    kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128)
MLA_TOPK = dataclasses.replace(MLA, window_tokens=2048, window_pattern=(True,))
MHA = AttentionSpec(kind="mha", num_heads=16, num_kv_heads=16, head_dim=128)


@dataclass
class Eff:
    value: float
    by_dtype: dict[str, float] = field(default_factory=dict)
    calibrated_on: tuple[str, ...] = ()
    note: str = ""


Effs = dict[str, dict[str, Eff]]                        # device -> efficiency name -> Eff
Predict = Callable[[Effs, ops.ShapeModel], float]


@dataclass
class Row:
    group: str
    device: str
    label: str
    unit: str
    measured: float
    predict: Predict
    modelled: bool = True
    note: str = ""
    predicted: float = float("nan")

    @property
    def error(self) -> float:
        return self.predicted / self.measured - 1.0


# -- devices with trial efficiencies -----------------------------------------------------
_BASE: dict[str, Device] = {}


def device(name: str, effs: Effs) -> Device:
    """Catalog device, launch overhead zeroed, its operator efficiencies (MINE) replaced by
    ``effs[name]`` (defaults where absent), so a fit never depends on what the YAML holds now."""
    if name not in _BASE:
        _BASE[name] = dataclasses.replace(load_device(name), launch_eager_s=0.0, launch_graph_s=0.0)
    base = _BASE[name]
    mine = effs.get(name, {})
    kept = tuple(e for e in base.efficiency if e.name not in MINE)
    new = tuple(EfficiencyFactor(name=k, value=e.value, by_dtype=dict(e.by_dtype),
                                 calibrated_on=e.calibrated_on or ("trial",)) for k, e in mine.items())
    return dataclasses.replace(base, efficiency=kept + new)


def setter(effs: Effs, dev: str, name: str, dtype: str | None) -> Callable[[float], None]:
    def put(x: float) -> None:
        entry = effs.setdefault(dev, {}).setdefault(name, Eff(value=x))
        if dtype is None:
            entry.value = x
        else:
            entry.by_dtype[dtype] = x
    return put


# -- rows ---------------------------------------------------------------------------------
def tflops(op: ops.OpCost) -> float:
    return op.flop / op.time_s / 1e12


def dense_rows(case: dict) -> list[Row]:
    rows = []
    for r in case["metrics"]:
        m, n, k = r["M"], r["N"], r["K"]

        def pred(effs: Effs, shape: ops.ShapeModel, m: int = m, n: int = n, k: int = k) -> float:
            return tflops(ops.gemm(device("H800", effs), m, n, k, dtype="fp8", weight_dtype="fp8",
                                   shape=shape))
        rows.append(Row("dense GEMM (DeepGEMM, H800, FP8)", "H800", f"M={m} N={n} K={k}", "TFLOP/s",
                        r["TFLOPS"], pred))
    return rows


def grouped_rows(case: dict) -> list[Row]:
    rows = []
    for mode, entries in case["metrics"].items():
        for r in entries:
            g, mg, n, k = r["groups"], r["M_per_group"], r["N"], r["K"]

            def pred(effs: Effs, shape: ops.ShapeModel, g: int = g, mg: int = mg, n: int = n,
                     k: int = k, mode: str = mode) -> float:
                return tflops(ops.grouped_gemm(device("H800", effs), [mg] * g, n, k, dtype="fp8",
                                               weight_dtype="fp8", mode=mode, shape=shape))
            rows.append(Row("grouped GEMM (DeepGEMM, H800, FP8)", "H800",
                            f"{mode} {g} x {mg} N={n} K={k}", "TFLOP/s", r["TFLOPS"], pred))
    return rows


def _decode(dev: str, heads: int, q: int, kv: int, kv_dtype: str, unit: str) -> Predict:
    def pred(effs: Effs, shape: ops.ShapeModel) -> float:
        op = ops.attention_decode(device(dev, effs), MLA, kv_lens=[kv] * 128, heads=heads,
                                  kv_heads=1, dtype="bf16", kv_dtype=kv_dtype, query_tokens=q,
                                  shape=shape)
        return op.bytes_moved / op.time_s / 1e9 if unit == "GB/s" else tflops(op)
    return pred


def _prefill(dev: str, attn: AttentionSpec, heads: int, new: int, ctx: int, absorbed: bool) -> Predict:
    def pred(effs: Effs, shape: ops.ShapeModel) -> float:
        return tflops(ops.attention_prefill(device(dev, effs), attn, new_tokens=[new],
                                            context_tokens=[ctx], heads=heads, kv_heads=heads,
                                            dtype="bf16", kv_dtype="bf16", layer=0,
                                            mla_absorbed=absorbed, shape=shape))
    return pred


def flashmla_rows(case: dict) -> list[Row]:
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
            rows.append(Row("attention (FlashMLA / FA)", dev, name, unit, r["value"], pred, modelled, note))
        elif name == "FP8_KV_bytes_per_token_V32":
            kv = float(MLA.kv_elems_per_token())   # 576 FP8 bytes; scales and BF16 RoPE not modelled
            rows.append(Row("attention (FlashMLA / FA)", "-", name, "B", r["value"],
                            lambda effs, shape, kv=kv: kv, False,
                            "not modelled: V3.2 layout adds 16 B scales and keeps RoPE in BF16"))
    return rows


def _mamf_shape(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    m, n, k = (int(x) for x in text.split("x"))
    return m, n, k


_GRID = [(m, n, k) for m in MAMF_GRID for n in MAMF_GRID for k in MAMF_GRID]
_BEST: dict[tuple[str, str], tuple[int, int, int]] = {}


def mamf_rows(case: dict) -> list[Row]:
    rows = []
    for dtype, entries in case["metrics"].items():
        for r in entries:
            label = str(r.get("device"))
            dev = MAMF_DEVICES.get(label)
            if dev is None or "MAMF" not in r:
                continue
            shape_mnk = _mamf_shape(r.get("shape"))

            candidates = _GRID + ([shape_mnk] if shape_mnk else [])

            def pred(effs: Effs, shape: ops.ShapeModel, dev: str = dev, dtype: str = dtype,
                     candidates: list[tuple[int, int, int]] = candidates) -> float:
                """The model's best TFLOP/s over the shapes (the argmax is held while fitting)."""
                d = device(dev, effs)
                mnk = _BEST.get((dev, dtype)) or max(candidates, key=lambda s: tflops(
                    ops.gemm(d, *s, dtype=dtype, shape=shape)))
                _BEST[(dev, dtype)] = mnk
                return tflops(ops.gemm(d, *mnk, dtype=dtype, shape=shape))
            where = f"measured best {r['shape']}" if shape_mnk else "measured best shape not given"
            rows.append(Row("MAMF best-shape matmul", dev, f"{label} {dtype}", "TFLOP/s", r["MAMF"],
                            pred, True, f"{where}; model: best of a 1024..16384 grid and that shape; "
                            "in-sample (1 parameter per row)"))
    return rows


# -- fitting ------------------------------------------------------------------------------
def sse(rows: Iterable[Row], effs: Effs, shape: ops.ShapeModel) -> float:
    return sum(math.log(r.predict(effs, shape) / r.measured) ** 2 for r in rows)


def fit_scalar(rows: list[Row], effs: Effs, shape: ops.ShapeModel, put: Callable[[float], None],
               lo: float = 0.05, hi: float = 1.0) -> float:
    """Golden-section search of one efficiency in [lo, hi]."""
    g = (math.sqrt(5.0) - 1.0) / 2.0

    def f(x: float) -> float:
        put(x)
        return sse(rows, effs, shape)
    a, b = lo, hi
    for _ in range(40):
        c, d = b - g * (b - a), a + g * (b - a)
        if f(c) < f(d):
            b = d
        else:
            a = c
    x = round((a + b) / 2.0, 3)
    put(x)
    return x


def fit_shape(rows: list[Row], effs: Effs, put: Callable[[float], None]) -> tuple[float, ops.ShapeModel]:
    """GEMM efficiency, k_half, latency and sharpness on the dense rows: grid, then pattern search."""
    lo, hi = np.array([0.3, 0.0, 0.0, 1.0]), np.array([1.0, 2000.0, 10.0, 32.0])

    def f(x: np.ndarray) -> float:
        x = np.clip(x, lo, hi)
        put(float(x[0]))
        shape = ops.ShapeModel(k_half_elems=float(x[1]), latency_s=float(x[2]) * 1e-6, sharpness=float(x[3]))
        return sse(rows, effs, shape)
    grid = [np.array(p, dtype=float) for p in np.stack(np.meshgrid(
        np.arange(0.5, 0.96, 0.05), [0, 150, 300, 600], [0, 1, 2, 3, 4], [1.5, 2.5, 4.0, 8.0]), -1).reshape(-1, 4)]
    x = min(grid, key=f)
    step = np.array([0.02, 50.0, 0.5, 0.5])
    best = f(x)
    while step[0] > 1e-4:
        improved = False
        for i in range(4):
            for sgn in (1.0, -1.0):
                y = x.copy()
                y[i] = np.clip(y[i] + sgn * step[i], lo[i], hi[i])
                fy = f(y)
                if fy < best - 1e-12:
                    x, best, improved = y, fy, True
        if not improved:
            step /= 2.0
    put(round(float(x[0]), 3))
    return round(float(x[0]), 3), ops.ShapeModel(
        k_half_elems=round(float(x[1]), 1), latency_s=round(float(x[2]) * 1e-6, 8),
        sharpness=round(float(x[3]), 2), calibrated_on=(DENSE,))


def fit_mamf(row: Row, effs: Effs, shape: ops.ShapeModel, put: Callable[[float], None]) -> None:
    """Fit one MAMF row: find the model's best shape, fit, look for the best shape again, refit."""
    put(0.8)
    for _ in range(2):
        _BEST.clear()
        row.predict(effs, shape)                        # holds the argmax at the current value
        fit_scalar([row], effs, shape, put)
    _BEST.clear()


@dataclass
class Result:
    shape: ops.ShapeModel
    effs: Effs
    rows: list[Row]
    grouped_from_dense: list[float]


def calibrate(cases: dict[str, dict]) -> Result:
    dense, grouped = dense_rows(cases[DENSE]), grouped_rows(cases[GROUPED])
    attn, mamf = flashmla_rows(cases[FLASHMLA]), mamf_rows(cases[MAMF])
    effs: Effs = {}
    shape = ops.ShapeModel(k_half_elems=250.0, latency_s=2e-6, sharpness=2.5)
    mem_rows = [r for r in attn if r.label == "dense_MLA_decode_memory_bound_H800"]
    for _ in range(3):                  # memory <-> shape <-> attention: converges in 2
        fit_scalar(mem_rows, effs, shape, setter(effs, "H800", "memory", None))
        _, shape = fit_shape(dense, effs, setter(effs, "H800", "gemm", "fp8"))
        for dev in ("H800", "B200"):
            rows = [r for r in attn if r.device == dev and r.modelled and r.unit == "TFLOP/s"]
            fit_scalar(rows, effs, shape, setter(effs, dev, "attention", None))
    h800 = effs["H800"]
    # out-of-sample check before fitting grouped: grouped rows with the dense GEMM efficiency
    effs["H800"]["grouped_gemm"] = Eff(value=h800["gemm"].by_dtype["fp8"])
    grouped_from_dense = [r.predict(effs, shape) / r.measured - 1.0 for r in grouped]
    fit_scalar(grouped, effs, shape, setter(effs, "H800", "grouped_gemm", None))
    for r in mamf:
        if r.label.endswith("bf16"):
            fit_mamf(r, effs, shape, setter(effs, r.device, "gemm", None))
    # MAMF lists no H200 BF16 row: its H100 row says 'H200 is the same' (same GH100 compute)
    effs.setdefault("H200", {})["gemm"] = Eff(value=effs["H100-SXM"]["gemm"].value)
    for r in mamf:                                      # fp8 after bf16 so `value` exists first
        if r.label.endswith("fp8"):
            fit_mamf(r, effs, shape, setter(effs, r.device, "gemm", "fp8"))
    _annotate(effs, mamf)
    rows = dense + grouped + attn + mamf
    _BEST.clear()                                       # final MAMF predictions search afresh
    for r in rows:
        r.predicted = r.predict(effs, shape)
    return Result(shape, effs, rows, grouped_from_dense)


def _annotate(effs: Effs, mamf: list[Row]) -> None:
    """Fill in what each factor was calibrated on, and the H800 bf16 values taken from H100."""
    h800, h100 = effs["H800"], effs["H100-SXM"]["gemm"].value
    fp8 = h800["gemm"].by_dtype["fp8"]
    h800["gemm"] = Eff(h100, {"fp8": fp8}, (DENSE, MAMF),
                       "fp8 fitted on the 18 DeepGEMM dense rows; bf16 = H100-SXM MAMF fit (same GH100 die)")
    gg = h800["grouped_gemm"].value
    h800["grouped_gemm"] = Eff(h100, {"fp8": gg}, (GROUPED, MAMF),
                               "fp8 fitted on the 10 DeepGEMM grouped rows; bf16 copied from gemm (not measured)")
    h800["memory"] = Eff(h800["memory"].value, {}, (FLASHMLA,),
                         "FlashMLA dense decode 'up to 3000 GB/s' on H800 SXM5 (3.35 TB/s peak is secondary)")
    h800["attention"] = Eff(h800["attention"].value, {}, (FLASHMLA,),
                            "FlashMLA dense decode 660 TFLOPS (compute-bound) and sparse prefill 640 TFLOPS")
    effs["B200"]["attention"] = Eff(effs["B200"]["attention"].value, {}, (FLASHMLA,),
                                    "FlashMLA sparse prefill 1450 TFLOPS; FA prefill fwd 1460 TFLOPS (NVIDIA)")
    for dev, table in effs.items():
        g = table.get("gemm")
        if g is not None and dev != "H800":
            seen = [f"{r.label.rsplit(' ', 1)[1]} {r.measured:g} TFLOP/s" for r in mamf if r.device == dev]
            g.calibrated_on = (MAMF,)
            g.note = ("MAMF (best-shape torch.matmul) " + ", ".join(seen) + "; fitted so that the operator "
                      "model's best shape reaches it: the value is the ceiling at full waves and K -> inf")
    effs["H200"]["gemm"].note += "; bf16 taken from the H100 SXM row ('H200 is the same')"


# -- reporting ----------------------------------------------------------------------------
def medians(rows: list[Row]) -> dict[str, tuple[float, int]]:
    out: dict[str, tuple[float, int]] = {}
    for group in dict.fromkeys(r.group for r in rows):
        errs = [abs(r.error) for r in rows if r.group == group and r.modelled]
        out[group] = (float(np.median(errs)) * 100.0, len(errs))
    return out


def render_doc(res: Result) -> str:
    s = res.shape
    lines = [
        "# Operator calibration",
        "",
        "Generated by `python validation/calibrate_operators.py` from `../shared/validation/cases.yaml`",
        "(do not edit by hand; rerun it). Model: `hwsim/perf/kernels.py`; wrappers:",
        "`hwsim/perf/operators.py`. Every row is predicted with the operator API on the catalog device,",
        "launch overhead set to zero (the sources time kernels on the GPU), and compared as",
        "`error = predicted / measured - 1`. Fits minimise the sum of squared log errors.",
        "",
        "## Method",
        "",
        "Model (see `hwsim/perf/kernels.py`): compute leg = padded FLOP (64/128-row tiles, the tile width",
        "16..128 with the least padded work, full waves over the SMs) / (peak x eff x k / (k + k_half));",
        "memory leg = bytes / (bandwidth x eff_memory); time = (compute^p + memory^p)^(1/p) + latency",
        "(+ launch overhead outside calibration). Fits, in order:",
        "",
        "1. H800 `memory` on FlashMLA's memory-bound decode row (1 parameter, 1 row).",
        "2. `SHAPE_MODEL` (k_half, latency, sharpness) with H800 `gemm` fp8 on the 18 DeepGEMM dense",
        "   rows (4 parameters: coarse grid, then pattern search).",
        "3. `attention`: H800 on FlashMLA's dense compute-bound decode and sparse prefill rows, B200 on",
        "   its sparse prefill and FA prefill rows (1 parameter per device). Steps 1-3 repeat until stable.",
        "4. H800 `grouped_gemm` fp8 on the 10 DeepGEMM grouped rows (1 parameter).",
        "5. `gemm` per device and dtype on its MAMF row (1 parameter per row). MAMF is a maximum over",
        "   shapes, so the model's maximum (1024-step grid from 1024 to 16384, plus the measured best",
        "   shape) is fitted to it. H800 bf16 takes the H100 SXM value (same GH100 die), H200 bf16 the",
        "   H100 row ('H200 is the same').",
        "",
        "## Fitted constants",
        "",
        "Kernel-shape model (`SHAPE_MODEL`, shared by all devices; fitted on the 18 DeepGEMM dense rows",
        "together with H800's FP8 GEMM efficiency):",
        "",
        "| constant | value | meaning |",
        "|---|---|---|",
        f"| `k_half_elems` | {s.k_half_elems:g} | per-tile fill/drain + epilogue, in elements of K: eff x k / (k + k_half) |",
        f"| `latency_s` | {s.latency_s * 1e6:.2f} us | a kernel's own ramp-up and drain |",
        f"| `sharpness` | {s.sharpness:g} | p of the leg blend (compute^p + memory^p)^(1/p); equal legs cost 2^(1/p) x |",
        "",
        "Device efficiencies (written to `hardware/devices/*.yaml` with `--write-yaml`):",
        "",
        "| device | factor | value | by_dtype | calibrated on |",
        "|---|---|---|---|---|",
    ]
    for dev in sorted(res.effs):
        for name in MINE:
            e = res.effs[dev].get(name)
            if e is not None:
                bd = ", ".join(f"{k}: {v:.3f}" for k, v in e.by_dtype.items()) or "-"
                lines.append(f"| {dev} | {name} | {e.value:.3f} | {bd} | {', '.join(e.calibrated_on)} |")
    lines += ["", "## Median |error| per group", "", "| group | rows | median abs error |", "|---|---|---|"]
    for group, (med, n) in medians(res.rows).items():
        lines.append(f"| {group} | {n} | {med:.1f}% |")
    oos = float(np.median(np.abs(res.grouped_from_dense))) * 100.0
    lines += ["", "Out of sample: the grouped rows predicted with the *dense* FP8 efficiency (no grouped fit)",
              f"have a median |error| of {oos:.1f}% (max {max(abs(e) for e in res.grouped_from_dense) * 100:.1f}%).",
              "Rows marked `no` are listed for completeness and left out of the medians and fits.", ""]
    for group in dict.fromkeys(r.group for r in res.rows):
        lines += [f"## {group}", "", "| device | row | measured | predicted | error | modelled | note |",
                  "|---|---|---|---|---|---|---|"]
        for r in (r for r in res.rows if r.group == group):
            lines.append(f"| {r.device} | {r.label} | {r.measured:g} {r.unit} | {r.predicted:.0f} {r.unit} "
                         f"| {r.error * 100:+.1f}% | {'yes' if r.modelled else 'no'} | {r.note} |")
        lines.append("")
    lines += LIMITATIONS
    return "\n".join(lines) + "\n"


LIMITATIONS = [
    "## Limitations",
    "",
    "- The shape constants are fitted on one kernel family (DeepGEMM FP8 on H800) and applied to every",
    "  device and dtype; Blackwell (2-CTA 256-wide tiles, TMEM) and AMD/Gaudi kernels may ramp differently.",
    "- Narrow tiles are assumed as efficient per FLOP as 128-wide ones; rows where the library must use",
    "  narrow tiles to fill the SMs (N=2112) come out too fast by up to ~20-30%, and the small-M",
    "  K=2048 rows ~17-20% too slow: the worst rows, left as they are rather than given their own knobs.",
    "- H800's FP8 `gemm` (DeepGEMM, 1x128 fine-grained scaling with CUDA-core promotion) fits lower than",
    "  H100's FP8 MAMF value (cuBLAS, per-tensor scaling): they are different kernels, both kept.",
    "- MAMF rows fit one parameter each, so their errors are zero by construction: they set the",
    "  large-shape ceiling per device and dtype (the model's best shape on a 1024-step grid, plus",
    "  the measured best shape where given, reaches the measured maximum), not a test of the model.",
    "- FlashMLA publishes peak figures without shapes; the configurations in the notes are assumptions,",
    "  and those rows are in-sample fits of `memory` and `attention`. Sparse (top-k) decode with FP8 KV",
    "  (gather, dequantisation) is not modelled.",
    "- Devices without `sm_count` in their file use 132 SMs (B200 has 148).",
    "",
]


# -- YAML update --------------------------------------------------------------------------
def _render(name: str, e: Eff) -> list[str]:
    out = [f"  {name}:", f"    value: {e.value:.3f}"]
    if e.by_dtype:
        out.append("    by_dtype: {" + ", ".join(f"{k}: {v:.3f}" for k, v in e.by_dtype.items()) + "}")
    out.append(f"    calibrated_on: [{', '.join(e.calibrated_on)}]")
    if e.note:
        out.append(f'    note: "{e.note}"')
    return out


def update_yaml(path: Path, entries: dict[str, Eff]) -> None:
    """Replace (or add) only the ``efficiency:`` children named in ``entries``; leave the rest."""
    lines = path.read_text(encoding="utf-8").splitlines()
    top = re.compile(r"^[A-Za-z_]")
    if "efficiency:" not in lines:
        at = next(i for i, ln in enumerate(lines) if re.match(r"^(power|price|sources|notes):", ln))
        lines[at:at] = ["efficiency:"]
    start = lines.index("efficiency:") + 1
    end = next((i for i in range(start, len(lines)) if top.match(lines[i])), len(lines))
    for name, e in entries.items():
        block = _render(name, e)
        head = next((i for i in range(start, end) if lines[i].startswith(f"  {name}:")), None)
        if head is None:
            lines[end:end] = block
        else:
            stop = next((i for i in range(head + 1, end) if re.match(r"^  \S", lines[i])), end)
            lines[head:stop] = block
        end = next((i for i in range(start, len(lines)) if top.match(lines[i])), len(lines))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load_device(path)    # still loads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--write-yaml", action="store_true", help="write the fitted efficiencies")
    args = parser.parse_args(argv)
    data = yaml.safe_load(args.cases.read_text(encoding="utf-8"))
    cases = {c["id"]: c for c in data["cases"] if c["id"] in (DENSE, GROUPED, FLASHMLA, MAMF)}
    res = calibrate(cases)
    args.doc.write_text(render_doc(res), encoding="utf-8")
    out = sys.stdout
    out.write(f"shape model: {res.shape}\n")
    for group, (med, n) in medians(res.rows).items():
        out.write(f"{group}: median |error| {med:.1f}% over {n} rows\n")
    if (res.shape.k_half_elems, res.shape.latency_s, res.shape.sharpness) != (
            ops.SHAPE_MODEL.k_half_elems, ops.SHAPE_MODEL.latency_s, ops.SHAPE_MODEL.sharpness):
        out.write("note: hwsim/perf/operators.py SHAPE_MODEL differs from this fit; update it\n")
    if args.write_yaml:
        for dev, table in res.effs.items():
            update_yaml(DEVICES / f"{DEVICE_FILES[dev]}.yaml", {k: table[k] for k in MINE if k in table})
    out.write(f"wrote {args.doc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
