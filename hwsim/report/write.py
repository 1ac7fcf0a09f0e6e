"""Write a simulation's outputs to a folder, and say the headline numbers in a few lines.

``write_outputs`` writes ``summary.json``, ``requests.csv`` (or ``.parquet``) and
``timeseries.csv`` (plus ``expert_devices.csv`` and ``link_hotspots.csv`` when the run recorded
per-device expert load and EP link traffic), and on request ``plots/*.png`` and
``timeline.json``; every file is written
atomically, so an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.report.experts import experts_line, write_expert_tables
from hwsim.report.tables import timeseries, write_requests, write_timeseries
from hwsim.report.timeline import MAX_EVENTS, write_timeline
from hwsim.sim.metrics import SimResult
from hwsim.units import Dim, format_quantity
from hwsim.workload.files import atomic_text_writer

__all__ = ["write_outputs", "write_summary", "summary_text"]

REQUESTS_FORMATS = ("csv", "parquet")


WALL_CLOCK_KEYS = ("wall_time_s", "events_per_s", "speedup")
"""Run-section fields that depend on the machine, not the inputs: printed, never written, so
the same inputs and seed give a byte-identical summary.json."""


def write_summary(summary_dict: Mapping[str, Any], path: str | Path) -> Path:
    """``summary_dict`` as indented JSON with sorted keys (NaN is refused: use ``summarize``),
    without the wall-clock fields (:data:`WALL_CLOCK_KEYS`)."""
    data = dict(summary_dict)
    if isinstance(data.get("run"), Mapping):
        data["run"] = {k: v for k, v in data["run"].items() if k not in WALL_CLOCK_KEYS}
    with atomic_text_writer(path) as f:
        f.write(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))
        f.write("\n")
    return Path(path)


def write_outputs(
    result: SimResult,
    out_dir: str | Path,
    *,
    summary_dict: Mapping[str, Any],
    requests_format: str = "csv",
    interval_s: float = 1.0,
    plots: bool = False,
    timeline: bool = False,
    max_timeline_events: int = MAX_EVENTS,
) -> list[Path]:
    """Write every output of ``result`` into ``out_dir`` (created if missing).

    Returns the paths written: ``summary.json``, ``requests.csv`` or ``requests.parquet``,
    ``timeseries.csv``, ``expert_devices.csv`` and ``link_hotspots.csv`` when the result has
    their data, then ``plots/*.png`` when ``plots`` and ``timeline.json`` when ``timeline``.
    """
    if requests_format not in REQUESTS_FORMATS:
        raise SpecError("unknown requests format", path="requests_format",
                        expected=" or ".join(REQUESTS_FORMATS), found=requests_format)
    out = Path(out_dir)
    ts = timeseries(result, interval_s)
    written = [
        write_summary(summary_dict, out / "summary.json"),
        write_requests(result, out / f"requests.{requests_format}"),
        write_timeseries(ts, out / "timeseries.csv"),
    ]
    written += write_expert_tables(result, out)
    if plots:
        from hwsim.report.plots import plot_all

        written += plot_all(result, ts, out / "plots")
    if timeline:
        written.append(write_timeline(result, out / "timeline.json", max_events=max_timeline_events))
    return written


# -- text --------------------------------------------------------------------------------------
def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def _q(x: Any, dim: Dim) -> str:
    return "-" if x is None else format_quantity(float(x), dim)


def _num(x: Any, fmt: str = "") -> str:
    """``x`` in ``fmt``; by default 3 significant digits, or a whole number with commas from 1,000."""
    if x is None:
        return "-"
    if fmt:
        return format(x, fmt)
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _pct(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.0%}" if abs(x) >= 0.1 else f"{x:.1%}"


def _latency_line(s: Mapping[str, Any], key: str, label: str) -> str:
    d = _get(s, "latency", key) or {}
    return (f"{label:<13}p50 {_q(d.get('p50'), Dim.TIME)}, p99 {_q(d.get('p99'), Dim.TIME)} "
            f"(mean {_q(d.get('mean'), Dim.TIME)}, {d.get('count', 0):,} samples)")


def _goodput_line(s: Mapping[str, Any]) -> str:
    g = s.get("goodput") or {}
    slos = [f"{name} <= {_q(g.get(k), Dim.TIME)}" for name, k in (("TTFT", "slo_ttft_s"), ("TPOT", "slo_tpot_s"))
            if g.get(k) is not None]
    if not slos:
        return "goodput      no SLO given"
    return (f"goodput      {_num(g.get('requests_per_s'))} req/s meet {', '.join(slos)} "
            f"({_pct(g.get('attainment'))} of measured requests)")


def _memory_line(s: Mapping[str, Any]) -> str:
    pools = _get(s, "memory", "pools") or []
    parts = [f"{p['pool']}: KV peak {_pct(p.get('kv_use_peak'))} (mean {_pct(p.get('kv_use_mean'))}), "
             f"HBM peak {_q(p.get('hbm_peak_bytes_per_device'), Dim.BYTES)} of "
             f"{_q(p.get('hbm_bytes_per_device'), Dim.BYTES)} per device" for p in pools]
    return "memory       " + ("; ".join(parts) if parts else "-")


def _offload_line(s: Mapping[str, Any]) -> str | None:
    """One line on the expert cache (only with ``experts.offload``).

    >>> _offload_line({"offload": {"policy": "lru", "backing": "dram", "hit_rate": 0.25,
    ...                            "fetched_bytes_per_output_token": 2e9, "offload_time_share": 0.5,
    ...                            "cpu_experts": 0}})
    'offload      lru cache over dram: hit rate 25.0%, 2 GB fetched per output token, 50.0% of step time'
    """
    o = s.get("offload")
    if not o:
        return None
    hit, share = o.get("hit_rate"), o.get("offload_time_share")
    line = (f"offload      {o.get('policy')} cache over {o.get('backing')}: hit rate "
            f"{'-' if hit is None else f'{hit:.1%}'}, "
            f"{_q(o.get('fetched_bytes_per_output_token'), Dim.BYTES)} fetched per output token, "
            f"{'-' if share is None else f'{share:.1%}'} of step time")
    if o.get("cpu_experts"):
        line += f", {o['cpu_experts']:,} experts run on the CPU"
    return line


def summary_text(summary_dict: Mapping[str, Any]) -> str:
    """A dozen lines for people: throughput, latencies, goodput, memory, power, energy, cost.

    >>> print(summary_text({"requests": {"finished": 2}}).splitlines()[0])
    requests     2 finished, 0 unfinished, 0 rejected; 0 measured over - (- preemptions)
    """
    s = summary_dict
    r, th = s.get("requests") or {}, s.get("throughput") or {}
    pw, cost, run = s.get("power") or {}, s.get("cost") or {}, s.get("run") or {}
    usd = cost.get("usd_per_million_output_tokens")
    return "\n".join([
        f"requests     {r.get('finished', 0):,} finished, {r.get('unfinished', 0):,} unfinished, "
        f"{r.get('rejected', 0):,} rejected; {r.get('measured', 0):,} measured over "
        f"{_q(th.get('window_s'), Dim.TIME)} ({_num(s.get('preemptions'), ',')} preemptions)",
        f"throughput   {_num(th.get('requests_per_s'))} req/s; output {_num(th.get('output_tokens_per_s'))} tok/s "
        f"({_num(th.get('output_tokens_per_s_per_device'))} per device), "
        f"input {_num(th.get('input_tokens_per_s'))} tok/s",
        _latency_line(s, "ttft_s", "TTFT"),
        _latency_line(s, "tpot_s", "TPOT"),
        _latency_line(s, "itl_s", "ITL (steps)"),
        _latency_line(s, "e2e_s", "end-to-end"),
        _goodput_line(s),
        f"batch        mean {_num(_get(s, 'batch', 'mean'))}, p99 {_num(_get(s, 'batch', 'p99'))}, "
        f"max {_num(_get(s, 'batch', 'max'))} sequences per step",
        _memory_line(s),
        f"power        mean {_q(pw.get('mean_power_w_per_device'), Dim.POWER)}, peak "
        f"{_q(pw.get('peak_power_w_per_device'), Dim.POWER)} per device; "
        f"{_q(pw.get('energy_j'), Dim.ENERGY)} in all, {_num(pw.get('joules_per_output_token'))} J per output token",
        "cost         " + (f"{_num(usd)} USD per million output tokens ({_num(cost.get('usd'))} USD for the run)"
                           if usd is not None else "no price for every pool"),
        f"simulator    {_num(run.get('events'), ',')} events in {_q(run.get('wall_time_s'), Dim.TIME)} "
        f"({_num(run.get('events_per_s'))} events/s), {_num(run.get('speedup'), ',.1f')}x faster than real time",
    ] + [line for line in (experts_line(s), _offload_line(s), _clients_line(run)) if line is not None])


def _clients_line(run: Mapping[str, Any]) -> str | None:
    n = run.get("closed_loop_clients")
    if not n:
        return None
    return f"clients      {n:,} closed-loop clients (each sends its next request when the last finishes)"
