"""Seeded synthetic traces: an arrival process plus a length model, streamed in chunks.

Arrival processes (rates in requests per second):

* :class:`PoissonArrivals` — exponential inter-arrival times (CV 1).
* :class:`GammaArrivals` — gamma inter-arrival times with a chosen coefficient of variation
  (CV > 1 is bursty, CV < 1 is smoother than Poisson); shape ``1/cv**2``.
* :class:`DiurnalArrivals` — a Poisson process whose rate follows a sinusoid with a period and
  a peak-to-trough ratio, sampled exactly by thinning (Lewis and Shedler, 1979).

Length models: :class:`LognormalLengths` (independent lognormal input and output lengths given
their medians and log-space sigmas, rounded and clipped to ``[1, max]``; sigma 0 gives fixed
lengths) and :class:`EmpiricalLengths` (rows of a file drawn jointly with replacement, which
keeps the correlation between input and output lengths).

Every draw comes from a :class:`numpy.random.Generator`. :func:`generate_requests` splits it
into two independent streams (arrivals, lengths), so changing the length model leaves the
arrival times unchanged, and a shorter duration or count gives a prefix of a longer run.
Arrival times are rounded to the microsecond.
"""

from __future__ import annotations

import csv
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from hwsim.errors import SpecError
from hwsim.registry import Registry
from hwsim.workload.files import open_text, read_errors
from hwsim.workload.formats import parse_tokens, read_csv_columns
from hwsim.workload.importers import ImportReport, detect_format, import_requests
from hwsim.workload.trace import Request

__all__ = [
    "ArrivalProcess",
    "LengthModel",
    "PoissonArrivals",
    "GammaArrivals",
    "DiurnalArrivals",
    "OfflineArrivals",
    "ARRIVALS",
    "LognormalLengths",
    "EmpiricalLengths",
    "generate_requests",
    "make_rng",
]

#: Arrival times are rounded to this many decimals of a second (1 us).
TIME_DECIMALS = 6
DEFAULT_CHUNK = 4096


class ArrivalProcess(Protocol):
    """Something that yields successive chunks of increasing arrival times in seconds."""

    def times(
        self, rng: np.random.Generator, *, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]: ...


class LengthModel(Protocol):
    """Something that draws ``n`` (input_tokens, output_tokens) pairs as two int64 arrays."""

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]: ...


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


# ---------------------------------------------------------------- arrival processes


