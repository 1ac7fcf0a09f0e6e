"""The sweep report (hwsim/report/sweep.py): Pareto fronts, best per SLO, files."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.report.sweep import (
    TRADEOFFS,
    SweepTable,
    best_per_slo,
    error_groups,
    pareto_front,
    read_results,
    sweep_markdown,
    write_sweep_report,
)
from hwsim.sweep.store import Layout, ResultStore

METRICS = ("output_tokens_per_s_per_device", "tokens_per_s_per_user", "ttft_s", "tpot_s",
           "usd_per_million_output_tokens")


def _dominated(p, q, maximize):
    """Whether q dominates p."""
    better = [(qi >= pi) if m else (qi <= pi) for pi, qi, m in zip(p, q, maximize, strict=True)]
    strict = [(qi > pi) if m else (qi < pi) for pi, qi, m in zip(p, q, maximize, strict=True)]
    return all(better) and any(strict)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=25),
       st.tuples(st.booleans(), st.booleans()))
def test_pareto_front_matches_brute_force(points, maximize):
    front = pareto_front(points, maximize)
    expected = {i for i, p in enumerate(points)
                if not any(_dominated(p, q, maximize) for q in points)
                and points.index(p) == i}  # of identical points the first is kept
    assert set(front) == expected
    xs = [points[i][0] for i in front]
    assert xs == sorted(xs)  # ordered along x


def _row(i, system, tput, tpot, usd, status="ok", error=""):
    return {"index": i, "key": f"k{i}", "nodes.system": system, "status": status, "error": error,
            "output_tokens_per_s_per_device": tput, "tokens_per_s_per_user": None if tpot is None else 1 / tpot,
            "ttft_s": 0.5, "tpot_s": tpot, "usd_per_million_output_tokens": usd, "wall_s": 0.01}


ROWS = [
    _row(0, "A", 1000.0, 0.100, 2.0),
    _row(1, "A", 600.0, 0.040, 3.0),
    _row(2, "B", 1500.0, 0.080, None),     # unpriced: left out of the cost front
    _row(3, "B", 500.0, 0.050, 5.0),       # dominated on both fronts
    _row(4, "B", None, None, None, status="error", error="x does not fit: short by 2.5 GB"),
    _row(5, "A", None, None, None, status="error", error="x does not fit: short by 7 GB"),
]


def _table(rows=ROWS):
    return SweepTable(rows, ("nodes.system",), METRICS, ((("nodes.system",), None),), {"name": "t", "mode": "estimate"})


def test_fronts_skip_failed_and_missing_values():
    speed, cost = TRADEOFFS
    from hwsim.report.sweep import front_rows

    rows, front = front_rows(_table(), speed)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert sorted(r["index"] for r in front) == [1, 2]
    rows, front = front_rows(_table(), cost)
    assert [r["index"] for r in rows] == [0, 1, 3]
    assert sorted(r["index"] for r in front) == [0, 1]


def test_best_per_slo():
    out = best_per_slo(_table(), [{}, {"tpot": 0.06}, {"tpot": 0.01}])
    by = {(tuple(e["slo"].items()), e["objective"].split()[0]): e["row"] for e in out}
    assert by[((), "max")]["index"] == 2
    assert by[((), "min")]["index"] == 0
    assert by[((("tpot", 0.06),), "max")]["index"] == 1
    assert by[((("tpot", 0.06),), "min")]["index"] == 1
    assert by[((("tpot", 0.01),), "max")] is None


def test_errors_are_grouped_by_message_shape():
    assert error_groups(ROWS) == [(2, "x does not fit: short by 2.5 GB")]


def test_markdown_lists_fronts_best_and_errors():
    text = sweep_markdown(_table(), [{}, {"tpot": 0.06}], {})
    assert "6 configurations: 4 ok, 2 failed" in text
    assert "| TPOT <= 60 ms | max output tokens/s per device | system=A |" in text
    assert "2 of 4 configurations are on the front" in text
    assert "| 2 | x does not fit: short by 2.5 GB |" in text


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_results_files_round_trip_and_report_writes_files(tmp_path, fmt):
    layout = Layout.infer(["nodes.system"], ROWS, METRICS, {"name": "t", "mode": "estimate",
                                                            "axes": [{"paths": ["nodes.system"], "name": None}]})
    store = ResultStore(tmp_path / "run", layout, fmt)
    store.write_results(ROWS)
    table = read_results(tmp_path / "run")
    assert table.inputs == ("nodes.system",)
    assert table.metrics == METRICS
    got = [r["usd_per_million_output_tokens"] for r in table.rows]
    assert [None if g is None or (isinstance(g, float) and math.isnan(g)) else g for g in got] == \
        [2.0, 3.0, None, 5.0, None, None]
    written = write_sweep_report(tmp_path / "run", tmp_path / "report", [{"ttft": 1.0, "tpot": 0.06}])
    names = sorted(p.name for p in written)
    assert names == ["pareto-cost-vs-tpot.png", "pareto-throughput-vs-speed.png", "report.md"]
    assert all((tmp_path / "report" / n).stat().st_size > 0 for n in names)
    assert "![Cost vs time per output token](pareto-cost-vs-tpot.png)" in (tmp_path / "report" / "report.md").read_text()
