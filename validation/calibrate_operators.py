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
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from hwsim.io.load import load_device
from hwsim.perf import operators as ops
from hwsim.validate.operators import (  # the rows live in the package (hwsim validate uses them)
    DENSE,
    FLASHMLA,
    GROUPED,
    MAMF,
    MINE,
    Eff,
    Effs,
    Row,
    dense_rows,
    flashmla_rows,
    grouped_rows,
    mamf_rows,
)

REPO = Path(__file__).resolve().parents[1]
CASES = REPO.parent / "shared" / "validation" / "cases.yaml"
DOC = REPO / "docs" / "calibration-operators.md"
DEVICES = REPO / "hardware" / "devices"
DEVICE_FILES = {"H800": "h800", "B200": "b200", "H100-SXM": "h100-sxm", "H200": "h200",
                "A100-80GB": "a100-80gb", "GB200": "gb200", "MI300X": "mi300x", "MI325X": "mi325x",
                "Gaudi-3": "gaudi-3"}
_BEST: dict[tuple[str, str], tuple[int, int, int]] = {}   # each MAMF row's argmax shape while fitting


def setter(effs: Effs, dev: str, name: str, dtype: str | None) -> Callable[[float], None]:
    def put(x: float) -> None:
        entry = effs.setdefault(dev, {}).setdefault(name, Eff(value=x))
        if dtype is None:
            entry.value = x
        else:
            entry.by_dtype[dtype] = x
    return put


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
    attn, mamf = flashmla_rows(cases[FLASHMLA]), mamf_rows(cases[MAMF], _BEST)
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
