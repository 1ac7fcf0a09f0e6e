"""A sweep's results to people: Pareto fronts, trade-off plots, the best configuration per SLO.

Two trade-offs, as in the throughput-versus-interactivity charts of LLM serving benchmarks:

* **throughput per device vs speed per user**: output tokens/s per device (more is better)
  against tokens/s each user sees, ``1 / TPOT`` (more is better);
* **cost vs latency**: USD per million output tokens (less is better) against TPOT (less is
  better).

A configuration is on the Pareto front when no other configuration is at least as good on both
axes and better on one. Only rows with status ``ok`` and both values present take part (an
unpriced device has no cost, so it is left out of the second front). The best configuration
for an SLO (``ttft <= T`` and ``tpot <= P``, on the ``ttft_s``/``tpot_s`` columns) is the one
with the highest output tokens/s per device, and the cheapest is the one with the lowest USD
per million output tokens; ties go to the earlier configuration.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.report.plots import save_figure
from hwsim.workload.files import atomic_text_writer

__all__ = ["SweepTable", "read_results", "pareto_front", "best_per_slo", "describe", "sweep_markdown",
           "plot_tradeoff", "write_sweep_report", "best_lines", "error_groups", "TRADEOFFS"]

THROUGHPUT = "output_tokens_per_s_per_device"
SPEED = "tokens_per_s_per_user"
COST = "usd_per_million_output_tokens"
TTFT, TPOT = "ttft_s", "tpot_s"
_FIXED = ("index", "key", "status", "error", "wall_s")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


@dataclass(frozen=True, slots=True)
class Tradeoff:
    """Two metrics plotted against each other, each maximised or minimised."""

    name: str
    x: str
    y: str
    maximize_x: bool
    maximize_y: bool
    title: str
    xlabel: str
    ylabel: str


TRADEOFFS = (
    Tradeoff("pareto-throughput-vs-speed", SPEED, THROUGHPUT, True, True,
             "Throughput per device vs speed per user", "tokens/s per user (1 / TPOT)", "output tokens/s per device"),
    Tradeoff("pareto-cost-vs-tpot", TPOT, COST, False, False,
             "Cost vs time per output token", "TPOT (ms)", "USD per million output tokens"),
)


@dataclass(frozen=True, slots=True)
class SweepTable:
    """A sweep's rows with what its columns mean."""

    rows: list[dict[str, Any]]
    inputs: tuple[str, ...]
    metrics: tuple[str, ...]
    axes: tuple[tuple[tuple[str, ...], str | None], ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r.get("status") == "ok"]


