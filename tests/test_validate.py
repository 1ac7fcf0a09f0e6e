"""`hwsim validate`: error bands of the tier-1 rows, the committed doc is current, the CLI.

The full run (operator, communication, power, memory, end-to-end rows) is computed once per
module (~45 s: the offline replays of the perf-overview rows and the DeepEP routing draws) and shared by the tests.
"""

from __future__ import annotations

import csv
import statistics

import pytest
from click.testing import CliRunner

import hwsim.validate
from hwsim.cli import main
from hwsim.report import validation as report
from hwsim.validate import run_validation
from hwsim.validate.doc import DOC, INTRO, NOTES, footer
from hwsim.validate.shared import REPO

pytestmark = pytest.mark.skipif(not (REPO.parent / "shared" / "validation" / "cases.yaml").is_file(),
                                reason="published validation data (../shared/validation) not present")


@pytest.fixture(scope="module")
def full():
    return run_validation()


def _errors(v, kind, tier=1):
    return [abs(r.error) for r in v.rows if r.kind == kind and r.tier == tier and r.counted]


# Bands set from the current errors (docs/validation.md), with a little room, so a regression
# of the cost model or a drifted hardware file fails here.
BANDS = {  # kind: (max |error| of any tier-1 row, median |error| of the tier-1 rows, rows at least)
    "operator": (0.30, 0.06, 28),
    "communication": (0.25, 0.06, 24),
    "memory": (0.20, 0.12, 6),
}


@pytest.mark.parametrize("kind", sorted(BANDS))
def test_tier1_rows_within_bands(full, kind):
    worst, median, n = BANDS[kind]
    errs = _errors(full, kind)
    assert len(errs) >= n
    assert max(errs) <= worst, [(r.label, r.error) for r in full.rows if r.kind == kind and r.counted]
    assert statistics.median(errs) <= median


def test_operator_and_communication_medians_meet_the_issue_target(full):
    for kind in ("operator", "communication"):
        errs = [abs(r.error) for r in full.rows if r.kind == kind and r.counted]
        assert statistics.median(errs) <= 0.10


def test_power_rows_within_band(full):
    errs = [abs(r.error) for r in full.rows if r.kind == "power" and r.counted]
    assert len(errs) >= 30
    assert statistics.median(errs) <= 0.08
    assert max(errs) <= 0.30


def test_end_to_end_rows_run_and_gaps_are_listed(full):
    e2e = [r for r in full.rows if r.kind == "end-to-end"]
    cases = {r.case for r in e2e}
    assert {"ds-v3-profile-prefill-h800", "trtllm-dsr1-b200-maxtput-fp8kv", "mlperf41-mixtral-8xh100",
            "sglang-dsv3-prefill-4x8h100"} <= cases
    for r in e2e:
        if r.predicted is None:
            assert r.missing
        else:
            assert r.predicted > 0 and r.error is not None
    # the Mixtral offline row is within 20%: hold it there
    mix = next(r for r in e2e if r.case == "mlperf41-mixtral-8xh100" and r.predicted is not None)
    assert abs(mix.error) <= 0.20
    # the simulated MLPerf Server run serves the offered load
    served = next(r for r in e2e if r.label.startswith("output_tokens_per_s vs server_"))
    assert abs(served.error) <= 0.10
    ttft = next(r for r in e2e if r.label.startswith("ttft_mean_s"))
    assert 0 < ttft.predicted < 2000          # ms, within MLPerf's 2 s TTFT limit
    # the DeepSeek H800 prefill profile is a known gap: hwsim is too fast, reported as it is
    ds = next(r for r in e2e if r.case == "ds-v3-profile-prefill-h800")
    assert ds.error > 0.2


# Tier-1 end-to-end rows within 20% today: a cost-model change that pushes one out fails here.
WITHIN_20 = {
    ("trtllm-dsr1-b200-maxtput-bf16kv", "output_tokens_per_s_per_device vs per_gpu_output_throughput"),
    ("trtllm-dsr1-b200-maxtput-bf16kv", "tokens_per_s_per_user vs per_user_output_throughput_with_ctx"),
    ("mlperf41-mixtral-8xh100", "output_tokens_per_s vs offline_tokens_per_s"),
    ("mlperf41-mixtral-8xh100", "output_tokens_per_s vs server_completed_tokens_per_s"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 70B 1000/1000 H200 TP1"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 70B 1000/1000 H100 TP2"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 70B 2048/128 H200 TP1"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 405B 1000/1000 H200 TP8"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 405B 1000/1000 H100 TP8"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 8B 1000/1000 H200 TP1"),
    ("trtllm-perf-overview-dense-contrast", "output_tokens_per_s vs 8B 1000/1000 H100 TP1"),
}


