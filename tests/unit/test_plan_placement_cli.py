"""``hwsim plan placement``: outputs, the patch round-trips into the simulator, co-activation from a trace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.io.scenario import load_scenario
from hwsim.workload.routing_loads import LayeredPlacement
from hwsim.workload.routing_trace import RoutingTrace, write_routing_trace

CLUSTER = """\
version: 1
kind: cluster
name: plan-placement
nodes: {system: DGX-H100, count: 2}
fabric: {topology: rail-optimized}
deployment:
  model: qwen3-30b-a3b
  pools:
    - name: main
      devices: 16
      parallelism: {tp: 1, attention_dp: 16, ep: 16}
      scheduler: {max_seqs: 64, max_batched_tokens: 4096, chunked_prefill: 1024}
  experts: {placement: round-robin, redundant: 0, routing: {model: zipf, skew: 1.2}}
"""


def _trace(path: Path, layers: int = 48, experts: int = 128, k: int = 8, tokens: int = 300) -> Path:
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, experts + 1) ** 1.1
    p /= p.sum()
    ids = np.stack([[rng.choice(experts, size=k, replace=False, p=p) for _ in range(layers)] for _ in range(tokens)])
    return write_routing_trace(path, RoutingTrace(ids=ids.astype(np.int32), sequence_starts=np.array([0, 150]),
                                                  num_experts=experts))


def _requests(path: Path) -> Path:
    lines = [json.dumps({"arrival_s": 0.05 * i, "input_tokens": 300 + 10 * i, "output_tokens": 12}) for i in range(12)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_placement_writes_a_plan_the_simulator_accepts(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER)
    routing = _trace(tmp_path / "routing.npz")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["plan", "placement", str(cluster), "--routing", str(routing), "--redundant", "16",
                                    "-o", str(out), "--time-limit", "5", "--write-lp", str(tmp_path / "m.lp"),
                                    "--verify", str(_requests(tmp_path / "reqs.jsonl"))])
    assert res.exit_code == 0, res.output
    assert "proven gap" in res.output and "eplb" in res.output and "crossing nodes" in res.output
    assert "slots_0" in (tmp_path / "m.lp").read_text()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["plan"]["gap_limit"] == 0.01 and plan["plan"]["time_limit_s"] == 5
    rows = {r["name"]: r for r in plan["comparison"]}
    assert rows["plan"]["max_over_mean"] <= rows["eplb"]["max_over_mean"] + 1e-9
    assert rows["plan"]["moe_layer_s"] <= rows["contiguous"]["moe_layer_s"]
    assert set(plan["verification"]) == {"cluster", "plan"}
    assert plan["verification"]["plan"]["output_tokens_per_s"] > 0
    # the patch round-trips: the planned slots are what the simulator's scenario holds
    sc = load_scenario(cluster, patches=[out / "plan.patch.yaml"])
    assert sc.deployment.experts.placement == "file" and sc.deployment.experts.redundant == 16
    held = LayeredPlacement.from_table(sc.placement)
    for layer in plan["plan"]["layers"]:
        got = held.at(layer["layer"]).slots
        assert sorted(map(sorted, got.tolist())) == sorted(map(sorted, layer["ranks"]))


def test_plan_placement_bad_budget_is_an_input_error(tmp_path):
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER)
    res = CliRunner().invoke(main, ["plan", "placement", str(cluster), "--redundant", "3", "-o", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "Traceback" not in res.output
    assert "'slots'" in res.output and "'budget'" in res.output
