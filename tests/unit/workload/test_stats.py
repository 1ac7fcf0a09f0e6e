"""One-pass trace statistics against hand-computed values and numpy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hwsim.workload import stats as stats_module
from hwsim.workload.importers import import_requests
from hwsim.workload.stats import trace_stats
from hwsim.workload.trace import Request, iter_requests

REPO = Path(__file__).resolve().parents[3]


def _request(
    i: int, t: float, n_in: int = 100, n_out: int = 10, blocks: tuple[int, ...] = ()
) -> Request:
    return Request(
        request_id=i, arrival_s=t, input_tokens=n_in, output_tokens=n_out, prefix_blocks=blocks
    )


def test_hand_computed_small_trace() -> None:
    s = trace_stats([_request(0, 0.0, 10, 1), _request(1, 1.0, 20, 2), _request(2, 3.0, 60, 3)])
    assert (s.count, s.first_arrival_s, s.span_s) == (3, 0.0, 3.0)
    assert s.mean_rate_per_s == pytest.approx(2 / 3)
    # gaps 1 and 2: mean 1.5, sample sd 0.7071
    assert s.interarrival_cv == pytest.approx(math.sqrt(0.5) / 1.5)
    # per-second bins [0,1) [1,2) [2,3) [3,4): 1, 1, 0, 1 -> mean 0.75, sample sd 0.5
    assert s.per_second_cv == pytest.approx(0.5 / 0.75)
    assert s.peak_per_second == 1
    assert s.input_tokens is not None
    assert s.output_tokens is not None
    assert (s.input_tokens.total, s.input_tokens.mean, s.input_tokens.p50) == (90, 30.0, 20.0)
    assert s.input_tokens.p90 == pytest.approx(52.0)  # 20 + 0.8 * (60 - 20)
    assert (s.output_tokens.min, s.output_tokens.max) == (1, 3)
    assert s.prefix_reuse_fraction is None
    assert s.prefix_blocks == 0


def test_percentiles_match_numpy_across_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "_FLUSH", 97)
    rng = np.random.default_rng(0)
    inputs = rng.integers(1, 5000, 3001)
    outputs = np.rint(rng.lognormal(4, 1, 3001)).astype(int) + 1
    s = trace_stats(
        _request(i, float(i), int(a), int(b))
        for i, (a, b) in enumerate(zip(inputs, outputs, strict=True))
    )
    for data, got in ((inputs, s.input_tokens), (outputs, s.output_tokens)):
        assert got is not None
        assert [got.p50, got.p90, got.p99] == pytest.approx(list(np.percentile(data, [50, 90, 99])))
        assert got.mean == pytest.approx(data.mean())
        assert (got.min, got.max, got.total) == (data.min(), data.max(), data.sum())


def test_interarrival_cv_matches_numpy() -> None:
    times = np.cumsum(np.random.default_rng(1).gamma(0.25, 1.0, 5000))
    s = trace_stats(_request(i, float(t)) for i, t in enumerate(times))
    gaps = np.diff(times)
    assert s.interarrival_cv == pytest.approx(np.std(gaps, ddof=1) / gaps.mean())
    counts = np.bincount(np.floor(times).astype(int) - int(np.floor(times[0])))
    assert s.per_second_cv == pytest.approx(np.std(counts, ddof=1) / counts.mean())
    assert s.peak_per_second == counts.max()


def test_prefix_reuse_counts_blocks_seen_in_earlier_requests() -> None:
    s = trace_stats(
        [
            _request(0, 0, 1024, 1, (0, 1)),
            _request(1, 1, 1024, 1, (0, 2)),
            _request(2, 2, 1536, 1, (0, 1, 3)),
            _request(3, 3),
        ]
    )
    # request 1 reuses block 0; request 2 reuses 0 and 1: 3 of 7 blocks
    assert s.prefix_blocks == 7
    assert s.prefix_reuse_fraction == pytest.approx(3 / 7)


def test_empty_and_single_request_traces() -> None:
    empty = trace_stats([])
    assert empty.count == 0
    assert empty.input_tokens is None
    assert math.isnan(empty.mean_rate_per_s)
    json.dumps(empty.to_dict(), allow_nan=False)  # NaN became null
    one = trace_stats([_request(0, 5.0)])
    assert one.span_s == 0.0
    assert math.isnan(one.interarrival_cv)
    assert one.peak_per_second == 1
    assert one.to_dict()["mean_rate_per_s"] is None


def test_bundled_mooncake_slice_has_prefix_reuse() -> None:
    s = trace_stats(iter_requests(REPO / "workloads" / "traces" / "mooncake-conv-5min.jsonl"))
    assert s.count == 918
    assert s.prefix_reuse_fraction is not None
    assert 0.1 < s.prefix_reuse_fraction < 0.9


def test_full_azure_conv_matches_published_summary(shared_data: Path) -> None:
    path = shared_data / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    s = trace_stats(import_requests(path))
    # ../shared/data/README.md: 5.53 req/s; input mean 1,155 / p99 4,142; output mean 211 / p99 601
    assert s.count == 19_366
    assert s.mean_rate_per_s == pytest.approx(5.53, abs=0.005)
    assert s.input_tokens is not None
    assert s.output_tokens is not None
    assert (round(s.input_tokens.mean), s.input_tokens.p99) == (1155, 4142)
    assert (round(s.output_tokens.mean), s.output_tokens.p99) == (211, 601)
