"""The machine-readable summary of a simulation (``summary.json``).

Definitions follow the README's "Metric definitions" (vLLM's benchmark conventions):

- Request metrics (latencies, throughput, goodput) use *finished* requests (status 0) that
  arrived at or after ``warmup_s``. The measured window runs from the first arrival to the last
  finish of those requests.
- **TTFT** = ``first_token_s - arrival_s`` (queueing and prefill included). **TPOT** =
  ``(finish_s - first_token_s) / (generated_tokens - 1)`` for requests with more than one token
  (the first token is excluded). **E2E** = ``finish_s - arrival_s``. **Queueing** =
  ``first_scheduled_s - arrival_s``.
- **ITL** is taken from the engine steps, not from per-request TPOT: every step that decoded
  is one inter-token gap of ``duration_s`` for each of its ``decode_seqs`` sequences, so ITL is
  the distribution of decode step durations weighted by ``decode_seqs``. It misses the idle
  gaps of a sequence that skipped steps (preempted or waiting behind a chunked prefill) and
  treats speculative tokens of one step as one gap.
- Step distributions (ITL, batch size, step imbalance) use steps that start at or after
  ``warmup_s``. Energy, power, cost, KV/HBM peaks, preemptions and status counts cover the
  whole run, ``[0, sim_time_s]``; energy and cost per token divide by every token generated
  in it (unfinished requests' tokens included), so numerator and denominator cover the same
  time.
- Percentiles are numpy's ``'linear'`` method; an empty sample gives ``null``.

Every float is JSON-serialisable (NaN and infinities become ``null``) and the keys are sorted,
so equal results give byte-identical files.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from hwsim.report.experts import device_load_stats, hotspot_rows
from hwsim.sim.metrics import PoolInfo, SimResult

QUANTILES = (50.0, 90.0, 99.0)

__all__ = ["summarize", "latency_columns", "distribution", "weighted_distribution", "json_clean"]


def summarize(
    result: SimResult,
    *,
    slo_ttft_s: float | None = None,
    slo_tpot_s: float | None = None,
    warmup_s: float = 0.0,
    inputs: Mapping[str, str] | None = None,
    version: str,
) -> dict[str, Any]:
    """Everything ``summary.json`` holds, as a JSON-ready dict with sorted keys.

    Parameters
    ----------
    result:
        The simulation's frozen result.
    slo_ttft_s, slo_tpot_s:
        Goodput SLOs in seconds; ``None`` leaves that SLO out (no SLO at all: goodput ``null``).
    warmup_s:
        Requests arriving, and steps starting, before this simulated time are left out of the
        request and step distributions.
    inputs:
        Input file -> hash, recorded for provenance.
    version:
        The hwsim version that produced the result.

    Examples
    --------
    >>> import numpy as np
    >>> from hwsim.sim.metrics import REQUEST_COLUMNS, STEP_COLUMNS, SimResult
    >>> empty = SimResult(requests={k: np.zeros(0, v) for k, v in REQUEST_COLUMNS.items()},
    ...                   steps={k: np.zeros(0, v) for k, v in STEP_COLUMNS.items()}, pools=(),
    ...                   sim_time_s=0.0, wall_time_s=0.0, events=0, seed=1)
    >>> s = summarize(empty, version="0")
    >>> s["requests"]["finished"], s["latency"]["ttft_s"]["p50"], s["goodput"]["requests_per_s"]
    (0, None, None)
    """
    req = result.requests
    lat = latency_columns(req)
    measured = (req["status"] == 0) & (req["arrival_s"] >= warmup_s)
    steps = result.steps
    late_steps = steps["start_s"] >= warmup_s
    throughput = _throughput(req, measured, _devices(result.pools))
    out: dict[str, Any] = {
        "hwsim_version": version,
        "seed": result.seed,
        "inputs": dict(inputs or {}),
        "run": _run(result, warmup_s),
        "requests": _counts(result, int(measured.sum())),
        "throughput": throughput,
        "latency": {
            "ttft_s": distribution(lat["ttft_s"][measured]),
            "tpot_s": distribution(lat["tpot_s"][measured]),
            "e2e_s": distribution(lat["e2e_s"][measured]),
            "queue_s": distribution(lat["queue_s"][measured]),
            "itl_s": _itl(steps, late_steps),
        },
        "goodput": _goodput(lat, measured, throughput["window_s"], slo_ttft_s, slo_tpot_s),
        "batch": _batch(steps, late_steps),
        "preemptions": int(req["preemptions"].sum()),
        "memory": _memory(result),
        "experts": _experts(result, late_steps),
        "communication": {"fraction_of_step_time": result.comm_fraction},
    }
    out.update(_energy_and_cost(result))
    if result.offload is not None:
        out["offload"] = _offload(result)
    return json_clean(out)


# -- columns and distributions ---------------------------------------------------------------
def latency_columns(req: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-request ``ttft_s``, ``tpot_s``, ``e2e_s``, ``queue_s`` (NaN where undefined).

    >>> import numpy as np
    >>> cols = latency_columns({"arrival_s": np.array([0.0]), "first_scheduled_s": np.array([0.5]),
    ...     "first_token_s": np.array([1.0]), "finish_s": np.array([2.0]),
    ...     "generated_tokens": np.array([5])})
    >>> [float(cols[k][0]) for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s")]
    [1.0, 0.25, 2.0, 0.5]
    """
    arrival = req["arrival_s"].astype(np.float64)
    first = req["first_token_s"].astype(np.float64)
    finish = req["finish_s"].astype(np.float64)
    gaps = req["generated_tokens"].astype(np.float64) - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot = np.where(gaps > 0, (finish - first) / np.where(gaps > 0, gaps, 1.0), np.nan)
    return {
        "ttft_s": first - arrival,
        "tpot_s": tpot,
        "e2e_s": finish - arrival,
        "queue_s": req["first_scheduled_s"].astype(np.float64) - arrival,
    }


