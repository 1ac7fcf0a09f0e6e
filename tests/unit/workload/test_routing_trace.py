"""Recorded routing: trace files (ids and histograms), their errors, and trace-driven models."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.errors import SpecError
from hwsim.spec.deployment import RoutingRef
from hwsim.spec.moe import MoESpec
from hwsim.workload.routing import HistogramRouting, TraceRouting, make_routing
from hwsim.workload.routing_inclusion import inclusion_probabilities
from hwsim.workload.routing_replay import weights_for_inclusion
from hwsim.workload.routing_stream import RoutingStream, token_trace
from hwsim.workload.routing_trace import (
    RoutingTrace,
    parse_select,
    read_routing_histogram,
    read_routing_trace,
    write_routing_trace,
)


def _moe(**kw: object) -> MoESpec:
    base: dict[str, object] = {"num_experts": 16, "top_k": 2, "expert_ffn_dim": 1024}
    base.update(kw)
    return MoESpec(**base)  # type: ignore[arg-type]


def _trace(tokens: int = 300, layers: int = 3, seed: int = 0, starts: list[int] | None = None) -> RoutingTrace:
    model = make_routing(RoutingRef(model="zipf", params={"skew": 1.0}), _moe())
    t = token_trace(model, np.random.default_rng(seed), tokens, layers, sequence_tokens=100)
    if starts is None:
        return t
    return RoutingTrace(ids=t.ids, sequence_starts=np.array(starts), num_experts=16)


def _trace_model(path, **params) -> TraceRouting:
    model = make_routing(RoutingRef(model="trace", params={"file": str(path), **params}), _moe())
    assert isinstance(model, TraceRouting)
    return model


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_trace_files_round_trip(tmp_path, suffix):
    trace = _trace()
    path = write_routing_trace(tmp_path / f"sub/routing{suffix}", trace)
    back = read_routing_trace(path)
    np.testing.assert_array_equal(back.ids, trace.ids)
    assert back.sequence_starts.tolist() == [0, 100, 200]
    assert back.layer_indices.tolist() == [0, 1, 2]
    assert back.ids.dtype == np.int32
    if suffix == ".npz":
        assert back.num_experts == 16
    assert not list(tmp_path.glob("sub/.*.tmp")), "a temporary file was left behind"


def test_npz_may_hold_int16_ids_only(tmp_path):
    ids = np.random.default_rng(0).integers(0, 8, size=(50, 2, 1)).astype(np.int16)
    np.savez(tmp_path / "t.npz", ids=ids)
    back = read_routing_trace(tmp_path / "t.npz")
    assert back.sequence_starts.tolist() == [0] and back.experts == int(ids.max()) + 1


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"counts": np.ones((2, 4))}, "no 'ids'"),
        ({"ids": np.zeros((4, 2))}, "3 dimensions"),
        ({"ids": np.zeros((4, 2, 1))}, "wrong type"),
        ({"ids": np.full((4, 2, 1), -3)}, "-1.."),
        ({"ids": np.zeros((4, 2, 1), int), "sequence_starts": np.array([1, 2])}, "start at 0"),
        ({"ids": np.zeros((4, 2, 1), int), "layers": np.array([3, 1])}, "increasing"),
        ({"ids": np.ones((4, 2, 1), int), "num_experts": np.array(1)}, "num_experts"),
    ],
)
def test_bad_npz_traces_name_the_file(tmp_path, arrays, words):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(SpecError) as err:
        read_routing_trace(path)
    assert err.value.file == str(path)
    assert words in str(err.value)


def test_unreadable_trace_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        read_routing_trace(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(SpecError, match="npz") as err:
        read_routing_trace(tmp_path / "junk.npz")
    assert err.value.file.endswith("junk.npz")
    with pytest.raises(SpecError, match="format"):
        read_routing_trace(tmp_path / "routing.json")
    with pytest.raises(SpecError, match="format"):
        write_routing_trace(tmp_path / "routing.txt", _trace())


def test_bad_parquet_traces_name_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"token": [0, 0], "layer": [0, 0], "expert": [1, 2]}), path)
    with pytest.raises(SpecError, match="missing column") as err:
        read_routing_trace(path)
    assert err.value.file == str(path)
    pq.write_table(pa.table({"token": [0, 1], "layer": [0, 0], "rank": [0, 1], "expert": [1, 2]}), path)
    with pytest.raises(SpecError, match="missing"):
        read_routing_trace(path)
    pq.write_table(pa.table({"token": [0, 0], "layer": [0, 0], "rank": [0, 0], "expert": [1, 2]}), path)
    with pytest.raises(SpecError, match="twice"):
        read_routing_trace(path)


def test_histograms_from_npz_and_filtered_csv(tmp_path):
    np.savez(tmp_path / "h.npz", counts=np.ones((3, 2, 8)), layers=np.array([0, 5]))
    h = read_routing_histogram(tmp_path / "h.npz")
    assert (h.windows, h.num_layers, h.num_experts) == (3, 2, 8)
    assert h.layer_indices.tolist() == [0, 5]
    csv = tmp_path / "counts.csv"
    csv.write_text("model,domain,layer,expert,count\n"
                   "a,x,0,0,5\na,x,0,1,3\na,x,7,1,4\na,y,0,0,1\nb,x,0,0,9\n")
    h = read_routing_histogram(csv, {"model": "a", "domain": "x"})
    assert h.layer_indices.tolist() == [0, 7]
    assert h.counts[0].tolist() == [[5, 3], [0, 4]]
    with pytest.raises(SpecError, match="twice") as err:
        read_routing_histogram(csv)
    assert err.value.file == str(csv) and err.value.line == 5
    with pytest.raises(SpecError, match="no rows left"):
        read_routing_histogram(csv, {"model": "c"})
    with pytest.raises(SpecError, match="missing column"):
        read_routing_histogram(csv, {"selection": "topk"})
    (tmp_path / "bad.csv").write_text("layer,expert,count\n0,0,five\n")
    with pytest.raises(SpecError, match="integers") as err:
        read_routing_histogram(tmp_path / "bad.csv")
    assert err.value.line == 2
    assert parse_select("model=olmoe, domain=arxiv") == {"model": "olmoe", "domain": "arxiv"}
    with pytest.raises(SpecError, match="key=value"):
        parse_select("olmoe")


# ---------------------------------------------------------------- trace-driven models


def test_replay_reproduces_the_file_counts_exactly(tmp_path):
    trace = _trace(tokens=301)
    path = write_routing_trace(tmp_path / "routing.npz", trace)
    model = _trace_model(path)
    rng = np.random.default_rng(0)
    for layer in range(3):
        total = np.zeros(16, dtype=np.int64)
        for step in (7, 50, 1, 200, 43):  # 301 tokens in uneven steps: one full pass
            total += model.step_counts(rng, step, layer)
        np.testing.assert_array_equal(total, trace.counts()[layer])
    # a model layer beyond the recording maps to layer mod 3; the cursor cycles
    np.testing.assert_array_equal(model.step_counts(rng, 301 * 2, 4), 2 * trace.counts()[1])
    np.testing.assert_allclose(model.inclusion(5), trace.counts()[2] / 301)
    assert model.expert_counts(rng, 10, 2).sum(axis=1).tolist() == [20, 20]


def test_stream_replays_recorded_sequences_in_order(tmp_path):
    trace = _trace(tokens=300)
    model = _trace_model(write_routing_trace(tmp_path / "t.parquet", trace))
    stream = RoutingStream(model, np.random.default_rng(0), layers=5)
    a = stream.ids(10, 30)
    b = stream.ids(11, 5)
    a2 = stream.ids(10, 70)
    np.testing.assert_array_equal(a[:, :3], trace.ids[:30])
    np.testing.assert_array_equal(a[:, 3:], trace.ids[:30, :2])  # layers 3, 4 -> recorded 0, 1
    np.testing.assert_array_equal(b[:, :3], trace.ids[100:105])
    np.testing.assert_array_equal(a2[:, :3], trace.ids[30:100])
    both = stream.ids_many([20, 21], 4)  # the third and (cycling) the first recorded sequence
    np.testing.assert_array_equal(both[0, :, :3], trace.ids[200:204])
    np.testing.assert_array_equal(both[1, :, :3], trace.ids[0:4])


def test_trace_model_errors_name_the_file_and_parameter(tmp_path):
    path = write_routing_trace(tmp_path / "t.npz", _trace())
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={"file": str(path)}), _moe(top_k=4))
    assert err.value.file == str(path) and "top_k=4" in str(err.value)
    assert err.value.path == "experts.routing.file"
    with pytest.raises(SpecError, match="experts") as err:
        make_routing(RoutingRef(model="trace", params={"file": str(path)}), _moe(num_experts=8))
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={}), _moe())
    assert err.value.path == "experts.routing.file"
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={"file": str(path), "mode": "bins"}), _moe())
    assert err.value.path == "experts.routing.mode"
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={"file": str(path), "window_tokens": 4}), _moe())
    assert err.value.path == "experts.routing.window_tokens"
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={"file": str(tmp_path / "none.npz")}), _moe())
    assert "not found" in str(err.value) and err.value.file.endswith("none.npz")
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="trace", params={"file": str(path), "locality": {"reuse": 0.5}}), _moe())
    assert err.value.path == "experts.routing.locality"


def test_weights_for_inclusion_inverts_the_inclusion():
    target = np.array([0.95, 0.7, 0.2, 0.1, 0.05, 0.0])
    w = weights_for_inclusion(target / target.sum() * 2, 2)
    np.testing.assert_allclose(inclusion_probabilities(w, 2), target / target.sum() * 2, atol=1e-5)
    assert w[-1] == 0


def test_histogram_model_matches_its_counts_and_walks_windows(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.stack([rng.integers(1, 50, size=(2, 16)), rng.integers(1, 50, size=(2, 16))]).astype(float)
    counts[1, :, 0] = 0  # expert 0 idle in window 1
    counts[..., 3] = counts.sum(axis=2) * 0.3  # a hot expert, below 1/top_k of the picks
    np.savez(tmp_path / "h.npz", counts=counts)
    model = make_routing(RoutingRef(model="trace", params={"file": str(tmp_path / "h.npz"), "window_tokens": 100}),
                         _moe())
    assert isinstance(model, HistogramRouting)
    total = counts.sum(axis=0)
    np.testing.assert_allclose(model.inclusion(3), total[1] / total[1].sum() * 2)
    assert model.step_counts(rng, 100, 0).sum() == 200  # window 0
    assert model.step_counts(rng, 100, 0)[0] == 0  # window 1: expert 0 idle
    tokens = 30_000
    got = model.expert_counts(np.random.default_rng(1), tokens, [1])[0] / tokens
    assert np.abs(got - model.inclusion(1)).max() < 0.02
    np.savez(tmp_path / "hot.npz", counts=np.array([[10.0, 1, 1, 1]]))
    with pytest.raises(SpecError, match="cannot come"):
        make_routing(RoutingRef(model="trace", params={"file": str(tmp_path / "hot.npz")}), _moe(num_experts=4))


def test_histogram_component_in_a_mixture_with_locality(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("layer,expert,count\n" + "".join(f"0,{e},{100 // (e + 1)}\n" for e in range(16)))
    params = {"components": [{"weight": 0.5, "model": "trace", "file": str(csv)},
                             {"weight": 0.5, "model": "uniform"}],
              "locality": {"reuse": 0.5}}
    model = make_routing(RoutingRef(model="mixture", params=params), _moe())
    ids = RoutingStream(model, np.random.default_rng(0), layers=2).ids(0, 50)
    assert ids.shape == (50, 2, 2) and np.all(ids[..., 0] != ids[..., 1])
    path = write_routing_trace(tmp_path / "t.npz", _trace())
    components = [{"weight": 1, "model": "trace", "file": str(path)}]
    with pytest.raises(SpecError) as err:
        make_routing(RoutingRef(model="mixture", params={"components": components}), _moe())
    assert err.value.path == "experts.routing.components[0].model"


# ---------------------------------------------------------------- loading a scenario


CLUSTER = """\
version: 1
kind: cluster
name: mixtral-trace
nodes: {system: DGX-H100, count: 1}
deployment:
  model: mixtral-8x7b
  dtypes: {weights: bf16, activations: bf16, kv: bf16}
  pools:
    - {name: main, replicas: 1, parallelism: {tp: 4}}
  experts: {routing: ROUTING}
