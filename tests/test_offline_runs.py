"""validation/offline_runs.py: its offline run is the CLI's (`trace generate --arrival offline` + `simulate`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.io.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("offline_runs", REPO / "validation" / "offline_runs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_run_matches_the_cli(tmp_path: Path) -> None:
    got = _script().offline_output_tokens_per_s(load_scenario(CLUSTER), 128, 64, 200)
    runner = CliRunner()
    trace = tmp_path / "offline.jsonl"
    assert runner.invoke(main, ["trace", "generate", "-o", str(trace), "--arrival", "offline", "--count", "200",
                                "--input-median", "128", "--input-sigma", "0", "--output-median", "64",
                                "--output-sigma", "0"]).exit_code == 0
    res = runner.invoke(main, ["simulate", str(CLUSTER), str(trace), "-o", str(tmp_path / "out"), "--quiet"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert got == pytest.approx(summary["throughput"]["output_tokens_per_s"], rel=1e-9)
    assert got == pytest.approx(200 * 64 / summary["throughput"]["window_s"], rel=1e-9)