def distribution(values: np.ndarray) -> dict[str, float | int]:
    """``count``, ``mean``, ``p50``, ``p90``, ``p99`` of the finite values (NaN when none).

    >>> distribution(np.array([1.0, 2.0, 3.0, np.nan]))["p50"]
    2.0
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"count": 0, "mean": math.nan, **{f"p{q:g}": math.nan for q in QUANTILES}}
    ps = np.percentile(x, QUANTILES, method="linear")
    return {"count": int(x.size), "mean": float(x.mean()), **{f"p{q:g}": float(p) for q, p in zip(QUANTILES, ps, strict=True)}}


def weighted_distribution(values: np.ndarray, counts: np.ndarray) -> dict[str, float | int]:
    """Like :func:`distribution` for ``values`` repeated ``counts`` times, without repeating them.

    The percentiles equal ``np.percentile(np.repeat(values, counts), q, method="linear")``.

    >>> weighted_distribution(np.array([1.0, 3.0]), np.array([3, 1]))["p50"]
    1.0
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    keep = (c > 0) & np.isfinite(v)
    v, c = v[keep], c[keep]
    n = int(c.sum())
    if n == 0:
        return distribution(np.zeros(0))
    order = np.argsort(v, kind="stable")
    v, ends = v[order], np.cumsum(c[order])
    h = (n - 1) * np.asarray(QUANTILES) / 100.0
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    v_lo = v[np.searchsorted(ends, lo, side="right")]
    v_hi = v[np.searchsorted(ends, hi, side="right")]
    ps = v_lo + (h - lo) * (v_hi - v_lo)
    mean = float((v * c[order]).sum() / n)
    return {"count": n, "mean": mean, **{f"p{q:g}": float(p) for q, p in zip(QUANTILES, ps, strict=True)}}


def _stats_max(values: np.ndarray) -> dict[str, Any]:
    d: dict[str, Any] = distribution(values)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    d["max"] = float(finite.max()) if finite.size else math.nan
    return d


# -- sections --------------------------------------------------------------------------------
def _devices(pools: tuple[PoolInfo, ...]) -> int:
    return sum(p.replicas * p.devices_per_replica for p in pools)


