"""Placement files: dump/load round trip, located errors, loading with a scenario, memory with replicas."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.errors import SpecError
from hwsim.io.placement import dump_placement, load_placement
from hwsim.io.scenario import load_scenario
from hwsim.perf.memory import footprint
from hwsim.spec.placement import PlacementTable
from hwsim.workload.placement import place_layers
from hwsim.workload.routing_loads import LayeredPlacement

# Qwen3-30B-A3B: 128 experts, top-8, 48 MoE layers; EP8 over one DGX H100.
CLUSTER = """\
version: 1
kind: cluster
name: placement-test
nodes: {{system: DGX-H100, count: 1}}
deployment:
  model: qwen3-30b-a3b
  pools:
    - name: main
      parallelism: {{tp: 1, attention_dp: 8, ep: {ep}}}
      scheduler: {{max_seqs: 64, max_batched_tokens: 4096, chunked_prefill: 1024}}
  experts: {{placement: {placement}, redundant: {redundant}, routing: {{model: zipf, skew: 1.0}}{extra}}}
"""


def cluster(tmp_path: Path, *, ep=8, placement="file", redundant=8, placement_file="placement.yaml") -> Path:
    extra = f", placement_file: {placement_file}" if placement == "file" else ""
    path = tmp_path / f"cluster-{ep}-{placement}-{redundant}.yaml"
    path.write_text(CLUSTER.format(ep=ep, placement=placement, redundant=redundant, extra=extra))
    return path


def table(num_experts=128, ranks=8, redundant=8, layers=(0, 1, 2), default=True) -> PlacementTable:
    rng = np.random.default_rng(0)
    loads = rng.random((len(layers), num_experts)) ** 3
    lp = place_layers("eplb", loads, list(layers), ranks, redundant=redundant)
    if default:
        lp = LayeredPlacement(default=lp.at(layers[0]), layers=dict(lp.layers))
    return lp.to_table(model="qwen3-30b-a3b", source="test")


@pytest.fixture
def placement_file(tmp_path) -> Path:
    path = tmp_path / "placement.yaml"
    path.write_text(dump_placement(table()))
    return path


def test_dump_then_load_gives_the_same_placement(placement_file):
    original = table()
    loaded = load_placement(placement_file, num_experts=128, num_moe_layers=48)
    assert loaded == original
    assert loaded.rank_slots(7) == original.default  # layers not listed take the default
    assert dump_placement(loaded) == placement_file.read_text()


def test_default_only_and_layers_only_files(tmp_path):
    only_default = table(layers=(0,), default=True)
    only_default = PlacementTable(ep=8, slots_per_rank=17, num_experts=128, default=only_default.default)
    f = tmp_path / "d.yaml"
    f.write_text(dump_placement(only_default))
    assert load_placement(f, num_experts=128, num_moe_layers=48).layers == {}
    partial = tmp_path / "p.yaml"
    partial.write_text(dump_placement(table(default=False)))
    with pytest.raises(SpecError) as err:
        load_placement(partial, num_experts=128, num_moe_layers=48)
    assert err.value.path == "layers" and "MoE layers [3, 4, 5" in err.value.message


def _mutated(text: str, old: str, new: str, count: int = 1) -> str:
    assert old in text, old
    return text.replace(old, new, count)


def _first_rank_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith("- ["))


BAD = {
    # case: (mutation of the dumped text, field path, words in the message)
    "typo": (lambda t: _mutated(t, "slots_per_rank:", "slot_per_rank:"), "slot_per_rank", "unknown field"),
    "kind": (lambda t: _mutated(t, "kind: placement", "kind: model"), "kind", "wrong value"),
    "ep type": (lambda t: _mutated(t, "ep: 8", "ep: eight"), "ep", "wrong type"),
    "neither default nor layers": (lambda t: t.split("default:")[0], "default", "missing required field"),
    "ranks count": (lambda t: _mutated(t, "ep: 8", "ep: 4"), "default.ranks", "8 ranks listed, but ep is 4"),
    "slot count": (lambda t: _mutated(t, _first_rank_line(t), _first_rank_line(t).replace("- [", "- [5, ")),
                   "default.ranks[0]", "rank 0 has 18 slots"),
    "expert id": (lambda t: _mutated(t, _first_rank_line(t), re.sub(r"\[\d+", "[500", _first_rank_line(t))),
                  "default.ranks[0][0]", "expert 500 does not exist"),
    "negative id": (lambda t: _mutated(t, _first_rank_line(t), re.sub(r"\[\d+", "[-1", _first_rank_line(t))),
                    "default.ranks[0][0]", "out of range"),
    "missing expert": (lambda t: _mutated(t, _first_rank_line(t), "    - [" + ", ".join(["0"] * 17) + "]"),
                       "default.ranks", "have no slot"),
    "duplicate layer": (lambda t: _mutated(t, "layer: 1", "layer: 0"), "layers[1].layer", "listed twice"),
    "layer range": (lambda t: _mutated(t, "layer: 2", "layer: 48"), "layers[2].layer", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_name_the_field_path_and_line(case, placement_file, tmp_path):
    mutate, path, words = BAD[case]
    bad = tmp_path / "bad.yaml"
    bad.write_text(mutate(placement_file.read_text()))
    with pytest.raises(SpecError) as err:
        load_placement(bad, num_experts=128, num_moe_layers=48)
    e = err.value
    assert e.file == str(bad)
    assert e.path == path, str(e)
    assert words in str(e)
    assert e.line is not None and e.line >= 1


def test_simulate_and_check_load_the_file_and_hash_it(tmp_path, placement_file):
    path = cluster(tmp_path)
    sc = load_scenario(path)
    assert sc.placement == load_placement(placement_file, num_experts=128)
    assert str(placement_file) in sc.input_hashes and str(path) in sc.input_hashes
    out = CliRunner().invoke(main, ["check", str(path)])
    assert out.exit_code == 0, out.output
    assert "placement file, 8 redundant" in out.output


def test_file_that_disagrees_with_the_deployment(tmp_path, placement_file):
    with pytest.raises(SpecError) as err:  # 128 + 0 slots, the file has 136
        load_scenario(cluster(tmp_path, redundant=0))
    assert err.value.path == "deployment.experts.redundant"
    assert "redundant: 8" in str(err.value) and err.value.line is not None
    with pytest.raises(SpecError) as err:
        load_scenario(cluster(tmp_path, ep=4, redundant=8))  # 4 x 34 slots would also be 136 experts
    assert err.value.path == "ep" and err.value.file == str(placement_file)
    with pytest.raises(SpecError) as err:
        load_scenario(cluster(tmp_path, placement_file="missing.yaml"))
    assert err.value.path == "deployment.experts.placement_file"
    other = tmp_path / "other-model.yaml"
    other.write_text(placement_file.read_text().replace('model: "qwen3-30b-a3b"', 'model: "deepseek-v3"'))
    with pytest.raises(SpecError) as err:
        load_scenario(cluster(tmp_path, placement_file=other.name))
    assert err.value.path == "model"


def test_cli_check_exits_2_on_a_bad_placement_file(tmp_path, placement_file):
    placement_file.write_text(placement_file.read_text().replace("slots_per_rank: 17", "slots_per_rank: 16"))
    out = CliRunner().invoke(main, ["check", str(cluster(tmp_path))])
    assert out.exit_code == 2
    assert "default.ranks[0]" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("redundant", [0, 8, 64])
def test_replicas_never_exceed_hbm(tmp_path, redundant):
    sc = load_scenario(cluster(tmp_path, placement="eplb", redundant=redundant))
    pool = sc.deployment.pools[0]
    dev = sc.cluster.device_at(0)
    fp = footprint(sc.model, sc.deployment, pool, dev)
    assert fp.fixed_bytes + fp.kv_bytes <= dev.hbm_bytes
    per_expert = fp.expert_weights_bytes / ((128 + redundant) // 8)
    if redundant:  # each slot costs one expert's weights: the footprint follows the slot count
        base = footprint(sc.model, load_scenario(cluster(tmp_path, placement="eplb", redundant=0)).deployment,
                         pool, dev)
        assert fp.expert_weights_bytes == pytest.approx(base.expert_weights_bytes + redundant // 8 * per_expert)
        assert fp.kv_blocks < base.kv_blocks


def test_too_many_redundant_experts_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError) as err:
        load_scenario(cluster(tmp_path, placement="eplb", redundant=8 * 256))  # 272 slots a device
    msg = str(err.value)
    assert "short by" in msg and "experts.redundant 2048" in msg and "272 expert slots" in msg
    assert err.value.path == "deployment.pools[0].parallelism"
    with pytest.raises(SpecError, match=r"experts\.redundant 3"):
        load_scenario(cluster(tmp_path, placement="eplb", redundant=3))


def test_cli_place_writes_a_file_the_simulator_reads(tmp_path):
    path = cluster(tmp_path, placement="eplb", redundant=8)
    out_file = tmp_path / "placement.yaml"
    res = CliRunner().invoke(main, ["experts", "place", str(path), "--strategy", "eplb", "-o", str(out_file)])
    assert res.exit_code == 0, res.output
    assert "48 MoE layers on 8 EP ranks x 17 slots (8 redundant)" in res.output
    placed = load_placement(out_file, num_experts=128, num_moe_layers=48)
    assert placed.model == "qwen3-30b-a3b" and "--strategy eplb" in placed.source
    sc = load_scenario(cluster(tmp_path, placement="file", redundant=8))
    assert sc.placement == placed
    loads = CliRunner().invoke(main, ["experts", "loads", str(cluster(tmp_path, placement="file", redundant=8))])
    assert loads.exit_code == 0, loads.output
    header = loads.output.splitlines()[1].split()
    assert header == ["layer", "contiguous", "round-robin", "eplb", "file"]
    mean = [float(x) for x in loads.output.splitlines()[-2].split()[1:]]
    assert mean[2] == pytest.approx(mean[3])  # the file is what eplb computes
    assert mean[2] < mean[0]


def test_cli_place_from_a_routing_model_file_and_bad_redundant(tmp_path):
    path = cluster(tmp_path, placement="eplb", redundant=0)
    routing = tmp_path / "routing.yaml"
    routing.write_text("model: uniform\n")
    res = CliRunner().invoke(main, ["experts", "place", str(path), "--routing", str(routing), "-o",
                                    str(tmp_path / "p.yaml")])
    assert res.exit_code == 0, res.output
    assert "worst 1.000" in res.output  # uniform routing: every rank equally loaded
    bad = CliRunner().invoke(main, ["experts", "place", str(path), "--redundant", "3", "-o", str(tmp_path / "q.yaml")])
    assert bad.exit_code == 2 and "experts.redundant" in bad.output
    routing.write_text("model: zipff\n")
    res = CliRunner().invoke(main, ["experts", "place", str(path), "--routing", str(routing), "-o",
                                    str(tmp_path / "p.yaml")])
    assert res.exit_code == 2 and "did you mean 'zipf'" in res.output and str(routing) in res.output


def test_cli_place_from_a_routing_trace_replicates_its_hot_experts(tmp_path):
    from hwsim.workload.routing_trace import RoutingTrace, write_routing_trace

    rng = np.random.default_rng(0)
    # 2,000 recorded tokens of one layer: expert 5 in every token, the other 7 picks at random
    others = np.argsort(rng.random((2000, 127)), axis=1)[:, :7]
    others = np.where(others >= 5, others + 1, others)
    ids = np.concatenate([np.full((2000, 1), 5), others], axis=1)[:, None, :]
    trace = tmp_path / "routing.npz"
    write_routing_trace(trace, RoutingTrace(ids=ids, sequence_starts=np.array([0]), num_experts=128))
    out_file = tmp_path / "placement.yaml"
    res = CliRunner().invoke(main, ["experts", "place", str(cluster(tmp_path, placement="eplb", redundant=8)),
                                    "--routing", str(trace), "-o", str(out_file)])
    assert res.exit_code == 0, res.output
    placed = load_placement(out_file, num_experts=128, num_moe_layers=48)
    assert placed.default is not None and not placed.layers  # a one-layer trace serves every layer
    # the expert every token picks takes every redundant slot (1/9 of its load per copy still
    # beats any other expert's 7/127) and has a copy on every rank
    assert sum(row.count(5) for row in placed.default) == 9
    assert all(5 in row for row in placed.default)
