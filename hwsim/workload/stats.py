"""Summary statistics of a request trace, computed in one streaming pass.

Memory does not grow with the number of requests: token lengths are kept as exact histograms
(one count per distinct length), moments with Welford's update, per-second arrival counts as
running moments. Only the prefix-reuse fraction keeps a set of the distinct block hashes seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwsim.workload.trace import Request

__all__ = ["TokenStats", "TraceStats", "trace_stats", "PERCENTILES"]

#: Percentiles reported for token lengths.
PERCENTILES = (50, 90, 99)
_FLUSH = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenStats:
    """Distribution of one token length over a trace (percentiles interpolate linearly,
    as :func:`numpy.percentile` does)."""

    total: int
    mean: float
    p50: float
    p90: float
    p99: float
    min: int
    max: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceStats:
    """What a trace looks like; NaN (``null`` in JSON) where a value is undefined.

    ``mean_rate_per_s`` is ``(count - 1) / span_s``, the inverse of the mean inter-arrival
    time. ``interarrival_cv`` is the coefficient of variation of inter-arrival times (1 for
    Poisson). ``per_second_cv`` and ``peak_per_second`` describe the counts of arrivals in
    the one-second bins ``[k, k + 1)`` from the first to the last arrival.
    ``prefix_reuse_fraction`` is the fraction of prefix blocks whose hash appeared in an
    earlier request (None when the trace has no prefix blocks).
    """

    count: int
    first_arrival_s: float
    span_s: float
    mean_rate_per_s: float
    interarrival_cv: float
    per_second_cv: float
    peak_per_second: int
    input_tokens: TokenStats | None
    output_tokens: TokenStats | None
    prefix_blocks: int
    prefix_reuse_fraction: float | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: NaN becomes None."""
        return _json_ready(asdict(self))


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Moments:
    """Welford's running mean and variance; ``add(x, n)`` adds ``n`` copies of ``x``."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: float, n: int = 1) -> None:
        total = self.n + n
        delta = x - self.mean
        self.mean += delta * n / total
        self.m2 += delta * delta * self.n * n / total
        self.n = total

    @property
    def cv(self) -> float:
        if self.n < 2 or self.mean == 0:
            return math.nan
        return math.sqrt(self.m2 / (self.n - 1)) / self.mean


class _Histogram:
    """Exact counts of integer values, buffered and merged with :func:`numpy.unique`."""

    def __init__(self) -> None:
        self._buffer: list[int] = []
        self._counts: dict[int, int] = {}

    def add(self, value: int) -> None:
        self._buffer.append(value)
        if len(self._buffer) >= _FLUSH:
            self._flush()

    def _flush(self) -> None:
        values, counts = np.unique(np.asarray(self._buffer, dtype=np.int64), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            self._counts[v] = self._counts.get(v, 0) + c
        self._buffer.clear()

    def summary(self) -> TokenStats | None:
        self._flush()
        if not self._counts:
            return None
        values = np.array(sorted(self._counts), dtype=np.int64)
        counts = np.array([self._counts[v] for v in values.tolist()], dtype=np.int64)
        cum = np.cumsum(counts)
        n = int(cum[-1])
        total = int(np.dot(values, counts))
        p = {q: _percentile(values, cum, n, q) for q in PERCENTILES}
        return TokenStats(
            total=total,
            mean=total / n,
            p50=p[50],
            p90=p[90],
            p99=p[99],
            min=int(values[0]),
            max=int(values[-1]),
        )


def _percentile(values: np.ndarray, cum: np.ndarray, n: int, q: float) -> float:
    """``numpy.percentile(data, q)`` (linear interpolation) of data given as a histogram."""
    rank = (n - 1) * q / 100.0
    lo = math.floor(rank)
    below = int(values[np.searchsorted(cum, lo, side="right")])
    above = int(values[np.searchsorted(cum, min(lo + 1, n - 1), side="right")])
    return below + (rank - lo) * (above - below)


def trace_stats(requests: Iterable[Request]) -> TraceStats:
    """Summarise ``requests`` (in arrival order) in one pass; see :class:`TraceStats`."""
    gaps, bins = _Moments(), _Moments()
    inputs, outputs = _Histogram(), _Histogram()
    seen: set[int] = set()
    count = blocks = reused = peak = 0
    first = last = math.nan
    current_bin, in_bin = 0, 0
    for request in requests:
        t = request.arrival_s
        if count == 0:
            first, current_bin = t, math.floor(t)
        else:
            gaps.add(t - last)
        b = math.floor(t)
        if b > current_bin:
            bins.add(in_bin)
            if b > current_bin + 1:
                bins.add(0, b - current_bin - 1)
            peak, current_bin, in_bin = max(peak, in_bin), b, 0
        in_bin += 1
        last = t
        count += 1
        inputs.add(request.input_tokens)
        outputs.add(request.output_tokens)
        if request.prefix_blocks:
            blocks += len(request.prefix_blocks)
            reused += sum(1 for h in request.prefix_blocks if h in seen)
            seen.update(request.prefix_blocks)
    if count:
        bins.add(in_bin)
        peak = max(peak, in_bin)
    span = last - first if count else math.nan
    return TraceStats(
        count=count,
        first_arrival_s=first,
        span_s=span,
        mean_rate_per_s=(count - 1) / span if count > 1 and span > 0 else math.nan,
        interarrival_cv=gaps.cv,
        per_second_cv=bins.cv,
        peak_per_second=peak,
        input_tokens=inputs.summary(),
        output_tokens=outputs.summary(),
        prefix_blocks=blocks,
        prefix_reuse_fraction=reused / blocks if blocks else None,
    )
