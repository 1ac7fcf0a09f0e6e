"""Tables of a simulation: one row per request (CSV or Parquet) and a time series (CSV).

Every file is written atomically: to a temporary file in the target folder that replaces the
target only once complete, so a failed write never leaves a partial file behind.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hwsim.errors import SpecError
from hwsim.report.summary import latency_columns
from hwsim.sim.metrics import REQUEST_COLUMNS, STATUS, SimResult
from hwsim.workload.files import atomic_path, atomic_text_writer

__all__ = [
    "atomic_path", "requests_table", "write_requests", "timeseries", "write_timeseries", "write_csv",
]

Table = dict[str, np.ndarray]


# -- requests --------------------------------------------------------------------------------
def requests_table(result: SimResult) -> Table:
    """One row per request, sorted by ``request_id``: every recorded column, then ``ttft_s``,
    ``tpot_s``, ``e2e_s``, ``queue_s`` (NaN where undefined), ``status_name`` and
    ``rejection_reason`` (empty unless rejected)."""
    req = result.requests
    order = np.argsort(req["request_id"], kind="stable")
    table: Table = {k: np.asarray(req[k])[order] for k in REQUEST_COLUMNS if k in req}
    table.update({k: np.asarray(v)[order] for k, v in req.items() if k not in table})
    table.update(latency_columns(table))
    table["status_name"] = np.array([STATUS.get(int(s), str(int(s))) for s in table["status"]], dtype=object)
    reasons = {r.request_id: r.reason for r in result.rejections}
    table["rejection_reason"] = np.array(
        [reasons.get(int(i), "") if s == 2 else "" for i, s in zip(table["request_id"], table["status"], strict=True)],
        dtype=object,
    )
    return table


def write_requests(result: SimResult, path: str | Path) -> Path:
    """Write :func:`requests_table` to ``path``: Parquet for ``.parquet``, CSV for ``.csv`` or
    ``.csv.gz``."""
    p = Path(path)
    name = p.name.lower()
    table = requests_table(result)
    if name.endswith(".parquet"):
        _write_parquet(table, p)
    elif name.endswith((".csv", ".csv.gz")):
        write_csv(table, p)
    else:
        raise SpecError("unknown requests table format", file=str(p),
                        expected="a name ending in .csv, .csv.gz or .parquet", found=p.name)
    return p


def _write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for k, v in table.items():
        if v.dtype == object:
            arrays[k] = pa.array([None if x == "" else str(x) for x in v], type=pa.string()) \
                if k == "rejection_reason" else pa.array([str(x) for x in v], type=pa.string())
        else:
            arrays[k] = pa.array(v)
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(arrays), tmp)


def _cells(col: np.ndarray) -> list[str]:
    if col.dtype.kind == "f":
        return ["" if not math.isfinite(x) else repr(x) for x in col.astype(np.float64).tolist()]
    if col.dtype.kind in "iub":
        return [str(int(x)) for x in col.tolist()]
    return [str(x) for x in col.tolist()]


def write_csv(columns: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write equal-length columns as CSV (floats as shortest round-trip text, NaN as empty)."""
    cells = [_cells(np.asarray(v)) for v in columns.values()]
    with atomic_text_writer(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(list(columns))
        w.writerows(zip(*cells, strict=True))
    return Path(path)


# -- time series -----------------------------------------------------------------------------
def timeseries(result: SimResult, interval_s: float) -> Table:
    """The run in buckets of ``interval_s`` from time 0.

    Columns: ``time_s`` (bucket start); ``output_tokens_per_s`` (each request's first token at
    ``first_token_s``, the others spread evenly up to ``finish_s``, or to the end of the run
    when unfinished, so the buckets add up to every generated token); ``input_tokens_per_s``
    (prompt tokens computed by steps, spread over each step: prefix-cache hits excluded,
    recomputation after preemption included); ``running_seqs`` and ``waiting_seqs`` (summed
    over replicas: each replica's mean over its steps ending in the bucket, carried forward
    while it is idle); ``kv_use_fraction`` (KV blocks in use over all replicas' blocks, carried
    the same way); ``power_w_per_device`` (mean over the steps ending in the bucket, weighted by
    duration x devices; empty when no step ended in it).
    """
    if not interval_s > 0:
        raise SpecError("the time-series interval must be positive", expected="> 0 s", found=interval_s)
    req, steps = result.requests, result.steps
    end_s = steps["start_s"] + steps["duration_s"]
    finish = req["finish_s"][np.isfinite(req["finish_s"])]
    last = max(result.sim_time_s, float(end_s.max(initial=0.0)), float(finish.max(initial=0.0)))
    buckets = max(1, math.ceil(last / interval_s - 1e-9))
    edges = np.arange(buckets + 1, dtype=np.float64) * interval_s
    out: Table = {"time_s": edges[:-1].copy()}
    out["output_tokens_per_s"] = _output_tokens(result, edges) / interval_s
    out["input_tokens_per_s"] = _spread(steps["start_s"], end_s, steps["prefill_tokens"], edges) / interval_s
    out.update(_replica_state(result, edges, end_s))
    out["power_w_per_device"] = _power(result, edges, end_s)
    return out


def write_timeseries(ts: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write :func:`timeseries` columns as CSV."""
    return write_csv(ts, path)


def _bucket(t: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Index of the bucket ``[edge_k, edge_k+1)`` holding each time (the ends clipped in)."""
    width = edges[1] - edges[0]
    return np.clip(np.floor(np.asarray(t, dtype=np.float64) / width), 0, len(edges) - 2).astype(np.int64)


def _spread(a: np.ndarray, b: np.ndarray, amount: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per-bucket share of ``amount`` spread evenly over ``[a, b]`` (a point mass when ``b <= a``).

    Vectorised and conservative: a ramp gives its first and last buckets their partial overlap
    and every bucket between them ``slope x width`` (through a difference array of slopes).
    Shares are rounded to 1e-9 of a unit, which hides float noise such as -1e-14.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    amount = np.asarray(amount, dtype=np.float64)
    nb, width = len(edges) - 1, edges[1] - edges[0]
    ka, kb = _bucket(a, edges), _bucket(b, edges)
    whole = ~(b > a) | (ka == kb)
    out = np.bincount(ka[whole], weights=amount[whole], minlength=nb).astype(np.float64)
    ramp = ~whole & (amount != 0)
    if ramp.any():
        a, b, ka, kb = a[ramp], b[ramp], ka[ramp], kb[ramp]
        slope = amount[ramp] / (b - a)
        out += np.bincount(ka, weights=slope * (edges[ka + 1] - a), minlength=nb)
        out += np.bincount(kb, weights=slope * (b - edges[kb]), minlength=nb)
        diff = np.bincount(ka + 1, weights=slope, minlength=nb + 1) - np.bincount(kb, weights=slope, minlength=nb + 1)
        out += np.cumsum(diff)[:nb] * width
    return np.round(out, 9) + 0.0  # + 0.0 turns -0.0 into 0.0


def _output_tokens(result: SimResult, edges: np.ndarray) -> np.ndarray:
    req = result.requests
    first = req["first_token_s"].astype(np.float64)
    gen = req["generated_tokens"].astype(np.float64)
    has = np.isfinite(first) & (gen > 0)
    end = np.where(np.isfinite(req["finish_s"]), req["finish_s"], result.sim_time_s)
    end = np.minimum(end.astype(np.float64), edges[-1])
    nb = len(edges) - 1
    firsts = np.bincount(_bucket(first[has], edges), minlength=nb).astype(np.float64)
    return firsts + _spread(first[has], end[has], gen[has] - 1.0, edges)


def _replica_ids(result: SimResult) -> tuple[np.ndarray, np.ndarray]:
    """(dense id of each step's replica, pool index of each dense id)."""
    steps = result.steps
    key = steps["pool"].astype(np.int64) * (1 << 32) + steps["replica"].astype(np.int64)
    uniq, gid = np.unique(key, return_inverse=True)
    return gid.reshape(-1), (uniq >> 32).astype(np.int64)


def _carried(values: np.ndarray, gid: np.ndarray, bucket: np.ndarray, n_rep: int, nb: int) -> np.ndarray:
    """Per (replica, bucket) mean of ``values``, carried forward over empty buckets (0 before)."""
    idx = gid * nb + bucket
    sums = np.bincount(idx, weights=values.astype(np.float64), minlength=n_rep * nb).reshape(n_rep, nb)
    counts = np.bincount(idx, minlength=n_rep * nb).reshape(n_rep, nb)
    has = counts > 0
    mean = np.where(has, sums / np.maximum(counts, 1), 0.0)
    last = np.maximum.accumulate(np.where(has, np.arange(nb), -1), axis=1)
    filled = np.take_along_axis(mean, np.maximum(last, 0), axis=1)
    return np.where(last >= 0, filled, 0.0)


def _replica_state(result: SimResult, edges: np.ndarray, end_s: np.ndarray) -> Table:
    steps, nb = result.steps, len(edges) - 1
    gid, pool_of = _replica_ids(result)
    n_rep = len(pool_of)
    bucket = _bucket(end_s, edges)
    out: Table = {}
    for col in ("running_seqs", "waiting_seqs"):
        out[col] = _carried(steps[col], gid, bucket, n_rep, nb).sum(axis=0)
    used = _carried(steps["kv_blocks_used"], gid, bucket, n_rep, nb).sum(axis=0)
    blocks = sum(p.replicas * p.kv_blocks_per_replica for p in result.pools)
    out["kv_use_fraction"] = used / blocks if blocks > 0 else np.full(nb, np.nan)
    return out


def _power(result: SimResult, edges: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    steps, nb = result.steps, len(edges) - 1
    per_pool = np.array([p.devices_per_replica for p in result.pools] or [1], dtype=np.float64)
    pool = np.clip(steps["pool"].astype(np.int64), 0, len(per_pool) - 1)
    weight = steps["duration_s"].astype(np.float64) * per_pool[pool]
    bucket = _bucket(end_s, edges)
    num = np.bincount(bucket, weights=weight * steps["power_w"], minlength=nb)
    den = np.bincount(bucket, weights=weight, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
