"""The Chrome/Perfetto trace: valid JSON, one complete event per step, truncation noted."""

from __future__ import annotations

import json

import pytest

from hwsim.report.timeline import write_timeline

from .conftest import STEPS


def _load(path):
    return json.loads(path.read_text())


def test_one_event_per_step(result, tmp_path):
    trace = _load(write_timeline(result, tmp_path / "timeline.json"))
    steps = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(steps) == len(STEPS)
    first = min(steps, key=lambda e: e["ts"])
    assert first["ts"] == pytest.approx(0.1e6) and first["dur"] == pytest.approx(0.4e6)
    assert first["args"] == {"prefill_tokens": 100, "decode_seqs": 0, "kv_blocks_used": 7, "power_w": 500.0}
    assert first["name"] == "prefill"
    assert {(e["pid"], e["tid"]) for e in steps} == {(1, 1), (1, 2)}  # one track per replica
    names = {e["args"]["name"] for e in trace["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == {"replica 0", "replica 1"}
    assert trace["otherData"]["truncated"] is False


def test_truncation_is_noted(result, tmp_path):
    trace = _load(write_timeline(result, tmp_path / "timeline.json", max_events=2))
    steps = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert [e["ts"] for e in steps] == pytest.approx([0.1e6, 0.5e6])  # the earliest kept
    other = trace["otherData"]
    assert other["truncated"] is True and other["steps_written"] == 2 and other["steps_total"] == 5
    assert "2 of 5" in other["note"]
    assert any(e["ph"] == "i" and "3 later steps" in e["name"] for e in trace["traceEvents"])
