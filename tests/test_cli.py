"""The command line: thin, exit code 2 and one clear line on bad input, never a traceback."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim import __version__
from hwsim.cli import main
from hwsim.io.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version():
    res = run("--version")
    assert res.exit_code == 0 and __version__ in res.output


@pytest.mark.parametrize("kind", ["device", "node", "cluster", "model", "deployment", "trace"])
def test_schema_prints_json(kind):
    res = run("schema", kind)
    assert res.exit_code == 0
    assert json.loads(res.output)["$schema"].startswith("https://json-schema.org/")


def test_hardware_list_and_show():
    res = run("hardware", "list")
    assert res.exit_code == 0 and "H100-SXM" in res.output and "DGX-H100" in res.output
    res = run("hardware", "show", "h100")
    assert res.exit_code == 0 and "bf16 989 TFLOP/s" in res.output and "80 GB" in res.output
    res = run("hardware", "show", "4x-DGX-H100")
    assert res.exit_code == 0 and "32 devices" in res.output


def test_hardware_show_unknown_name_suggests():
    res = run("hardware", "show", "H100-SMX")
    assert res.exit_code == 2
    assert "did you mean 'H100-SXM'" in res.output
    assert "Traceback" not in res.output


def test_hardware_validate_good_and_bad(datadir):
    res = run("hardware", "validate", str(datadir / "good_node.yaml"), str(datadir / "good_cluster.yaml"))
    assert res.exit_code == 0 and res.output.count("ok:") == 2
    res = run("hardware", "validate", str(datadir / "good_node.yaml"), str(datadir / "bad_device_typo.yaml"))
    assert res.exit_code == 2
    assert "memory[0].bandwith" in res.output and "did you mean 'bandwidth'" in res.output
    assert "Traceback" not in res.output


def test_check_example_scenario():
    res = run("check", str(REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"))
    assert res.exit_code == 0, res.output
    assert "ep=32" in res.output and "ok:" in res.output


def test_check_missing_file_is_exit_2():
    res = run("check", "no-such-cluster.yaml")
    assert res.exit_code == 2 and "file not found" in res.output


def test_estimate_writes_json_and_plot(tmp_path):
    out, png = tmp_path / "est.json", tmp_path / "roof.png"
    res = run("estimate", str(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"), "--input", "512",
              "--output", "128", "--json", str(out), "--plot", str(png))
    assert res.exit_code == 0, res.output
    assert "TPOT" in res.output and "USD per million output tokens" in res.output
    data = json.loads(out.read_text())
    assert data["input_tokens"] == 512 and data["pools"][0]["ops"]
    assert png.stat().st_size > 10_000


def test_estimate_closed_loop_concurrency(tmp_path):
    out = tmp_path / "est.json"
    res = run("estimate", str(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"), "--input", "512",
              "--output", "128", "--concurrency", "16", "--json", str(out))
    assert res.exit_code == 0, res.output
    assert "16 closed-loop users" in res.output
    data = json.loads(out.read_text())
    assert data["concurrency"] == 16 and data["pools"][0]["batch"] == 16
    assert data["tokens_per_s_per_user"] == pytest.approx(data["output_tokens_per_s"] / 16)
    assert data["request_latency_s"] == pytest.approx(16 / data["requests_per_s"])
    bad = run("estimate", str(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"), "--concurrency", "0")
    assert bad.exit_code == 2


@pytest.mark.parametrize(("example", "old", "new", "expected"), [
    ("h100-qwen3-30b-a3b", "max_seqs: 128", "max_seqs: 128, kv_reservation: eager",
     ("scheduler.kv_reservation", "eager", "on-demand")),
    ("dgx-h100-deepseek-v3", "  experts: {placement: round-robin,", "  experts: {exchange: alltoallv, placement: round-robin,",
     ("experts.exchange", "alltoallv", "allgather")),
])
def test_bad_enum_value_is_exit_2_with_the_field(tmp_path, example, old, new, expected):
    src = (REPO / "examples" / example / "cluster.yaml").read_text()
    assert old in src
    bad = tmp_path / "cluster.yaml"
    bad.write_text(src.replace(old, new))
    res = run("check", str(bad))
    assert res.exit_code == 2
    assert all(text in res.output for text in expected), res.output
    assert "Traceback" not in res.output


def test_estimate_with_trace_reports_load():
    res = run("estimate", str(REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"),
              "--trace", str(REPO / "workloads" / "traces" / "azure-conv-10min.jsonl"))
    assert res.exit_code == 0, res.output
    assert "of capacity" in res.output


def test_estimate_infeasible_memory_is_exit_2(tmp_path):
    src = (REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml").read_text()
    bad = tmp_path / "cluster.yaml"
    bad.write_text(src.replace("max_seqs: 128", "max_seqs: 100000"))
    res = run("estimate", str(bad))
    assert res.exit_code == 2
    assert "does not fit on H100-SXM" in res.output and "short by" in res.output
    assert "Traceback" not in res.output


def test_simulate_writes_outputs_deterministically(tmp_path):
    cluster = str(REPO / "examples" / "h100x8-mixtral-8x7b" / "cluster.yaml")
    trace = str(REPO / "workloads" / "traces" / "azure-code-10min.jsonl")
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        res = run("simulate", cluster, trace, "-o", str(out), "--max-requests", "120", "--seed", "4",
                  "--slo", "ttft=2s,tpot=50ms", "--quiet", "--timeline")
        assert res.exit_code == 0, res.output
        assert "TTFT" in res.output and "goodput" in res.output
        outs.append(out)
    for f in ("summary.json", "requests.csv", "timeseries.csv", "timeline.json"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f
    summary = json.loads((outs[0] / "summary.json").read_text())
    assert summary["requests"]["finished"] == 120
    assert summary["seed"] == 4 and summary["inputs"]


def test_simulate_closed_loop_clients(tmp_path):
    cluster = str(REPO / "examples" / "h100x8-mixtral-8x7b" / "cluster.yaml")
    trace = str(REPO / "workloads" / "traces" / "azure-code-10min.jsonl")
    res = run("simulate", cluster, trace, "-o", str(tmp_path), "--max-requests", "60", "--concurrency", "6",
              "--quiet")
    assert res.exit_code == 0, res.output
    assert "6 closed-loop clients" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["run"]["closed_loop_clients"] == 6 and summary["requests"]["finished"] == 60
    assert run("simulate", cluster, trace, "--concurrency", "0").exit_code == 2


def test_simulate_an_offline_run(tmp_path):
    """A dataset queued at once (trtllm-bench throughput, MLPerf offline): throughput is the run's
    output over its length, and one request past two full batches decodes alone at the end, so
    it lowers the run's throughput although it adds work."""
    cluster = str(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml")   # max_seqs 128
    got = {}
    for n in (256, 257):
        trace = tmp_path / f"offline{n}.jsonl"
        assert run("trace", "generate", "-o", str(trace), "--arrival", "offline", "--count", str(n),
                   "--input-median", "128", "--input-sigma", "0", "--output-median", "64",
                   "--output-sigma", "0").exit_code == 0
        res = run("simulate", cluster, str(trace), "-o", str(tmp_path / f"s{n}"), "--quiet")
        assert res.exit_code == 0, res.output
        summary = json.loads((tmp_path / f"s{n}" / "summary.json").read_text())
        assert summary["requests"]["finished"] == n
        tp = summary["throughput"]
        assert tp["window_start_s"] == 0.0
        assert tp["output_tokens_per_s"] == pytest.approx(n * 64 / tp["window_s"])
        got[n] = tp
    assert got[257]["window_s"] > got[256]["window_s"]
    assert got[257]["output_tokens_per_s"] < got[256]["output_tokens_per_s"]
    # validation/offline_runs.py takes the same path (its replays of the perf-overview rows)
    spec = importlib.util.spec_from_file_location("offline_runs", REPO / "validation" / "offline_runs.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    ours = script.offline_output_tokens_per_s(load_scenario(cluster), 128, 64, 256)
    assert ours == pytest.approx(got[256]["output_tokens_per_s"], rel=1e-9)


def test_simulate_bad_trace_is_exit_2(tmp_path):
    res = run("simulate", str(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"),
              str(REPO / "tests" / "data" / "traces" / "bad_decreasing.jsonl"), "-o", str(tmp_path / "o"), "--quiet")
    assert res.exit_code == 2 and "must not decrease" in res.output
    assert not (tmp_path / "o" / "summary.json").exists()


def test_simulate_bad_slo_is_a_usage_error():
    res = run("simulate", "x.yaml", "t.jsonl", "--slo", "ttft=2")
    assert res.exit_code == 2 and "ttft" in res.output
