"""write_outputs(): the files of a run, byte-identical on a rerun; summary_text()."""

from __future__ import annotations

import json

import pytest

from hwsim.errors import SpecError
from hwsim.report.summary import summarize
from hwsim.report.write import summary_text, write_outputs

from .conftest import make_result


def test_writes_every_file(result, tmp_path):
    summary = summarize(result, slo_ttft_s=0.6, version="0")
    written = write_outputs(result, tmp_path / "out", summary_dict=summary, requests_format="parquet",
                            plots=True, timeline=True)
    rel = sorted(str(p.relative_to(tmp_path / "out")) for p in written)
    assert rel == sorted(["summary.json", "requests.parquet", "timeseries.csv", "timeline.json",
                          "plots/latency_cdf.png", "plots/throughput.png", "plots/kv_use.png",
                          "plots/power.png", "plots/expert_load.png", "plots/link_traffic.png"])
    written_summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    expected = {**summary, "run": {k: v for k, v in summary["run"].items()
                                   if k not in ("wall_time_s", "events_per_s", "speedup")}}
    assert written_summary == expected  # wall-clock fields are printed, not written
    header = (tmp_path / "out" / "timeseries.csv").read_text().splitlines()[0]
    assert header == ("time_s,output_tokens_per_s,input_tokens_per_s,running_seqs,waiting_seqs,"
                      "kv_use_fraction,power_w_per_device")


def test_outputs_are_byte_identical_on_rerun(tmp_path):
    files = {}
    for run in ("a", "b"):
        res = make_result()
        write_outputs(res, tmp_path / run, summary_dict=summarize(res, version="0"))
        files[run] = {p.name: p.read_bytes() for p in (tmp_path / run).iterdir()}
    assert files["a"] == files["b"] and sorted(files["a"]) == ["requests.csv", "summary.json", "timeseries.csv"]


def test_bad_format_is_an_input_error(result, tmp_path):
    with pytest.raises(SpecError, match="unknown requests format"):
        write_outputs(result, tmp_path, summary_dict={}, requests_format="xlsx")
    assert list(tmp_path.iterdir()) == []


def test_summary_text(result):
    text = summary_text(summarize(result, slo_ttft_s=0.6, slo_tpot_s=0.5, version="0"))
    lines = text.splitlines()
    assert 10 <= len(lines) <= 14
    assert lines[0].startswith("requests     3 finished, 1 unfinished, 1 rejected")
    assert "TTFT         p50 500 ms, p99" in text
    assert "0.5 req/s meet TTFT <= 600 ms, TPOT <= 500 ms (67% of measured requests)" in text
    assert "3,846 USD per million output tokens" in text
    assert "10.0x faster than real time" in text


def test_summary_text_tolerates_nulls():
    res = make_result(requests=[], steps=[], rejections=(), pools=())
    text = summary_text(summarize(res, version="0"))
    assert "no SLO given" in text and "no price" in text
