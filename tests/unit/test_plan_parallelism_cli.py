"""``hwsim plan parallelism`` end to end on a small model and trace: outputs, patch round trip, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.cli.plan_parallelism import parse_usd_per_h
from hwsim.io.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml"  # Qwen3-30B-A3B on one DGX H100


def _trace(path: Path, rate: float, n: int = 60) -> Path:
    rows = [{"id": i, "arrival_s": i / rate, "input_tokens": 300 + 97 * (i % 7), "output_tokens": 40 + 13 * (i % 5)}
            for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("plan")
    trace = _trace(tmp / "trace.jsonl", rate=40.0)
    out = tmp / "out"
    res = CliRunner().invoke(main, ["plan", "parallelism", str(CLUSTER), str(trace), "--slo", "ttft=1s,tpot=40ms",
                                    "--devices", "4", "--verify-top", "2", "--max-requests", "40", "-o", str(out),
                                    "--write-lp", str(out / "model.lp")])
    assert res.exit_code == 0, res.output
    assert "gap" in res.output and "SLO met" in res.output
    return out, trace


def test_outputs(planned: tuple[Path, Path]) -> None:
    out, _ = planned
    plan = json.loads((out / "plan.json").read_text())
    assert plan["hwsim_version"] and plan["inputs"] and plan["plans"]
    best = plan["plans"][0]
    assert best["devices"] <= 4
    assert best["solver"]["status"] == "Optimal" and best["solver"]["time_limit_s"] == 30.0
    assert len(plan["verification"]) == min(2, len(plan["plans"]))
    assert all("simulated_output_tokens_per_s" in row for row in plan["verification"])
    lp = (out / "model.lp").read_text()
    assert "device_budget_total" in lp and "capacity_decode" in lp
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert len(rows) == plan["candidates"] and any(r["on_front"] == "true" for r in rows)
    assert (out / "pareto.png").stat().st_size > 0 and (out / "pareto-usd.png").stat().st_size > 0


def test_patch_round_trips_into_simulate(planned: tuple[Path, Path], tmp_path: Path) -> None:
    out, trace = planned
    patch = out / "plan.patch.yaml"
    sc = load_scenario(CLUSTER, patches=[patch])
    best = json.loads((out / "plan.json").read_text())["plans"][0]
    assert sc.deployment.devices == best["devices"]
    assert sc.deployment.dtypes.weights == best["pools"][0]["weights"]
    pool = sc.deployment.pools[0]
    assert pool.parallelism.tp == best["pools"][0]["tp"] and pool.replicas == best["pools"][0]["replicas"]
    res = CliRunner().invoke(main, ["simulate", str(CLUSTER), str(trace), "--patch", str(patch), "--max-requests",
                                    "20", "-o", str(tmp_path / "sim"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "sim" / "summary.json").is_file()


def test_demand_beyond_budget_exits_2(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "fast.jsonl", rate=5000.0, n=200)
    res = CliRunner().invoke(main, ["plan", "parallelism", str(CLUSTER), str(trace), "--slo", "ttft=1s,tpot=40ms",
                                    "--devices", "1", "--objective", "usd", "--unified-only", "--verify-top", "0",
                                    "--no-plots", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "demand_prefill" in res.output and "device_budget_total" in res.output


def test_impossible_slo_exits_2(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "t.jsonl", rate=5.0, n=20)
    res = CliRunner().invoke(main, ["plan", "parallelism", str(CLUSTER), str(trace), "--slo", "ttft=1us,tpot=1us",
                                    "--unified-only", "--verify-top", "0", "--no-plots", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "slo" in res.output


def test_parse_usd_per_h() -> None:
    assert parse_usd_per_h("300 USD/h") == 300.0
    assert parse_usd_per_h("0.1 USD/s") == pytest.approx(360.0)
    assert parse_usd_per_h("$12/hour") == 12.0
    with pytest.raises(Exception, match="price rate"):
        parse_usd_per_h("lots")


def test_a_trace_without_a_rate_exits_2(tmp_path: Path) -> None:
    trace = _trace(tmp_path / "one.jsonl", rate=1.0, n=1)
    res = CliRunner().invoke(main, ["plan", "parallelism", str(CLUSTER), str(trace), "--slo", "ttft=1s,tpot=40ms",
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "arrival rate" in res.output
