"""``hwsim plan power`` end to end on a tiny trace: outputs, the patch round trip, input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.io.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "examples" / "h100x8-mixtral-8x7b" / "cluster.yaml"


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trace") / "trace.jsonl"
    rows = [{"id": i, "arrival_s": 0.25 * i, "input_tokens": 300 + 97 * (i % 7), "output_tokens": 40 + 13 * (i % 5)}
            for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def planned(trace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    res = CliRunner().invoke(main, ["plan", "power", str(CLUSTER), str(trace), "--budget", "12kW", "--caps",
                                    "550W,400W", "--violation", "5%", "--scenarios", "60", "-o", str(out),
                                    "--write-lp", str(out / "power.lp")])
    assert res.exit_code == 0, res.output
    assert "provisioned at TDP" in res.output and "gap" in res.output
    return out


def test_outputs_written(planned: Path) -> None:
    plan = json.loads((planned / "plan.json").read_text())
    assert plan["kind"] == "power-plan" and plan["hwsim_version"]
    counts = plan["plan"]["counts"]
    assert set(counts) == {"main@uncapped", "main@550W", "main@400W"}
    assert plan["plan"]["in_sample_violation"] <= 0.05
    assert plan["plan"]["servers"] == sum(counts.values()) * 0.5       # TP4 replicas: half a DGX each
    assert plan["plan"]["tdp_servers"] == 12_000 // plan["groups"][0]["tdp_w"] // 2
    assert 0.0 <= plan["verification"]["violation"] <= 1.0
    assert (planned / "power_plan.png").stat().st_size > 1000
    lp = (planned / "power.lp").read_text()
    assert re.search(r"^budget_\d+:", lp, re.MULTILINE) and "violations:" in lp and "min_servers_0:" in lp


def test_patch_round_trips_into_the_scenario(planned: Path) -> None:
    plan = json.loads((planned / "plan.json").read_text())
    sc = load_scenario(CLUSTER, patches=[planned / "plan.patch.yaml"])
    assert sc.deployment.pools[0].replicas == sum(plan["plan"]["counts"].values())
    assert sc.cluster.num_devices >= sc.deployment.pools[0].replicas * 4


def test_budget_below_one_server_is_infeasible(trace: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plan", "power", str(CLUSTER), str(trace), "--budget", "300W", "--caps", "400W",
                                    "--scenarios", "20", "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert "budget_*" in res.output and "min_servers_*" in res.output


def test_budget_or_domain_is_required(trace: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plan", "power", str(CLUSTER), str(trace), "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--budget" in res.output
    res = CliRunner().invoke(main, ["plan", "power", str(CLUSTER), str(trace), "--domain", "row-z", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "row-z" in res.output


DISAGGREGATED = """version: 1
kind: cluster
name: mixtral-pd
nodes: {system: DGX-H100, count: 1}
deployment:
  model: mixtral-8x7b
  dtypes: {weights: bf16, activations: bf16, kv: bf16}
  pools:
    - {name: prefill, role: prefill, replicas: 1, parallelism: {tp: 4},
       scheduler: {max_seqs: 64, max_batched_tokens: 8192, chunked_prefill: 2048}}
    - {name: decode, role: decode, replicas: 1, parallelism: {tp: 4},
       scheduler: {max_seqs: 256, max_batched_tokens: 256}}
  experts: {routing: {model: uniform}}
"""


def test_disaggregated_pools_are_separate_groups_in_ratio(trace: Path, tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(DISAGGREGATED)
    out = tmp_path / "plan"
    res = CliRunner().invoke(main, ["plan", "power", str(cluster), str(trace), "--budget", "20kW", "--caps", "400W",
                                    "--scenarios", "40", "--violation", "5%", "-o", str(out)])
    assert res.exit_code == 0, res.output
    plan = json.loads((out / "plan.json").read_text())
    counts = plan["plan"]["counts"]
    assert set(counts) == {"prefill@uncapped", "decode@uncapped", "prefill@400W", "decode@400W"}
    rows = {r["group"]: r for r in plan["groups"]}
    assert rows["prefill@uncapped"]["p99_w"] != rows["decode@uncapped"]["p99_w"]   # the phases draw differently
    prefill = counts["prefill@uncapped"] + counts["prefill@400W"]
    assert prefill >= 1 and prefill == counts["decode@uncapped"] + counts["decode@400W"]
    sc = load_scenario(cluster, patches=[out / "plan.patch.yaml"])
    assert [p.replicas for p in sc.deployment.pools] == [prefill, prefill]


def test_unsettable_cap_fails_before_simulating(trace: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["plan", "power", str(CLUSTER), str(trace), "--budget", "40kW", "--caps", "900W",
                                    "-o", str(tmp_path / "p")])
    assert res.exit_code == 2 and "900 W is outside the settable range" in res.output
    assert not (tmp_path / "p").exists()