def read_results(path: str | Path) -> SweepTable:
    """Read ``results.parquet`` / ``results.csv`` (or the sweep folder holding one)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("results.parquet", "results.csv") if (p / n).is_file()]
        if not found:
            raise SpecError("no results.parquet or results.csv in this folder", file=str(p),
                            expected="the output folder of `hwsim sweep run`, or its results file")
        p = found[0]
    try:
        table = pacsv.read_csv(p) if p.suffix == ".csv" else pq.read_table(p)
    except FileNotFoundError:
        raise SpecError("file not found", file=str(p)) from None
    except (OSError, pa.ArrowException) as err:
        raise SpecError(f"cannot read sweep results: {err}", file=str(p)) from None
    meta = _metadata(table.schema.metadata, p)
    names = table.column_names
    if not {"index", "status"} <= set(names):
        raise SpecError("not a sweep results file", file=str(p), expected="columns index, key, status, error, ...",
                        found=", ".join(names[:6]))
    inputs = tuple(meta.get("inputs") or names[names.index("key") + 1: names.index("status")])
    metrics = tuple(meta.get("metrics") or [n for n in names[names.index("error") + 1:] if n not in _FIXED])
    axes = tuple((tuple(a["paths"]), a.get("name")) for a in meta.get("axes", [])) or \
        tuple(((c,), None) for c in inputs)
    return SweepTable(table.to_pylist(), inputs, metrics, axes, meta)


def _metadata(raw: Mapping[bytes, bytes] | None, path: Path) -> dict[str, Any]:
    if raw and b"hwsim.sweep" in raw:
        return dict(json.loads(raw[b"hwsim.sweep"]))
    manifest = path.parent / "sweep.json"
    if manifest.is_file():
        try:
            return dict(json.loads(manifest.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return {}
    return {}


# -- analysis -------------------------------------------------------------------------------------
def _value(row: Mapping[str, Any], column: str) -> float | None:
    v = row.get(column)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def pareto_front(points: Sequence[tuple[float, float]], maximize: tuple[bool, bool] = (True, True)) -> list[int]:
    """Indices of the non-dominated points, ordered along the x axis (best x last).

    A point is dominated when another is at least as good on both coordinates and strictly
    better on one; of identical points the first is kept.

    >>> pareto_front([(1, 5), (2, 4), (2, 3), (3, 1), (0, 0)])
    [0, 1, 3]
    >>> pareto_front([(10, 1.0), (20, 2.0), (15, 0.5)], maximize=(False, False))
    [0, 2]
    """
    sx = -1.0 if maximize[0] else 1.0
    sy = -1.0 if maximize[1] else 1.0
    order = sorted(range(len(points)), key=lambda i: (sx * points[i][0], sy * points[i][1], i))
    front: list[int] = []
    best_y = math.inf
    for i in order:
        y = sy * points[i][1]
        if y < best_y:
            front.append(i)
            best_y = y
    return front[::-1] if maximize[0] else front


def front_rows(table: SweepTable, tradeoff: Tradeoff) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows that have both values, the Pareto-optimal ones among them)."""
    rows = [r for r in table.ok if _value(r, tradeoff.x) is not None and _value(r, tradeoff.y) is not None]
    pts = [(float(r[tradeoff.x]), float(r[tradeoff.y])) for r in rows]
    return rows, [rows[i] for i in pareto_front(pts, (tradeoff.maximize_x, tradeoff.maximize_y))]


def _meets(row: Mapping[str, Any], slo: Mapping[str, float]) -> bool:
    for key, column in (("ttft", TTFT), ("tpot", TPOT)):
        if key in slo:
            v = _value(row, column)
            if v is None or v > slo[key]:
                return False
    return True


def best_per_slo(table: SweepTable, slos: Sequence[Mapping[str, float]]) -> list[dict[str, Any]]:
    """For each SLO: the highest throughput per device and the cheapest row that meet it.

    Each entry is ``{"slo", "objective", "row"}``; ``row`` is ``None`` when nothing qualifies.
    An empty SLO (``{}``) means no constraint.
    """
    out: list[dict[str, Any]] = []
    for slo in slos:
        ok = [r for r in table.ok if _meets(r, slo)]
        fast = [r for r in ok if _value(r, THROUGHPUT) is not None]
        cheap = [r for r in ok if _value(r, COST) is not None]
        best = max(fast, key=lambda r: (r[THROUGHPUT], -(_value(r, COST) or math.inf), -r["index"]), default=None)
        low = min(cheap, key=lambda r: (r[COST], -r[THROUGHPUT] if _value(r, THROUGHPUT) else 0.0, r["index"]),
                  default=None)
        out.append({"slo": dict(slo), "objective": "max output tokens/s per device", "row": best})
        out.append({"slo": dict(slo), "objective": "min USD per million output tokens", "row": low})
    return out


def describe(table: SweepTable, row: Mapping[str, Any]) -> str:
    """A configuration in words: each axis's label, or its path's last part and value.

    >>> t = SweepTable([], ("nodes.system", "a.b[0].ep", "par"), (), ((("nodes.system",), None),
    ...                (("a.b[0].ep",), "par")))
    >>> describe(t, {"nodes.system": "DGX-H100", "a.b[0].ep": 8, "par": "EP8"})
    'system=DGX-H100, par=EP8'
    """
    parts = []
    for paths, name in table.axes:
        if name is not None and name in row:
            parts.append(f"{name}={row[name]}")
        else:
            parts += [f"{_short(p)}={row.get(p)}" for p in paths]
    return ", ".join(parts)