"""


def test_scenario_resolves_trace_files_next_to_the_cluster_file_and_hashes_them(tmp_path):
    from hwsim.io.scenario import file_sha256, load_scenario

    moe = MoESpec(num_experts=8, top_k=2, expert_ffn_dim=14336)
    trace = token_trace(make_routing(RoutingRef(), moe), np.random.default_rng(0), 64, 4)
    (tmp_path / "data").mkdir()
    write_routing_trace(tmp_path / "data" / "routing.npz", trace)
    (tmp_path / "data" / "counts.csv").write_text("layer,expert,count\n" + "".join(f"0,{e},{e + 1}\n" for e in range(8)))
    routing = ("{model: mixture, components: [{weight: 1, model: trace, file: data/counts.csv}]}")
    (tmp_path / "mix.yaml").write_text(CLUSTER.replace("ROUTING", routing))
    scenario = load_scenario(tmp_path / "mix.yaml")
    assert str(tmp_path / "data" / "counts.csv") in scenario.input_hashes
    (tmp_path / "ids.yaml").write_text(CLUSTER.replace("ROUTING", "{model: trace, file: data/routing.npz}"))
    scenario = load_scenario(tmp_path / "ids.yaml")
    file = str(tmp_path / "data" / "routing.npz")
    assert scenario.input_hashes[file] == file_sha256(file)
    model = make_routing(scenario.deployment.experts.routing, scenario.model.moe)
    assert isinstance(model, TraceRouting)
    np.testing.assert_array_equal(model.step_counts(np.random.default_rng(0), 64, 1), trace.counts()[1])
    (tmp_path / "gone.yaml").write_text(CLUSTER.replace("ROUTING", "{model: trace, file: nowhere.npz}"))
    with pytest.raises(SpecError) as err:
        load_scenario(tmp_path / "gone.yaml")
    assert err.value.path == "deployment.experts.routing.file" and err.value.file.endswith("gone.yaml")