@dataclass(frozen=True, slots=True, kw_only=True)
class PoissonArrivals:
    """Poisson arrivals at ``rate_per_s`` requests per second."""

    rate_per_s: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)

    def times(
        self, rng: np.random.Generator, *, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        now_s = 0.0
        while True:
            times = now_s + np.cumsum(rng.exponential(1.0 / self.rate_per_s, chunk))
            now_s = float(times[-1])
            yield times


@dataclass(frozen=True, slots=True, kw_only=True)
class GammaArrivals:
    """Renewal arrivals with gamma inter-arrival times: mean ``1/rate_per_s``, CV ``cv``."""

    rate_per_s: float
    cv: float

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)
        _positive("cv", self.cv)

    def times(
        self, rng: np.random.Generator, *, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        shape = 1.0 / self.cv**2
        scale = 1.0 / (self.rate_per_s * shape)
        now_s = 0.0
        while True:
            times = now_s + np.cumsum(rng.gamma(shape, scale, chunk))
            now_s = float(times[-1])
            yield times


@dataclass(frozen=True, slots=True, kw_only=True)
class DiurnalArrivals:
    """Poisson arrivals whose rate swings sinusoidally around a mean.

    ``rate(t) = rate_per_s * (1 + a * cos(2 pi (t - peak_at_s) / period_s))`` with
    ``a = (r - 1) / (r + 1)`` for the peak-to-trough ratio ``r``, so the mean over a period is
    ``rate_per_s``, the peak is at ``peak_at_s`` (default: half a period, so the trace starts
    in the trough) and ``rate(peak) / rate(trough) == r``.
    """

    rate_per_s: float
    period_s: float = 86400.0
    peak_to_trough: float = 3.0
    peak_at_s: float | None = None

    def __post_init__(self) -> None:
        _positive("rate_per_s", self.rate_per_s)
        _positive("period_s", self.period_s)
        if not (math.isfinite(self.peak_to_trough) and self.peak_to_trough >= 1):
            raise ValueError(f"peak_to_trough must be >= 1, got {self.peak_to_trough!r}")
        if self.peak_at_s is not None and not math.isfinite(self.peak_at_s):
            raise ValueError(f"peak_at_s must be finite, got {self.peak_at_s!r}")

    @property
    def amplitude(self) -> float:
        """Relative amplitude ``a`` of the rate swing, in [0, 1)."""
        return (self.peak_to_trough - 1.0) / (self.peak_to_trough + 1.0)

    def rate_at(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Instantaneous rate in requests per second at time ``t_s``."""
        peak_s = self.period_s / 2 if self.peak_at_s is None else self.peak_at_s
        return self.rate_per_s * (
            1.0 + self.amplitude * np.cos(2 * np.pi * (np.asarray(t_s) - peak_s) / self.period_s)
        )

    def times(
        self, rng: np.random.Generator, *, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        peak_rate = self.rate_per_s * (1.0 + self.amplitude)
        now_s = 0.0
        while True:
            candidates = now_s + np.cumsum(rng.exponential(1.0 / peak_rate, chunk))
            keep = rng.random(chunk) * peak_rate < self.rate_at(candidates)
            now_s = float(candidates[-1])
            yield candidates[keep]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfflineArrivals:
    """Every request queued at time 0: a finite dataset sent at once, as in ``trtllm-bench
    throughput`` or MLPerf's offline scenario (bound the stream with ``count``). Throughput is
    then the run's output over its length, the last request's finish included."""

    def times(
        self, rng: np.random.Generator, *, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        while True:
            yield np.zeros(chunk)


ARRIVALS: Registry[type] = Registry("arrival process")
ARRIVALS.add("poisson", PoissonArrivals)
ARRIVALS.add("gamma", GammaArrivals)
ARRIVALS.add("diurnal", DiurnalArrivals)
ARRIVALS.add("offline", OfflineArrivals)


# ---------------------------------------------------------------- length models


@dataclass(frozen=True, slots=True, kw_only=True)
class LognormalLengths:
    """Independent lognormal input and output lengths, rounded and clipped to ``[1, max]``.

    ``median`` is ``exp(mu)`` of the underlying normal and ``sigma`` its standard deviation in
    log space (0 gives a fixed length).
    """

    input_median: float
    input_sigma: float
    output_median: float
    output_sigma: float
    max_input_tokens: int = 32768
    max_output_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("input_median", "output_median", "max_input_tokens", "max_output_tokens"):
            _positive(name, getattr(self, name))
        for name in ("input_sigma", "output_sigma"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        inputs = _lognormal(rng, self.input_median, self.input_sigma, self.max_input_tokens, n)
        outputs = _lognormal(rng, self.output_median, self.output_sigma, self.max_output_tokens, n)
        return inputs, outputs


def _lognormal(
    rng: np.random.Generator, median: float, sigma: float, maximum: int, n: int
) -> np.ndarray:
    draws = rng.lognormal(math.log(median), sigma, n)
    return np.clip(np.rint(draws), 1, maximum).astype(np.int64)


#: Column pairs (input, output) that :meth:`EmpiricalLengths.from_file` looks for in a CSV.
LENGTH_COLUMNS = (
    ("input_tokens", "output_tokens"),
    ("num_prefill_tokens", "num_decode_tokens"),
    ("ContextTokens", "GeneratedTokens"),
    ("input_length", "output_length"),
)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EmpiricalLengths:
    """(input, output) length pairs drawn jointly, uniformly with replacement."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str = ""
    dropped_invalid: int = field(default=0)  #: rows with 0 tokens left out when loading

    def __post_init__(self) -> None:
        if self.input_tokens.shape != self.output_tokens.shape or self.input_tokens.ndim != 1:
            raise ValueError("input_tokens and output_tokens must be 1-D arrays of the same length")
        if self.input_tokens.size == 0:
            raise ValueError("an empirical length distribution needs at least one row")
        if self.input_tokens.min() < 1 or self.output_tokens.min() < 1:
            raise ValueError("every length must be >= 1 token")

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, self.input_tokens.size, n)
        return self.input_tokens[rows], self.output_tokens[rows]

    @classmethod
    def from_file(cls, path: str | Path, *, drop_invalid: bool = False) -> EmpiricalLengths:
        """Load the pairs of any importable trace, or of a CSV with a column pair of
        :data:`LENGTH_COLUMNS` (e.g. ShareGPT's ``num_prefill_tokens,num_decode_tokens``).

        Rows with 0 tokens are an error naming the line unless ``drop_invalid``.
        """
        try:
            fmt: str | None = detect_format(path)
        except SpecError:
            fmt = None
        inputs, outputs = array("q"), array("q")
        if fmt is not None:
            report = ImportReport()
            for request in import_requests(path, fmt, drop_invalid=drop_invalid, report=report):
                inputs.append(request.input_tokens)
                outputs.append(request.output_tokens)
            dropped = report.dropped_invalid
        else:
            dropped = _read_length_csv(path, inputs, outputs, drop_invalid=drop_invalid)
        if not inputs:
            raise SpecError("no lengths in the file", file=str(path), expected="at least one row")
        return cls(
            input_tokens=np.frombuffer(inputs, dtype=np.int64).copy(),
            output_tokens=np.frombuffer(outputs, dtype=np.int64).copy(),
            source=str(path),
            dropped_invalid=dropped,
        )


def _read_length_csv(path: str | Path, inputs: array, outputs: array, *, drop_invalid: bool) -> int:
    file = str(path)
    with open_text(path) as fh, read_errors(path):
        header = {name.strip().lstrip("\ufeff") for name in next(csv.reader([fh.readline()]), [])}
        pair = next((p for p in LENGTH_COLUMNS if set(p) <= header), None)
        if pair is None:
            raise SpecError(
                "cannot read lengths from the file",
                file=file,
                line=1,
                expected="a trace, or a CSV with columns "
                + " or ".join(",".join(p) for p in LENGTH_COLUMNS),
                found=",".join(sorted(header)),
            )
        fh.seek(0)
        dropped = 0
        for line, (a, b) in read_csv_columns(fh, file, pair):
            n_in = parse_tokens(a, file=file, line=line, column=pair[0])
            n_out = parse_tokens(b, file=file, line=line, column=pair[1])
            if n_in == 0 or n_out == 0:
                if not drop_invalid:
                    raise SpecError(
                        "a row with 0 tokens (pass --drop-invalid to skip such rows)",
                        file=file,
                        line=line,
                        expected="lengths >= 1",
                        found=f"{n_in}, {n_out}",
                    )
                dropped += 1
                continue
            inputs.append(n_in)
            outputs.append(n_out)
    return dropped


# ---------------------------------------------------------------- requests


def make_rng(seed: int) -> np.random.Generator:
    """The generator hwsim uses for ``seed``: ``numpy.random.Generator(PCG64(seed))``."""
    return np.random.Generator(np.random.PCG64(seed))


def generate_requests(
    arrivals: ArrivalProcess,
    lengths: LengthModel,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    tenant: str | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[Request]:
    """Stream synthetic requests, drawing ``chunk`` arrivals and lengths at a time.

    Parameters
    ----------
    arrivals, lengths:
        The arrival process and the length model.
    seed, rng:
        Exactly one: a seed, or a generator to draw from. It is split (``rng.spawn(2)``) into
        independent streams for the arrival times and the lengths.
    duration_s, count:
        Stop before the first arrival at or after ``duration_s``, or after ``count`` requests,
        whichever comes first; with neither the stream is endless.
    tenant:
        Tenant written on every request.
    chunk:
        Draws per vectorised step (the results do not depend on ``count`` or ``duration_s``,
        but do on ``chunk``).
    """
    if (seed is None) == (rng is None):
        raise ValueError("give exactly one of seed and rng")
    if (
        chunk < 1
        or (count is not None and count < 0)
        or (duration_s is not None and not duration_s >= 0)
    ):
        raise ValueError(f"bad limits: chunk={chunk}, count={count}, duration_s={duration_s}")
    arrival_rng, length_rng = (rng if rng is not None else make_rng(seed or 0)).spawn(2)
    return _requests(arrivals, lengths, arrival_rng, length_rng, duration_s, count, tenant, chunk)


def _requests(
    arrivals: ArrivalProcess,
    lengths: LengthModel,
    arrival_rng: np.random.Generator,
    length_rng: np.random.Generator,
    duration_s: float | None,
    count: int | None,
    tenant: str | None,
    chunk: int,
) -> Iterator[Request]:
    made = 0
    for raw in arrivals.times(arrival_rng, chunk=chunk):
        if count is not None and made >= count:
            return
        times = np.round(raw, TIME_DECIMALS)
        inputs, outputs = lengths.sample(length_rng, times.size)
        stop = (
            times.size
            if duration_s is None
            else int(np.searchsorted(times, duration_s, side="left"))
        )
        stop = stop if count is None else min(stop, count - made)
        for i in range(stop):
            yield Request(
                request_id=made + i,
                arrival_s=float(times[i]),
                input_tokens=int(inputs[i]),
                output_tokens=int(outputs[i]),
                tenant=tenant,
            )
        made += stop
        if stop < times.size:
            return