def _short(path: str) -> str:
    tail = path.rsplit(".", 1)[-1]
    return tail.split("[", 1)[0] if not tail.endswith("]") else tail


# -- text -----------------------------------------------------------------------------------------
def _fmt(v: Any, column: str) -> str:
    x = _value({"v": v}, "v")
    if x is None:
        return "-"
    if column in (TTFT, TPOT):
        return f"{x * 1e3:.4g} ms"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


_SHOWN = (THROUGHPUT, SPEED, TTFT, TPOT, COST)
_HEADERS = {THROUGHPUT: "tok/s/device", SPEED: "tok/s/user", TTFT: "TTFT", TPOT: "TPOT", COST: "USD/Mtok"}


def _slo_text(slo: Mapping[str, float]) -> str:
    if not slo:
        return "none"
    return ", ".join(f"{k.upper()} <= {v * 1e3:g} ms" for k, v in slo.items())


def sweep_markdown(table: SweepTable, slos: Sequence[Mapping[str, float]], images: Mapping[str, str]) -> str:
    """The report as markdown: counts, the best configuration per SLO, each Pareto front, errors."""
    shown = [c for c in _SHOWN if c in table.metrics]
    head = "| " + " | ".join(_HEADERS[c] for c in shown) + " |"
    rule = "|" + "---:|" * len(shown)
    n_ok = len(table.ok)
    name = table.meta.get("name", "sweep")
    lines = [f"# Sweep report: {name}", "",
             f"{len(table.rows)} configurations: {n_ok} ok, {len(table.rows) - n_ok} failed"
             f" (mode {table.meta.get('mode', '?')}, hwsim {table.meta.get('hwsim_version', '?')}).", ""]
    lines += ["## Best configuration per SLO", "", f"| SLO | objective | configuration {head}", f"|---|---|---{rule}"]
    for entry in best_per_slo(table, slos):
        r = entry["row"]
        cells = "| " + " | ".join(_fmt(r.get(c), c) for c in shown) + " |" if r else "| " + " | ".join("-" for _ in shown) + " |"
        lines.append(f"| {_slo_text(entry['slo'])} | {entry['objective']} | "
                     f"{describe(table, r) if r else 'none meets it'} {cells}")
    for t in TRADEOFFS:
        lines += ["", f"## Pareto front: {t.title.lower()}", ""]
        if t.x not in table.metrics or t.y not in table.metrics:
            lines.append(f"(not drawn: the results have no `{t.x}` or `{t.y}` column)")
            continue
        rows, front = front_rows(table, t)
        if not rows:
            lines.append(f"(no successful configuration has both `{t.x}` and `{t.y}`)")
            continue
        if t.name in images:
            lines += [f"![{t.title}]({images[t.name]})", ""]
        lines += [f"{len(front)} of {len(rows)} configurations are on the front (numbered as in the plot).", "",
                  f"| # | configuration {head}", f"|---:|---{rule}"]
        lines += [f"| {k} | {describe(table, r)} | " + " | ".join(_fmt(r.get(c), c) for c in shown) + " |"
                  for k, r in enumerate(front, 1)]
    groups = error_groups(table.rows)
    if groups:
        lines += ["", "## Failed configurations", "", "(messages that differ only in their numbers are counted together;"
                  " one example each)", "", "| count | error |", "|---:|---|"]
        lines += [f"| {n} | {msg.replace('|', '/')} |" for n, msg in groups]
    return "\n".join(lines) + "\n"


