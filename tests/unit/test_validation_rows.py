"""Validation rows: signed error, medians, kinds, the published-data locator."""

from __future__ import annotations

import pytest

from hwsim.errors import SpecError
from hwsim.report.validation import markdown, text_table
from hwsim.validate import KINDS, ValidationRow, by_kind, median_abs_error, parse_kinds
from hwsim.validate.shared import find_shared_dir


def row(kind="operator", measured=100.0, predicted=110.0, **kw):
    return ValidationRow(kind=kind, case="c", label="r", unit="x", measured=measured, predicted=predicted, **kw)


def test_signed_error_and_median():
    assert row(predicted=110.0).error == pytest.approx(0.10)
    assert row(predicted=80.0).error == pytest.approx(-0.20)
    rows = [row(predicted=p) for p in (90.0, 105.0, 130.0)] + [row(predicted=500.0, modelled=False)]
    med, n = median_abs_error(rows)
    assert n == 3 and med == pytest.approx(0.10)


def test_missing_rows_need_a_feature_and_are_not_counted():
    with pytest.raises(ValueError, match="missing feature"):
        row(predicted=None)
    r = row(predicted=None, missing="simulate mode")
    assert r.error is None and not r.counted
    assert median_abs_error([r]) == (None, 0)
    with pytest.raises(ValueError, match="unknown validation kind"):
        row(kind="kernels")


def test_kinds_parse_and_group_in_order():
    assert parse_kinds(None) == frozenset(KINDS)
    assert parse_kinds("memory, operator") == {"memory", "operator"}
    with pytest.raises(SpecError, match="unknown validation kind"):
        parse_kinds("operator,gpu")
    groups = by_kind([row(kind="memory"), row(kind="operator"), row(kind="memory")])
    assert list(groups) == ["operator", "memory"] and len(groups["memory"]) == 2


def test_tables_show_signed_errors_and_medians():
    rows = [row(predicted=90.0), row(predicted=120.0, tier=1), row(kind="end-to-end", predicted=None, missing="x")]
    text = text_table(rows)
    assert "-10.0%" in text and "+20.0%" in text and "(missing: x)" in text
    assert "operator: median |error| 15.0% over 2 rows; tier 1: 20.0% over 1 (worst 20.0%)" in text
    md = markdown(rows)
    assert "| operator | 2 | 2 | 15.0% | 1 | 20.0% | 20.0% | 0 |" in md
    assert "| end-to-end | 1 | 0 | - | 0 | - | - | 1 |" in md


def test_shared_dir_missing_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot find the published validation data"):
        find_shared_dir(tmp_path)
    (tmp_path / "cases.yaml").write_text("cases: []\n", encoding="utf-8")
    assert find_shared_dir(tmp_path) == tmp_path


def _offline_entry(**kw):
    entry = {"id": "trtllm-perf-overview-dense-contrast",
             "scenario": "scenarios/trtllm-perf-overview-llama8b-h100.yaml", "mode": "simulate", "tier": 1,
             "scheduler": "trtllm-bench",
             "workload": {"input_tokens": 256, "output_tokens": 32, "requests": 300},
             "metrics": [{"ours": "output_tokens_per_s", "published": "8B 1000/1000 H100 TP1"}]}
    return entry | kw


def test_offline_rows_replay_the_queued_dataset_to_its_last_token():
    """An index row with ``requests`` queues that many requests at time 0 in the simulator and
    reports output tokens over the run; trtllm-bench's limits bound the batch."""
    from hwsim.io.scenario import load_scenario
    from hwsim.sim.run import simulate
    from hwsim.validate.endtoend import DEFAULT_INDEX, case_rows
    from hwsim.validate.shared import SharedData
    from hwsim.validate.trtllm_bench import with_bench_limits
    from hwsim.workload.request import Request

    try:
        shared = SharedData.locate()
    except SpecError:
        pytest.skip("published validation data (../shared/validation) not present")
    folder = DEFAULT_INDEX.parent
    (got,) = case_rows(_offline_entry(), folder, shared)
    s = with_bench_limits(load_scenario(folder / "scenarios/trtllm-perf-overview-llama8b-h100.yaml"),
                          input_tokens=256, output_tokens=32)
    assert s.deployment.pools[0].scheduler.max_seqs == 3840   # 3,7xx requests of 288 tokens fit, rounded up
    res = simulate(s, [Request(request_id=i, arrival_s=0.0, input_tokens=256, output_tokens=32)
                       for i in range(300)], seed=0)
    assert got.predicted == pytest.approx(300 * 32 / res.requests["finish_s"].max(), rel=1e-9)
    assert got.measured == 15220 and got.counted
    with pytest.raises(SpecError, match="unknown scheduler limits"):
        case_rows(_offline_entry(scheduler="vllm"), folder, shared)