def _run(result: SimResult, warmup_s: float) -> dict[str, Any]:
    wall = result.wall_time_s
    return {
        "sim_time_s": result.sim_time_s,
        "wall_time_s": wall,
        "events": result.events,
        "events_per_s": result.events / wall if wall > 0 else math.nan,
        "speedup": result.sim_time_s / wall if wall > 0 else math.nan,
        "warmup_s": warmup_s,
        "closed_loop_clients": result.metadata.get("concurrency"),
    }


def _counts(result: SimResult, measured: int) -> dict[str, Any]:
    status = result.requests["status"]
    return {
        "total": int(status.size),
        "finished": int((status == 0).sum()),
        "unfinished": int((status == 1).sum()),
        "rejected": int((status == 2).sum()),
        "rejection_reasons": dict(Counter(r.reason for r in result.rejections)),
        "measured": measured,
    }


def _throughput(req: Mapping[str, np.ndarray], measured: np.ndarray, devices: int) -> dict[str, Any]:
    start = float(req["arrival_s"][measured].min()) if measured.any() else math.nan
    end = float(req["finish_s"][measured].max()) if measured.any() else math.nan
    window = end - start
    ok = window > 0
    n_in = int(req["input_tokens"][measured].sum())
    n_out = int(req["generated_tokens"][measured].sum())
    in_rate = n_in / window if ok else math.nan
    out_rate = n_out / window if ok else math.nan
    return {
        "window_start_s": start,
        "window_end_s": end,
        "window_s": window,
        "devices": devices,
        "input_tokens": n_in,
        "output_tokens": n_out,
        "requests_per_s": int(measured.sum()) / window if ok else math.nan,
        "input_tokens_per_s": in_rate,
        "output_tokens_per_s": out_rate,
        "input_tokens_per_s_per_device": in_rate / devices if devices else math.nan,
        "output_tokens_per_s_per_device": out_rate / devices if devices else math.nan,
    }


def _goodput(lat: Mapping[str, np.ndarray], measured: np.ndarray, window_s: float,
             slo_ttft_s: float | None, slo_tpot_s: float | None) -> dict[str, Any]:
    """Requests per second meeting every SLO given; a request with one token meets any TPOT SLO."""
    out: dict[str, Any] = {"slo_ttft_s": slo_ttft_s, "slo_tpot_s": slo_tpot_s,
                           "requests": None, "requests_per_s": math.nan, "attainment": math.nan}
    if slo_ttft_s is None and slo_tpot_s is None:
        return out
    good = measured.copy()
    if slo_ttft_s is not None:
        good &= lat["ttft_s"] <= slo_ttft_s
    if slo_tpot_s is not None:
        tpot = lat["tpot_s"]
        good &= np.isnan(tpot) | (tpot <= slo_tpot_s)
    n_good, n = int(good.sum()), int(measured.sum())
    out["requests"] = n_good
    out["requests_per_s"] = n_good / window_s if window_s > 0 else math.nan
    out["attainment"] = n_good / n if n else math.nan
    return out


def _itl(steps: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, float | int]:
    decoded = keep & (steps["decode_seqs"] > 0)
    return weighted_distribution(steps["duration_s"][decoded], steps["decode_seqs"][decoded])


def _batch(steps: Mapping[str, np.ndarray], keep: np.ndarray) -> dict[str, Any]:
    """Sequences per step: decode sequences plus prefill sequences.

    The prefill count comes from a ``prefill_seqs`` step column when the simulator records one;
    without it a step with prefill tokens counts as one prefill sequence (a lower bound), and
    ``basis`` says so.
    """
    decode = steps["decode_seqs"][keep].astype(np.float64)
    if "prefill_seqs" in steps:
        prefill, basis = steps["prefill_seqs"][keep].astype(np.float64), "decode_seqs + prefill_seqs"
    else:
        prefill = (steps["prefill_tokens"][keep] > 0).astype(np.float64)
        basis = "decode_seqs + 1 per step with prefill tokens (lower bound: no prefill_seqs column)"
    d = _stats_max(decode + prefill)
    d["basis"] = basis
    return d


