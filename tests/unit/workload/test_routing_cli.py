"""``hwsim experts sample | fit | stats`` and the fitting behind ``fit``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.cli.experts_routing import parse_routing
from hwsim.errors import SpecError
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import make_routing
from hwsim.workload.routing_fit import fit_coactivation, fit_count_table, fit_zipf
from hwsim.workload.routing_stream import RoutingStream, token_trace
from hwsim.workload.routing_summary import routing_trace_stats
from hwsim.workload.routing_trace import read_routing_trace

EXAMPLE = "examples/h100x8-mixtral-8x7b/cluster.yaml"


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


# ---------------------------------------------------------------- fitting


@pytest.mark.parametrize(("skew", "k"), [(0.4, 8), (1.3, 8), (2.5, 2)])
def test_fit_recovers_a_known_skew(skew, k):
    moe = MoESpec(num_experts=64, top_k=k, expert_ffn_dim=16)
    model = make_routing(RoutingRef(model="zipf", params={"skew": skew}), moe)
    counts = model.expert_counts(np.random.default_rng(0), 100_000, [3])[0]
    result = fit_zipf(counts, k)
    assert result.skew == pytest.approx(skew, abs=0.02)
    assert result.tv < 0.01 and result.max_share_error < 0.005
    assert result.picks == 100_000 * k


def test_fit_rejects_counts_that_cannot_come_from_top_k():
    with pytest.raises(ValueError, match="1/top_k"):
        fit_zipf(np.array([100, 1, 1, 1, 1]), 2)


def test_coactivation_strength_is_recovered_from_pair_counts():
    moe = MoESpec(num_experts=32, top_k=2, expert_ffn_dim=16)
    q = 0.3
    model = make_routing(RoutingRef(model="zipf", params={"skew": 0.8, "coactivation": {"strength": q}}), moe)
    ids = RoutingStream(model, np.random.default_rng(0), layers=2).ids(0, 40_000).astype(np.int64)
    pairs = np.zeros((32, 32))
    np.add.at(pairs, (ids[:, 0].ravel(), ids[:, 1].ravel()), 1)  # rank-by-rank, as OLMoE's counts
    result, amap = fit_coactivation(pairs)
    assert result.strength == pytest.approx(q, abs=0.04)
    assert (amap == model.affinity(0)).mean() > 0.9
    independent = make_routing(RoutingRef(model="zipf", params={"skew": 0.8}), moe)
    ids = RoutingStream(independent, np.random.default_rng(0), layers=2).ids(0, 40_000).astype(np.int64)
    pairs = np.zeros((32, 32))
    np.add.at(pairs, (ids[:, 0].ravel(), ids[:, 1].ravel()), 1)
    assert fit_coactivation(pairs)[0].strength < 0.03


def test_fit_table_groups_by_key_columns(tmp_path):
    moe = MoESpec(num_experts=16, top_k=2, expert_ffn_dim=16)
    lines = ["model,domain,selection,layer,expert,count"]
    for domain, skew in (("a", 0.5), ("b", 1.5)):
        model = make_routing(RoutingRef(model="zipf", params={"skew": skew}), moe)
        counts = model.expert_counts(np.random.default_rng(1), 50_000, [0])[0]
        lines += [f"m,{domain},topk,0,{e},{c}" for e, c in enumerate(counts) if c]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    rows = fit_count_table(tmp_path / "c.csv", top_k=2)
    assert [dict(r.key)["domain"] for r in rows] == ["a", "b"]
    assert [round(r.fit.skew, 1) for r in rows] == [0.5, 1.5]
    with pytest.raises(SpecError, match="top_k"):
        fit_count_table(tmp_path / "c.csv")


# ---------------------------------------------------------------- stats


def test_stats_measure_reuse_and_imbalance():
    moe = MoESpec(num_experts=64, top_k=8, expert_ffn_dim=16)
    uniform = token_trace(make_routing(RoutingRef(), moe), np.random.default_rng(0), 4000, 2, sequence_tokens=400)
    s = routing_trace_stats(uniform, ranks=8)
    assert s.mean_reuse == pytest.approx(8 / 64, abs=0.01)
    assert 1.0 < s.mean_imbalance < 1.2 and s.per_layer[0].rank_imbalance < s.per_layer[0].imbalance
    local = make_routing(RoutingRef(params={"locality": {"reuse": 0.5}}), moe)
    s = routing_trace_stats(token_trace(local, np.random.default_rng(0), 4000, 2, sequence_tokens=400))
    assert s.mean_reuse == pytest.approx(0.5 + 0.5 * 4 / 60, abs=0.03)


# ---------------------------------------------------------------- command line


def test_parse_routing_forms(tmp_path):
    ref = parse_routing("zipf,skew=1.1,locality.reuse=0.3,seed_permutation=null")
    assert ref.model == "zipf"
    assert ref.params == {"skew": 1.1, "locality": {"reuse": 0.3}, "seed_permutation": None}
    assert parse_routing("{model: uniform, max_nodes: 2, nodes: 4}").params == {"max_nodes": 2, "nodes": 4}
    (tmp_path / "r.yaml").write_text("routing: {model: zipf, skew: 2}\n")
    assert parse_routing(str(tmp_path / "r.yaml")).params == {"skew": 2}
    with pytest.raises(SpecError, match="key=value"):
        parse_routing("zipf,skew")
    with pytest.raises(SpecError, match="not found"):
        parse_routing("missing.npz")


def test_sample_writes_a_trace_that_stats_reads(tmp_path):
    out = tmp_path / "r.npz"
    code, text = _run("experts", "sample", EXAMPLE, "--tokens", "500", "--sequence-tokens", "100",
                      "--routing", "zipf,skew=1.0,locality.reuse=0.4", "--seed", "3", "-o", str(out))
    assert code == 0, text
    assert "500 tokens x 32 MoE layers x top-2 of 8 experts (5 sequences)" in text
    trace = read_routing_trace(out)
    assert trace.ids.shape == (500, 32, 2) and trace.sequence_starts.tolist() == [0, 100, 200, 300, 400]
    again = tmp_path / "again.npz"
    _run("experts", "sample", EXAMPLE, "--tokens", "500", "--sequence-tokens", "100",
         "--routing", "zipf,skew=1.0,locality.reuse=0.4", "--seed", "3", "-o", str(again))
    np.testing.assert_array_equal(read_routing_trace(again).ids, trace.ids)
    code, text = _run("experts", "stats", str(out), "--json")
    assert code == 0, text
    data = json.loads(text)
    assert data["tokens"] == 500 and data["layers"] == 32 and len(data["per_layer"]) == 32
    assert data["mean_reuse"] > 0.4
    code, text = _run("experts", "stats", str(out), "--ep", "4")
    assert code == 0 and "rank max/mean" in text


def test_sample_from_a_catalog_model_and_a_trace(tmp_path):
    code, text = _run("experts", "sample", "--model", "olmoe-1b-7b", "--tokens", "64", "--layers", "3",
                      "-o", str(tmp_path / "o.parquet"))
    assert code == 0, text
    assert "from uniform on olmoe-1b-7b" in text
    code, text = _run("experts", "sample", "--model", "olmoe-1b-7b", "--tokens", "64", "--routing",
                      str(tmp_path / "o.parquet"), "-o", str(tmp_path / "replay.npz"))
    assert code == 0, text
    replay = read_routing_trace(tmp_path / "replay.npz")
    original = read_routing_trace(tmp_path / "o.parquet")
    # one recorded sequence: the replay starts at a random token and cycles
    shifts = [o for o in range(64) if np.array_equal(np.roll(original.ids, -o, axis=0), replay.ids[:, :3])]
    assert len(shifts) == 1
    np.testing.assert_array_equal(replay.ids[:, 3], replay.ids[:, 0])  # layer 3 replays recorded layer 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sample", "--tokens", "10", "-o", "x.npz"], "cluster file or --model"),
        (["sample", "--model", "olmoe-1b-7b", "--routing", "zipf,skew=-1", "--tokens", "10", "-o", "x.npz"],
         "--routing.skew"),
        (["sample", "--model", "qwen3-32b", "--tokens", "10", "-o", "x.npz"], "dense"),
        (["sample", "--model", "olmoe-1b-7b", "--tokens", "10", "-o", "x.txt"], "format"),
        (["stats", "missing.npz"], "missing.npz: file not found"),
        (["fit", "missing.csv", "--top-k", "2"], "missing.csv: file not found"),
    ],
)
def test_bad_input_exits_2_with_the_field(tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    code, text = _run("experts", *args)
    assert code == 2, text
    assert words in text and "Traceback" not in text


def test_fit_command_on_the_olmoe_counts(shared_data):
    folder = shared_data / "olmoe-routing-counts"
    code, text = _run("experts", "fit", str(folder / "expert_counts.csv"), "--select",
                      "model=mistral,domain=c4,selection=topk", "--top-k", "2", "--pairs",
                      str(folder / "crosslayer_pair_counts.csv.gz"), "--json")
    assert code == 0, text
    data = json.loads(text)
    assert [f["layer"] for f in data["fits"]] == [0, 7, 15]
    assert all(0.0 < f["skew"] < 0.5 and f["experts"] == 8 for f in data["fits"])
    assert {(c["layer_from"], c["layer_to"]) for c in data["coactivation"]} == {(0, 7), (7, 15)}
    assert all(0.0 < c["strength"] < 0.5 for c in data["coactivation"])
    code, text = _run("experts", "fit", str(folder / "expert_counts.csv"), "--select", "model=mistral")
    assert code == 2 and "top_k" in text