def test_end_to_end_tier1_band(full):
    rows = [r for r in full.rows if r.kind == "end-to-end" and r.tier == 1 and r.counted]
    errs = [abs(r.error) for r in rows]
    assert len(errs) >= 45
    assert statistics.median(errs) <= 0.49   # 46.8% now (45 rows); the issue's target is 10%
    assert max(errs) <= 1.00                 # 97% now (Qwen3-235B 5000/500 on B200, replayed offline)
    by_label = {(r.case, r.label): r.error for r in rows}
    assert set(by_label) >= WITHIN_20
    assert {k: by_label[k] for k in WITHIN_20 if abs(by_label[k]) > 0.20} == {}


def test_every_index_row_beyond_20_percent_explains_its_gap(full):
    from hwsim.validate.endtoend import read_index

    _, entries = read_index(full.index)
    gaps = {}
    for e in entries:
        for m in e.get("metrics") or ():
            if "published" in m and "missing" not in e:
                gaps[(str(e["id"]), str(m["published"]))] = bool(e.get("gap"))
    silent = [(r.case, r.label, round(r.error, 3)) for r in full.rows
              if r.counted and abs(r.error) > 0.20
              for (case, published), has_gap in gaps.items()
              if case == r.case and r.label.endswith(published) and not has_gap]
    assert silent == []


def test_committed_doc_is_current(full):
    text = report.markdown(full.rows, intro=INTRO, notes=NOTES, footer=footer(full))
    assert DOC.read_text(encoding="utf-8") == text, "run 'hwsim validate --write-docs'"


def test_cli_check_and_write_docs(full, monkeypatch, tmp_path):
    monkeypatch.setattr(hwsim.validate, "run_validation", lambda **kw: full)
    res = CliRunner().invoke(main, ["validate", "--check"])
    assert res.exit_code == 0, res.output
    assert "is current" in res.output
    for kind in ("operator", "communication", "end-to-end", "power", "memory"):
        assert f"== {kind} (" in res.output
    # a stale doc fails the check
    stale = tmp_path / "validation.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr("hwsim.validate.doc.DOC", stale)
    res = CliRunner().invoke(main, ["validate", "--check"])
    assert res.exit_code == 1
    res = CliRunner().invoke(main, ["validate", "--write-docs"])
    assert res.exit_code == 0, res.output
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")


def _small_index(tmp_path):
    """The memory entry and one 'missing' entry of the real index (the full end-to-end run is the
    module fixture's; here only the CLI's outputs are under test)."""
    import yaml

    from hwsim.validate.endtoend import DEFAULT_INDEX

    doc = yaml.safe_load(DEFAULT_INDEX.read_text(encoding="utf-8"))
    keep = [e for e in doc["cases"] if e.get("mode") == "memory" or e["id"] == "mlperf41-llama2-70b-dense"]
    for e in keep:
        if "scenario" in e:
            e["scenario"] = str(DEFAULT_INDEX.parent / e["scenario"])
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "cases": keep}), encoding="utf-8")
    return path


def test_cli_prints_table_and_writes_outputs(tmp_path):
    index = _small_index(tmp_path)
    res = CliRunner().invoke(main, ["validate", str(index), "--kind", "memory,end-to-end", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "== memory (6 rows" in res.output
    assert "max_concurrency_per_gpu" in res.output and "-12.2%" in res.output
    assert "(missing: the input/output length distribution" in res.output
    assert (tmp_path / "parity.png").stat().st_size > 1000
    md = (tmp_path / "validation.md").read_text(encoding="utf-8")
    assert "| memory | 6 | 6 |" in md
    with open(tmp_path / "rows.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["kind"] for r in rows} == {"memory", "end-to-end"}
    mem = next(r for r in rows if r["row"] == "free_kv_cache_per_gpu")
    assert float(mem["predicted"]) / float(mem["measured"]) - 1 == pytest.approx(float(mem["error"]), abs=1e-6)


def test_cli_errors_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["validate", "--kind", "operators"])
    assert res.exit_code == 2 and "unknown validation kind 'operators'" in res.output
    res = CliRunner().invoke(main, ["validate", "--kind", "memory", "--shared-dir", str(tmp_path)])
    assert res.exit_code == 2 and "cannot find the published validation data" in res.output
    bad = tmp_path / "cases.yaml"
    bad.write_text("version: 1\ncases:\n  - id: x\n    mode: simulate-all\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["validate", str(bad), "--kind", "memory"])
    assert res.exit_code == 2 and "cases[0].mode" in res.output