def _memory(result: SimResult) -> dict[str, Any]:
    """KV use per pool (duration-weighted mean and peak of used / total blocks) and HBM peak.

    HBM peak per device = weights + peak KV fraction x KV region, the KV region being
    ``kv_bytes_per_device`` when the pool records it, else HBM capacity minus weights (which
    also holds activations and the reserve, so the peak is an upper bound).
    """
    steps = result.steps
    pools: list[dict[str, Any]] = []
    for i, p in enumerate(result.pools):
        mine = steps["pool"] == i
        dur = steps["duration_s"][mine].astype(np.float64)
        used = steps["kv_blocks_used"][mine].astype(np.float64)
        frac = used / p.kv_blocks_per_replica if p.kv_blocks_per_replica > 0 else np.zeros_like(used)
        mean = float((frac * dur).sum() / dur.sum()) if dur.sum() > 0 else math.nan
        peak = float(frac.max()) if frac.size else 0.0
        kv_region = getattr(p, "kv_bytes_per_device", None)
        if kv_region is None:
            kv_region = max(p.hbm_bytes_per_device - p.weights_bytes_per_device, 0.0)
        hbm_peak = p.weights_bytes_per_device + peak * kv_region
        pools.append({
            "pool": p.name, "role": p.role, "device": p.device,
            "kv_use_mean": mean, "kv_use_peak": peak,
            "hbm_bytes_per_device": p.hbm_bytes_per_device,
            "weights_bytes_per_device": p.weights_bytes_per_device,
            "hbm_peak_bytes_per_device": hbm_peak,
            "hbm_peak_fraction": hbm_peak / p.hbm_bytes_per_device if p.hbm_bytes_per_device > 0 else math.nan,
        })
    return {
        "pools": pools,
        "kv_use_peak": max((d["kv_use_peak"] for d in pools), default=math.nan),
        "hbm_peak_fraction": max((d["hbm_peak_fraction"] for d in pools), default=math.nan),
    }


def _pool_energy(result: SimResult, i: int, p: PoolInfo) -> tuple[float, float, float]:
    """(busy energy, idle energy, peak power per device) of pool ``i`` over ``[0, sim_time_s]``."""
    steps = result.steps
    mine = steps["pool"] == i
    dur = steps["duration_s"][mine].astype(np.float64)
    power = steps["power_w"][mine].astype(np.float64)
    busy_j = float((power * dur).sum()) * p.devices_per_replica
    busy_s = np.bincount(steps["replica"][mine], weights=dur, minlength=p.replicas)[: p.replicas]
    idle_s = np.clip(result.sim_time_s - busy_s, 0.0, None)
    idle_j = float(idle_s.sum()) * p.idle_power_w * p.devices_per_replica
    peak = max(float(power.max()) if power.size else 0.0, p.idle_power_w)
    return busy_j, idle_j, peak


def _energy_and_cost(result: SimResult) -> dict[str, Any]:
    t = result.sim_time_s
    tokens = int(result.requests["generated_tokens"].sum())
    pools, busy, idle, peaks = [], 0.0, 0.0, []
    for i, p in enumerate(result.pools):
        b, d, pk = _pool_energy(result, i, p)
        n = p.replicas * p.devices_per_replica
        busy, idle = busy + b, idle + d
        peaks.append(pk)
        pools.append({
            "pool": p.name, "devices": n, "energy_j": b + d, "busy_energy_j": b, "idle_energy_j": d,
            "mean_power_w": (b + d) / t if t > 0 else math.nan,
            "mean_power_w_per_device": (b + d) / (t * n) if t > 0 and n else math.nan,
            "peak_power_w_per_device": pk,
            "usd_per_s": p.usd_per_s,
        })
    energy, devices = busy + idle, _devices(result.pools)
    priced = bool(result.pools) and all(p.usd_per_s is not None for p in result.pools)
    usd_per_s = sum(p.usd_per_s or 0.0 for p in result.pools) if priced else math.nan
    usd = usd_per_s * t
    power = {
        "pools": pools, "window_s": t, "output_tokens": tokens,
        "energy_j": energy, "busy_energy_j": busy, "idle_energy_j": idle,
        "joules_per_output_token": energy / tokens if tokens else math.nan,
        "mean_power_w": energy / t if t > 0 else math.nan,
        "mean_power_w_per_device": energy / (t * devices) if t > 0 and devices else math.nan,
        "peak_power_w_per_device": max(peaks, default=math.nan),
    }
    cost = {
        "window_s": t, "output_tokens": tokens, "usd": usd, "usd_per_s": usd_per_s,
        "usd_per_million_output_tokens": usd / tokens * 1e6 if tokens else math.nan,
        "unpriced_pools": [p.name for p in result.pools if p.usd_per_s is None],
    }
    return {"power": power, "cost": cost}


