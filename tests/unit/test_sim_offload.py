"""The simulator with an expert cache: exact reproduction when everything fits, monotone in the
cache size, flash slower than DRAM, offload statistics in the summary and on the links."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from test_offload_spec import write

from hwsim.cli import main
from hwsim.io.scenario import load_scenario
from hwsim.report.summary import summarize
from hwsim.report.tables import write_requests
from hwsim.sim.routing import imbalance_sampler_factory
from hwsim.sim.run import simulate
from hwsim.workload.request import Request


def scenario(tmp_path, offload, *, name, replicas=1, max_seqs=1, model="olmoe-1b-7b"):
    path, cat = write(tmp_path, offload or "{hbm_experts: 1}", name=name, max_seqs=max_seqs, model=model)
    text = path.read_text()
    if offload is None:
        text = text.replace("  experts:\n    offload: {hbm_experts: 1}\n", "")
    text = text.replace("- name: main\n", f"- name: main\n      replicas: {replicas}\n")
    path.write_text(text)
    return load_scenario(path, [cat])


def trace(n=12, rate=2.0, seed=3, inp=(20, 300), out=(4, 40)):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n))
    return [Request(request_id=i, arrival_s=float(t[i]), input_tokens=int(rng.integers(*inp)),
                    output_tokens=int(rng.integers(*out))) for i in range(n)]


def run(sc, reqs, seed=7):
    return simulate(sc, reqs, seed=seed, imbalance_sampler_factory=imbalance_sampler_factory(sc))


def comparable(result) -> dict:
    s = summarize(result, version="test")
    for key in ("offload", "run", "inputs"):
        s.pop(key, None)
    return s


def test_unbounded_cache_reproduces_the_run_without_offload_exactly(tmp_path):
    reqs = trace(24, rate=6.0)
    plain = run(scenario(tmp_path, None, name="plain", replicas=2, max_seqs=4), reqs)
    full = run(scenario(tmp_path, "{hbm_experts: 64, prefetch: {accuracy: 0.5}, cpu_compute: auto}",
                        name="full", replicas=2, max_seqs=4), reqs)
    assert full.offload is not None and plain.offload is None
    st = full.offload.steps
    assert st["misses"].sum() == 0 and st["hits"].sum() > 0 and st["offload_s"].sum() == 0.0
    assert json.dumps(comparable(plain), sort_keys=True) == json.dumps(comparable(full), sort_keys=True)
    a, b = write_requests(plain, tmp_path / "a.csv"), write_requests(full, tmp_path / "b.csv")
    assert a.read_bytes() == b.read_bytes()
    for key in plain.steps:
        np.testing.assert_array_equal(plain.steps[key], full.steps[key])
    assert plain.link_bytes == full.link_bytes


def test_a_smaller_cache_is_never_faster(tmp_path):
    reqs = trace(6, rate=0.5)
    times, misses = [], []
    for n in (64, 32, 16, 8, 2):
        res = run(scenario(tmp_path, f"{{hbm_experts: {n}, policy: lru}}", name=f"m{n}"), reqs)
        assert (res.requests["status"] == 0).all()
        times.append(float(res.requests["finish_s"].sum()))
        misses.append(int(res.offload.steps["misses"].sum()))
    assert misses[0] == 0
    assert all(a <= b for a, b in zip(misses, misses[1:], strict=False)), misses
    assert all(a <= b for a, b in zip(times, times[1:], strict=False)), times
    assert times[-1] > times[0]


def test_flash_backing_is_slower_than_dram_and_windowing_helps(tmp_path):
    reqs = trace(4, rate=0.5)
    t = {}
    for name, off in (("dram", "{hbm_experts: 8}"), ("flash", "{hbm_experts: 8, backing: flash}"),
                      ("window", "{hbm_experts: 8, backing: flash, flash: {window_tokens: 8}}")):
        res = run(scenario(tmp_path, off, name=name), reqs)
        t[name] = float(res.sim_time_s)
        if name != "dram":
            assert res.offload.steps["flash_bytes"].sum() > 0
    assert t["dram"] < t["window"] < t["flash"]


def test_offload_statistics_reach_the_summary_and_the_links(tmp_path):
    reqs = trace(6, rate=1.0)
    res = run(scenario(tmp_path, "{hbm_experts: 8, backing: flash}", name="stats"), reqs)
    s = summarize(res, version="test")["offload"]
    st = res.offload.steps
    assert s["hits"] + s["misses"] == int(st["hits"].sum() + st["misses"].sum())
    assert 0.0 < s["hit_rate"] < 1.0
    assert 0.0 < s["offload_time_share"] < 1.0
    assert s["cached_experts_per_device"] == [8 * 16]
    assert res.link_bytes[("n0.host", "n0.d0")] == pytest.approx(s["fetched_bytes"])
    assert res.link_bytes[("n0.nvme", "n0.host")] == pytest.approx(s["flash_bytes"])
    # every step of the run has one offload row, and the added time is in the step durations
    assert len(st["start_s"]) == len(res.steps["start_s"])
    assert st["offload_s"].sum() <= res.steps["duration_s"].sum()


def test_simulate_command_writes_the_offload_section(tmp_path):
    path, cat = write(tmp_path, "{hbm_experts: 16, cpu_compute: auto}", name="cli")
    tr = tmp_path / "t.jsonl"
    tr.write_text("".join(json.dumps({"arrival_s": 0.5 * i, "input_tokens": 64, "output_tokens": 8}) + "\n"
                          for i in range(3)))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["simulate", str(path), str(tr), "-o", str(out), "--catalog", str(cat), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["offload"]["policy"] == "lru" and summary["offload"]["misses"] > 0