def error_groups(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """``(count, first message)`` of failed rows whose messages differ only in numbers, most common first.

    >>> error_groups([{"status": "error", "error": "short by 2 GB"}, {"status": "error", "error": "short by 3.5 GB"},
    ...               {"status": "ok", "error": ""}])
    [(2, 'short by 2 GB')]
    """
    counts: Counter[str] = Counter()
    first: dict[str, str] = {}
    for r in rows:
        if r.get("status") == "ok":
            continue
        text = str(r.get("error") or "(no message)").strip().splitlines()[0]
        shape = _NUMBER.sub("#", text)
        counts[shape] += 1
        first.setdefault(shape, text)
    return [(n, first[shape]) for shape, n in counts.most_common()]


def best_lines(table: SweepTable, slos: Sequence[Mapping[str, float]]) -> list[str]:
    """One line per SLO and objective: the configuration and its headline numbers."""
    lines = []
    for entry in best_per_slo(table, slos):
        r = entry["row"]
        what = "none meets it" if r is None else describe(table, r) + " (" + ", ".join(
            f"{_HEADERS[c]} {_fmt(r.get(c), c)}" for c in _SHOWN if c in table.metrics) + ")"
        lines.append(f"SLO {_slo_text(entry['slo'])}, {entry['objective']}: {what}")
    return lines


# -- plots ----------------------------------------------------------------------------------------
def _color_column(table: SweepTable, color_by: str | None) -> str | None:
    if color_by is not None:
        if color_by not in table.inputs:
            raise SpecError("unknown column to colour by", path="--color-by",
                            expected=f"one of {', '.join(table.inputs)}", found=color_by)
        return color_by
    for c in table.inputs:
        if 1 < len({str(r.get(c)) for r in table.rows}) <= 12:
            return c
    return None


def plot_tradeoff(table: SweepTable, tradeoff: Tradeoff, path: str | Path, color_by: str | None = None) -> Path | None:
    """Scatter every ok configuration, colour by an input, draw and number the Pareto front.

    Returns ``None`` (and writes nothing) when no row has both values.
    """
    rows, front = front_rows(table, tradeoff)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale_x = 1e3 if tradeoff.x in (TTFT, TPOT) else 1.0
    column = _color_column(table, color_by)
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r.get(column)) if column else "configurations", []).append(r)
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    try:
        for label, members in groups.items():
            ax.scatter([r[tradeoff.x] * scale_x for r in members], [r[tradeoff.y] for r in members], s=22,
                       alpha=0.7, label=label)
        fx = [r[tradeoff.x] * scale_x for r in front]
        fy = [r[tradeoff.y] for r in front]
        ax.plot(fx, fy, color="black", linewidth=1.2, marker="o", markerfacecolor="none", markersize=9,
                label="Pareto front")
        for k, (x, y) in enumerate(zip(fx, fy, strict=True), 1):
            ax.annotate(str(k), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ys = [r[tradeoff.y] for r in rows]
        if min(ys) > 0 and max(ys) / min(ys) > 30:
            ax.set_yscale("log")
        ax.set_xlabel(tradeoff.xlabel)
        ax.set_ylabel(tradeoff.ylabel)
        ax.set_title(f"{table.meta.get('name', 'sweep')}: {tradeoff.title.lower()}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, title=column, title_fontsize=7)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def write_sweep_report(results: str | Path, out_dir: str | Path, slos: Sequence[Mapping[str, float]] = (),
                       color_by: str | None = None) -> list[Path]:
    """Write ``report.md`` and the two trade-off PNGs into ``out_dir``; return the paths written."""
    table = read_results(results)
    out = Path(out_dir)
    images: dict[str, str] = {}
    written: list[Path] = []
    for t in TRADEOFFS:
        if t.x in table.metrics and t.y in table.metrics:
            png = plot_tradeoff(table, t, out / f"{t.name}.png", color_by)
            if png is not None:
                images[t.name] = png.name
                written.append(png)
    with atomic_text_writer(out / "report.md") as fh:
        fh.write(sweep_markdown(table, [{}, *slos], images))
    written.append(out / "report.md")
    return written
