"""``hwsim sweep``: end-to-end runs, failures, resume after SIGKILL, executors agree, report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from hwsim.cli import main

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"
TRACE = REPO / "workloads" / "traces" / "azure-conv-10min.jsonl"

# 4 x 3 x 3 = 36 estimate configurations; ep = 7 does not divide DeepSeek-V3's 256 experts (9 fail)
GRID = """
    axes:
      deployment.pools[0].parallelism.ep: [8, 16, 7, 32]
      deployment.pools[0].scheduler.max_seqs: [64, 256, 1024]
      deployment.pools[0].scheduler.chunked_prefill: [2048, 4096, 8192]
    """


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_spec(folder: Path, body: str = GRID, name: str = "sweep.yaml") -> Path:
    head = f"version: 1\nkind: sweep\nname: t\nbase: {{cluster: {CLUSTER}, trace: {TRACE}}}\n"
    path = folder / name
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def rows(results: Path):
    """The deterministic content of a results file (everything but the wall-time column)."""
    return pq.read_table(results).drop(["wall_s"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of GRID (in process)."""
    folder = tmp_path_factory.mktemp("reference")
    res = cli("sweep", "run", write_spec(folder), "-o", folder / "out", "-w", 1, "--quiet")
    assert res.exit_code == 0, res.output
    return folder / "out" / "results.parquet"


def test_a_run_writes_one_row_per_configuration_and_records_failures(reference):
    table = pq.read_table(reference).to_pylist()
    assert [r["index"] for r in table] == list(range(36))
    failed = [r for r in table if r["status"] == "error"]
    assert {r["deployment.pools[0].parallelism.ep"] for r in failed} == {7}
    assert len(failed) == 9
    assert all("ep" in r["error"] and r["output_tokens_per_s_per_device"] is None for r in failed)
    ok = [r for r in table if r["status"] == "ok"]
    assert all(r["output_tokens_per_s_per_device"] > 0 and r["tpot_s"] > 0 for r in ok)
    # more running sequences never lowers throughput per device at equal parallelism
    for ep in (8, 16, 32):
        tput = [r["output_tokens_per_s_per_device"] for r in ok
                if r["deployment.pools[0].parallelism.ep"] == ep and r["deployment.pools[0].scheduler.chunked_prefill"] == 4096]
        assert tput == sorted(tput)
    assert len(list((reference.parent / "parts").glob("part-*.parquet"))) >= 1


