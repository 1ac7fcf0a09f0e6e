"""``hwsim plan tiering``: a plan within the device's tiers, a patch the simulator accepts, LRU check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from hwsim.cli import main
from hwsim.io.scenario import load_scenario

CLUSTER = """\
version: 1
kind: cluster
name: no-cache
nodes: {system: DGX-H100, count: 1}
deployment:
  model: qwen3-30b-a3b
  pools:
    - name: main
      parallelism: {tp: 1, attention_dp: 8, ep: 8}
"""

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mixtral-offload-24gb"


def test_plan_tiering_round_trips_and_verifies(tmp_path):
    cluster = tmp_path / "lru.yaml"
    shutil.copy(EXAMPLE / "lru.yaml", cluster)
    trace = tmp_path / "reqs.jsonl"
    trace.write_text(json.dumps({"arrival_s": 0.0, "input_tokens": 64, "output_tokens": 8}) + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["plan", "tiering", str(cluster), "-o", str(out), "--verify", str(trace),
                                    "--write-lp", str(tmp_path / "t.lp")])
    assert res.exit_code == 0, res.output
    assert "gap" in res.output and "expected fetch time per token" in res.output
    assert "cap_hbm" in (tmp_path / "t.lp").read_text()
    plan = json.loads((out / "plan.json").read_text())["plan"]
    for tier in ("hbm", "dram"):
        assert plan["used_bytes"][tier] <= plan["capacity_bytes"][tier] + 1
    assert plan["counts"]["hbm"] >= 1 and sum(plan["counts"].values()) == 256
    sc = load_scenario(cluster, patches=[out / "plan.patch.yaml"])
    assert sc.deployment.experts.offload.policy == "static"
    verified = json.loads((out / "plan.json").read_text())["verification"]
    assert set(verified) == {"lru", "plan"}
    assert verified["plan"]["tpot_p50_s"] <= verified["lru"]["tpot_p50_s"]


def test_plan_tiering_needs_an_expert_cache(tmp_path):
    cluster = tmp_path / "c.yaml"
    cluster.write_text(CLUSTER)
    res = CliRunner().invoke(main, ["plan", "tiering", str(cluster), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "experts.offload" in res.output