def _experts(result: SimResult, keep: np.ndarray) -> dict[str, Any]:
    """Step imbalance (busiest EP rank / mean) and, when sampled, expert load max / mean per row;
    per-device load per pool and the busiest EP links when recorded (:mod:`hwsim.report.experts`)."""
    steps = result.steps
    imb = steps["imbalance"][keep & ((steps["prefill_tokens"] > 0) | (steps["decode_seqs"] > 0))]
    imb = imb.astype(np.float64)
    out: dict[str, Any] = {
        "step_imbalance_mean": float(imb.mean()) if imb.size else math.nan,
        "step_imbalance_max": float(imb.max()) if imb.size else math.nan,
        "expert_load_max_over_mean_mean": math.nan,
        "expert_load_max_over_mean_max": math.nan,
    }
    load = result.expert_load
    if load is not None and np.ndim(load) == 2 and np.size(load):
        load = np.asarray(load, dtype=np.float64)
        mean = load.mean(axis=1)
        rows = mean > 0
        if rows.any():
            ratio = load[rows].max(axis=1) / mean[rows]
            out["expert_load_max_over_mean_mean"] = float(ratio.mean())
            out["expert_load_max_over_mean_max"] = float(ratio.max())
    if result.rank_loads:
        out["devices"] = device_load_stats(result)
    if result.ep_links:
        out["ep_hotspots"] = hotspot_rows(result, top=10)
    return out


def _offload(result: SimResult) -> dict[str, Any]:
    """Expert-cache activity over the whole run (only with ``experts.offload``).

    ``hit_rate`` = hits / (hits + misses), counted per distinct (step, layer, expert) use;
    ``offload_time_share`` = seconds the misses added / total step time; bytes are summed over
    every replica.
    """
    o = result.offload
    assert o is not None
    st = o.steps
    hits, misses = int(st["hits"].sum()), int(st["misses"].sum())
    busy = float(result.steps["duration_s"].astype(np.float64).sum())
    added = float(st["offload_s"].sum())
    tokens = int(result.requests["generated_tokens"].sum())
    fetched = float(st["fetched_bytes"].sum())
    return {
        "policy": o.policy, "backing": o.backing, "cached_experts_per_device": list(o.cached_experts),
        "hits": hits, "misses": misses, "hit_rate": hits / (hits + misses) if hits + misses else math.nan,
        "fetched_bytes": fetched, "flash_bytes": float(st["flash_bytes"].sum()),
        "fetched_bytes_per_output_token": fetched / tokens if tokens else math.nan,
        "cpu_experts": int(st["cpu_experts"].sum()), "cpu_s": float(st["cpu_s"].sum()),
        "offload_s": added, "offload_time_share": added / busy if busy > 0 else math.nan,
        "prefetched_experts": o.prefetched_experts, "prefetch_hidden_s": o.prefetch_hidden_s,
    }


# -- JSON ------------------------------------------------------------------------------------
def json_clean(obj: Any) -> Any:
    """``obj`` with numpy scalars made Python, NaN/inf made ``None`` and dict keys sorted.

    >>> json_clean({"b": float("nan"), "a": np.int32(3)})
    {'a': 3, 'b': None}
    """
    if isinstance(obj, Mapping):
        return {str(k): json_clean(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, list | tuple):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_clean(v) for v in obj.tolist()]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj
