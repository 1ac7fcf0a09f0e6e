"""Results of ``hwsim plan parallelism`` for people and files: the Pareto CSV, two plots, the
plan JSON and the printed summary.

* ``pareto.csv``: every costed candidate (one replica configuration), with output tokens/s per
  device, tokens/s per user (1 / TPOT), USD per million output tokens, its configuration, whether
  it meets the SLOs and whether it is on the front (not dominated on tokens/s per device and
  tokens/s per user, the usual throughput-interactivity trade-off of serving).
* ``pareto.png``: tokens/s per device versus tokens/s per user, front highlighted;
  ``pareto-usd.png``: USD per million output tokens versus TPOT.

Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hwsim.report.plots import save_figure
from hwsim.solvers.parallelism import Candidate, ParallelismPlan
from hwsim.workload.files import atomic_text_writer

__all__ = ["PARETO_COLUMNS", "pareto_rows", "write_pareto_csv", "plot_pareto", "plot_usd", "write_plan_json",
           "plan_summary_text", "verification_row"]

PARETO_COLUMNS = ("index", "role", "device", "weights", "kv", "tp", "attention_dp", "ep", "pp", "max_seqs",
                  "devices", "batch", "requests_per_s", "output_tokens_per_s", "tokens_per_s_per_device",
                  "tokens_per_s_per_user", "ttft_s", "tpot_s", "usd_per_million_tokens", "power_w", "meets_slo",
                  "on_front")


def pareto_rows(cands: Sequence[Candidate], front: set[int]) -> list[dict[str, Any]]:
    rows = []
    for c in cands:
        row = {k: getattr(c, k) for k in PARETO_COLUMNS if k not in ("on_front",)}
        row["on_front"] = c.index in front
        rows.append(row)
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_pareto_csv(path: str | Path, cands: Sequence[Candidate], front: set[int]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PARETO_COLUMNS)
    for row in pareto_rows(cands, front):
        w.writerow([_cell(row[k]) for k in PARETO_COLUMNS])
    with atomic_text_writer(path) as fh:
        fh.write(buf.getvalue())
    return Path(path)


def plot_pareto(path: str | Path, cands: Sequence[Candidate], front: set[int],
                chosen: Sequence[int] = ()) -> Path:
    """Tokens/s per device versus tokens/s per user (unified and decode candidates)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for role, marker in (("unified", "o"), ("decode", "s")):
        pts = [c for c in cands if c.role == role and c.tokens_per_s_per_user is not None]
        if not pts:
            continue
        ok = [c for c in pts if c.meets_slo]
        bad = [c for c in pts if not c.meets_slo]
        ax.scatter([c.tokens_per_s_per_user for c in ok], [c.tokens_per_s_per_device for c in ok], s=12,
                   marker=marker, alpha=0.5, label=f"{role} (meets SLOs)")
        if bad:
            ax.scatter([c.tokens_per_s_per_user for c in bad], [c.tokens_per_s_per_device for c in bad], s=10,
                       marker=marker, color="lightgray", alpha=0.6, label=f"{role} (misses SLOs)")
    f = sorted((c for c in cands if c.index in front), key=lambda c: c.tokens_per_s_per_user or 0.0)
    if f:
        ax.plot([c.tokens_per_s_per_user for c in f], [c.tokens_per_s_per_device for c in f], "k-", lw=1.2,
                label="Pareto front")
    picked = [c for c in cands if c.index in set(chosen) and c.tokens_per_s_per_user is not None]
    if picked:
        ax.scatter([c.tokens_per_s_per_user for c in picked], [c.tokens_per_s_per_device for c in picked], s=70,
                   facecolors="none", edgecolors="red", label="planned pools")
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per device")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_usd(path: str | Path, cands: Sequence[Candidate], slo_tpot_s: float | None = None) -> Path:
    """USD per million output tokens versus TPOT (unified and decode candidates with prices)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for role in ("unified", "decode"):
        pts = [c for c in cands if c.role == role and c.tpot_s and c.usd_per_million_tokens is not None]
        if pts:
            ax.scatter([c.tpot_s * 1e3 for c in pts if c.tpot_s], [c.usd_per_million_tokens for c in pts], s=12,
                       alpha=0.5, label=role)
    if slo_tpot_s:
        ax.axvline(slo_tpot_s * 1e3, color="red", ls="--", lw=1, label="TPOT SLO")
    ax.set_xlabel("TPOT (ms)")
    ax.set_ylabel("USD per million output tokens")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _json_ready(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_ready(x) for x in v]
    return v


def write_plan_json(path: str | Path, data: Mapping[str, Any]) -> Path:
    with atomic_text_writer(path) as fh:
        fh.write(json.dumps(_json_ready(data), indent=2, sort_keys=True) + "\n")
    return Path(path)


def verification_row(plan: ParallelismPlan, summary: Mapping[str, Any] | None, note: str | None = None) -> dict:
    """Predicted versus simulated throughput and latency of one plan."""
    row: dict[str, Any] = {"rank": plan.rank, "devices": plan.devices,
                           "predicted_output_tokens_per_s": plan.output_tokens_per_s,
                           "predicted_ttft_s": plan.ttft_s, "predicted_tpot_s": plan.tpot_s,
                           "predicted_usd_per_million_tokens": plan.usd_per_million_tokens}
    if summary is None:
        row["note"] = note
        return row
    thr, lat, good = summary["throughput"], summary["latency"], summary["goodput"]
    row.update({"simulated_output_tokens_per_s": thr["output_tokens_per_s"],
                "simulated_ttft_p50_s": lat["ttft_s"]["p50"], "simulated_ttft_p99_s": lat["ttft_s"]["p99"],
                "simulated_tpot_p50_s": lat["tpot_s"]["p50"], "simulated_tpot_p99_s": lat["tpot_s"]["p99"],
                "simulated_slo_attainment": good["attainment"], "simulated_goodput_requests_per_s":
                good["requests_per_s"], "finished": summary["requests"].get("finished")})
    return row


def _num(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3g}"


def _ms(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v * 1e3:.0f}"


def plan_summary_text(plans: Sequence[ParallelismPlan], rows: Sequence[Mapping[str, Any]], *, candidates: int,
                      meeting: int, front: int) -> str:
    lines = [f"{candidates} configurations costed, {meeting} meet the SLOs, {front} on the Pareto front",
             f"solver: {plans[0].report.describe()}"]
    for plan in plans:
        lines.append(plan.describe())
    if rows:
        lines.append("")
        lines.append("plan  devices  tok/s pred  tok/s sim  TTFT pred/p50/p99 ms  TPOT pred/p50/p99 ms  SLO met  "
                     "good req/s")
        for r in rows:
            if "simulated_output_tokens_per_s" not in r:
                lines.append(f"#{r['rank']:<4} {r['devices']:>7}  {r['predicted_output_tokens_per_s']:>10,.0f}  "
                             f"not simulated: {r.get('note')}")
                continue
            att = r["simulated_slo_attainment"]
            lines.append(
                f"#{r['rank']:<4} {r['devices']:>7}  {r['predicted_output_tokens_per_s']:>10,.0f}  "
                f"{r['simulated_output_tokens_per_s'] or 0:>9,.0f}  "
                f"{_ms(r['predicted_ttft_s']):>6}/{_ms(r['simulated_ttft_p50_s'])}/{_ms(r['simulated_ttft_p99_s']):<8}"
                f"  {_ms(r['predicted_tpot_s']):>6}/{_ms(r['simulated_tpot_p50_s'])}/"
                f"{_ms(r['simulated_tpot_p99_s']):<8}  "
                + ("-" if att is None or (isinstance(att, float) and math.isnan(att)) else f"{att:>7.1%}")
                + f"  {_num(r['simulated_goodput_requests_per_s'])}")
    return "\n".join(lines)