def test_a_bad_axis_path_fails_before_any_run_naming_the_path(tmp_path):
    spec = write_spec(tmp_path, "axes:\n  deployment.pools[0].paralelism.ep: [8, 16]\n")
    res = cli("sweep", "run", spec, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert "deployment.pools[0].paralelism.ep" in res.output
    assert "did you mean 'parallelism'" in res.output
    assert not (tmp_path / "out").exists()


def test_shorthand_resume_and_refusal(tmp_path, reference):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    first = cli("sweep", spec, "-o", out, "-w", 1, "--quiet", "--format", "csv")  # `hwsim sweep SPEC` = run
    assert first.exit_code == 0, first.output
    assert "36 configurations (estimate): 27 ok, 9 failed" in first.output
    again = cli("sweep", "run", spec, "-o", out, "-w", 1, "--quiet")
    assert again.exit_code == 2
    assert "already holds sweep results" in again.output
    resumed = cli("sweep", "run", spec, "-o", out, "-w", 1, "--quiet", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "36 reused from an earlier run" in resumed.output
    assert rows(out / "results.parquet").equals(rows(reference))


def test_sigkill_midway_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "hwsim", "sweep", "run", str(spec), "-o", str(out), "-w", "1", "--chunk", "1",
           "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list((out / "parts").glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    parts = list((out / "parts").glob("part-*.parquet"))
    assert 1 <= len(parts) < 36
    assert not (out / "results.parquet").exists()
    res = cli("sweep", "run", spec, "-o", out, "-w", 1, "--quiet", "--resume")
    assert res.exit_code == 0, res.output
    assert "reused from an earlier run" in res.output
    assert not list(out.rglob(".*.tmp"))
    assert rows(out / "results.parquet").equals(rows(reference))


def test_process_pool_gives_the_same_rows(tmp_path, reference):
    res = cli("sweep", "run", write_spec(tmp_path), "-o", tmp_path / "pool", "-w", 2, "--quiet")
    assert res.exit_code == 0, res.output
    assert "on 2 worker processes" in res.output
    assert rows(tmp_path / "pool" / "results.parquet").equals(rows(reference))


def test_dask_gives_the_same_rows(tmp_path, reference):
    pytest.importorskip("distributed")
    res = cli("sweep", "run", write_spec(tmp_path), "-o", tmp_path / "dask", "-w", 2, "--backend", "dask",
              "--quiet")
    assert res.exit_code == 0, res.output
    assert "Dask, 2 workers on a LocalCluster" in res.output
    assert rows(tmp_path / "dask" / "results.parquet").equals(rows(reference))


SIMULATE = """
    mode: simulate
    simulate: {max_requests: 40}
    slo: {ttft: 2 s, tpot: 100 ms}
    axes:
      deployment.overlap: [none, two-microbatch]
    metrics: [output_tokens_per_s_per_device, tpot_s, goodput_requests_per_s, latency.ttft_s.p99]
    """


def test_simulate_mode_in_process_and_on_a_pool(tmp_path):
    spec = write_spec(tmp_path, SIMULATE)
    one = cli("sweep", "run", spec, "-o", tmp_path / "one", "-w", 1, "--quiet")
    two = cli("sweep", "run", spec, "-o", tmp_path / "two", "-w", 2, "--quiet")
    assert one.exit_code == 0, one.output
    assert two.exit_code == 0, two.output
    table = rows(tmp_path / "one" / "results.parquet")
    assert table.equals(rows(tmp_path / "two" / "results.parquet"))
    got = table.to_pylist()
    assert [r["status"] for r in got] == ["ok", "ok"]
    assert all(r["goodput_requests_per_s"] > 0 and r["latency.ttft_s.p99"] > 0 for r in got)
    assert got[0]["tpot_s"] != got[1]["tpot_s"]


def test_unknown_simulate_metric_is_refused(tmp_path):
    spec = write_spec(tmp_path, SIMULATE.replace("latency.ttft_s.p99", "latency.ttft_s.p98"))
    res = cli("sweep", "run", spec, "-o", tmp_path / "out")
    assert res.exit_code == 2
    assert "metrics[3]: unknown simulate metric 'latency.ttft_s.p98'" in res.output


def test_report_command(tmp_path, reference):
    res = cli("sweep", "report", reference.parent, "-o", tmp_path / "rep", "--slo", "ttft=2s,tpot=100ms")
    assert res.exit_code == 0, res.output
    assert "SLO TTFT <= 2000 ms, TPOT <= 100 ms, max output tokens/s per device: ep=" in res.output
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == [
        "pareto-cost-vs-tpot.png", "pareto-throughput-vs-speed.png", "report.md"]
    bad = cli("sweep", "report", reference.parent, "-o", tmp_path / "rep2", "--color-by", "nope")
    assert bad.exit_code == 2


def test_the_example_sweep_plans_and_its_first_configurations_run(tmp_path):
    from hwsim.sweep.run import plan_sweep, run_sweep

    plan = plan_sweep(REPO / "examples" / "sweeps" / "ep-vs-tp.yaml")
    assert len(plan.configs) == 96
    assert plan.job.input_tokens == 1147 and plan.job.output_tokens == 260  # the trace's mean lengths
    first = type(plan)(spec=plan.spec, configs=plan.configs[:2], job=plan.job, layout=plan.layout)
    outcome = run_sweep(first, tmp_path / "out")
    assert (outcome.configurations, outcome.ok) == (2, 2)


def test_repeated_configurations_run_once(tmp_path):
    from hwsim.sweep.run import plan_sweep, run_sweep

    spec = write_spec(tmp_path, """
        combine: random
        samples: 6
        seed: 1
        axes:
          deployment.pools[0].scheduler.max_seqs: [64, 256]
        """)
    plan = plan_sweep(spec)
    keys = [c.key for c in plan.configs]
    assert len(set(keys)) < len(keys)
    outcome = run_sweep(plan, tmp_path / "out")
    parts = [r for p in sorted((tmp_path / "out" / "parts").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    assert sorted(r["key"] for r in parts) == sorted(set(keys))
    table = rows(outcome.results).to_pylist()
    assert [r["key"] for r in table] == keys
    by_key = {}
    for r in table:
        same = {k: v for k, v in r.items() if k != "index"}
        assert by_key.setdefault(r["key"], same) == same
