"""The validation table (markdown, and the text printed by ``hwsim validate``) and the parity plot.

Rows are :class:`hwsim.validate.rows.ValidationRow` (a result type, grouped and summarised with
that module's :func:`by_kind` and :func:`median_abs_error`). ``error = predicted / measured - 1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwsim.validate.rows import KINDS, ValidationRow, by_kind, median_abs_error
from hwsim.workload.files import atomic_text_writer

KIND_TITLES = {"operator": "Operators", "communication": "Communication", "end-to-end": "End to end",
               "offload": "Offload", "power": "Power", "memory": "Memory"}


def _num(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4g}"


def _err(r: ValidationRow) -> str:
    e = r.error
    return "-" if e is None else f"{e * 100:+.1f}%"


def summary_lines(rows: Sequence[ValidationRow]) -> list[str]:
    """Median |error| per kind (counted rows), plus tier-1 medians and the worst tier-1 row."""
    lines = []
    for kind, sel in by_kind(rows).items():
        med, n = median_abs_error(sel)
        t1 = [r for r in sel if r.tier == 1]
        med1, n1 = median_abs_error(t1)
        missing = sum(1 for r in sel if r.predicted is None)
        text = f"{kind}: median |error| {_pct(med)} over {n} rows"
        if n1:
            worst = max((abs(r.error) for r in t1 if r.counted and r.error is not None), default=None)
            text += f"; tier 1: {_pct(med1)} over {n1} (worst {_pct(worst)})"
        if missing:
            text += f"; {missing} not expressible yet"
        lines.append(text)
    return lines


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def text_table(rows: Sequence[ValidationRow]) -> str:
    """Plain text, grouped by kind: case, row, predicted, measured, signed error."""
    out = []
    for kind, sel in by_kind(rows).items():
        med, n = median_abs_error(sel)
        out.append(f"== {kind} ({len(sel)} rows, median |error| {_pct(med)} over {n} counted)")
        cw = min(40, max(len(r.case) for r in sel))
        lw = min(56, max(len(r.label) for r in sel))
        out.append(f"{'case':{cw}}  {'row':{lw}}  {'predicted':>11}  {'measured':>11}  {'error':>8}  unit")
        for r in sel:
            flag = "" if r.counted else ("  (missing: " + r.missing + ")" if r.missing else "  (not counted)")
            out.append(f"{r.case[:cw]:{cw}}  {r.label[:lw]:{lw}}  {_num(r.predicted):>11}  {_num(r.measured):>11}  "
                       f"{_err(r):>8}  {r.unit}{flag}")
        out.append("")
    out += summary_lines(rows)
    return "\n".join(out) + "\n"


def markdown(rows: Sequence[ValidationRow], *, intro: str = "", notes: Mapping[str, str] | None = None,
             footer: str = "") -> str:
    """The validation document: summary table, then one table per kind, then ``footer``."""
    lines = ["# Validation against published measurements", ""]
    if intro:
        lines += [intro.rstrip(), ""]
    lines += ["## Summary", "", "| kind | rows | counted | median \\|error\\| | tier-1 counted | tier-1 median "
              "| tier-1 worst | not expressible |", "|---|---|---|---|---|---|---|---|"]
    for kind, sel in by_kind(rows).items():
        med, n = median_abs_error(sel)
        t1 = [r for r in sel if r.tier == 1]
        med1, n1 = median_abs_error(t1)
        worst = max((abs(r.error) for r in t1 if r.counted and r.error is not None), default=None)
        missing = sum(1 for r in sel if r.predicted is None)
        lines.append(f"| {kind} | {len(sel)} | {n} | {_pct(med)} | {n1} | {_pct(med1)} | {_pct(worst)} | {missing} |")
    lines.append("")
    for kind, sel in by_kind(rows).items():
        lines += [f"## {KIND_TITLES[kind]}", ""]
        if notes and kind in notes:
            lines += [notes[kind].rstrip(), ""]
        lines += ["| case | tier | row | measured | predicted | error | counted | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in sel:
            note = f"missing: {r.missing}" if r.missing else r.note
            lines.append(f"| {r.case} | {r.tier} | {r.label} | {_num(r.measured)} {r.unit} | "
                         f"{_num(r.predicted)} {r.unit if r.predicted is not None else ''} | {_err(r)} | "
                         f"{'yes' if r.counted else 'no'} | {note.replace('|', '/')} |")
        lines.append("")
    if footer:
        lines += [footer.rstrip(), ""]
    return "\n".join(lines)


def write_markdown(text: str, path: str | Path) -> Path:
    with atomic_text_writer(path) as fh:
        fh.write(text)
    return Path(path)


def plot_parity(rows: Sequence[ValidationRow], path: str | Path) -> Path | None:
    """Predicted vs measured on log-log axes (each point in its row's own unit), one marker per
    kind, with the y = x line and +-20% bands. None when no row has a positive prediction."""
    pts = [(r.kind, r.measured, r.predicted) for r in rows
           if r.predicted is not None and r.measured > 0 and r.predicted > 0]
    if not pts:
        return None
    from hwsim.report.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 6.0))
    lo = min(min(m, p) for _, m, p in pts) / 1.5
    hi = max(max(m, p) for _, m, p in pts) * 1.5
    xs = [lo, hi]
    ax.plot(xs, xs, color="black", lw=1, label="predicted = measured")
    ax.plot(xs, [x * 1.2 for x in xs], color="gray", lw=0.8, ls="--", label="+-20%")
    ax.plot(xs, [x / 1.2 for x in xs], color="gray", lw=0.8, ls="--")
    markers: dict[str, Any] = {"operator": "o", "communication": "s", "end-to-end": "*", "offload": "^",
                               "power": "D", "memory": "v"}
    for kind in KINDS:
        sel = [(m, p) for k, m, p in pts if k == kind]
        if sel:
            ax.scatter([m for m, _ in sel], [p for _, p in sel], s=22, marker=markers[kind], label=kind, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured (row's own unit)")
    ax.set_ylabel("predicted by hwsim")
    ax.set_title("hwsim vs published measurements")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    return save_figure(fig, path)




def write_csv(rows: Sequence[ValidationRow], path: str | Path) -> Path:
    """One line per row: kind, case, tier, row, unit, measured, predicted, error, counted, note."""
    import csv

    with atomic_text_writer(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["kind", "case", "tier", "row", "unit", "measured", "predicted", "error", "counted", "note"])
        for r in rows:
            w.writerow([r.kind, r.case, r.tier, r.label, r.unit, repr(float(r.measured)),
                        "" if r.predicted is None else repr(float(r.predicted)),
                        "" if r.error is None else f"{r.error:.6f}", int(r.counted), r.missing or r.note])
    return Path(path)


__all__ = ["markdown", "plot_parity", "summary_lines", "text_table", "write_csv", "write_markdown"]
