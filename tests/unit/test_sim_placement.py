"""The simulator with real expert placements: imbalance per strategy, per-device load, EP hotspots."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hwsim.io.placement import dump_placement
from hwsim.io.scenario import load_scenario
from hwsim.perf.batch import Batch
from hwsim.perf.step import StepCost, link_traffic
from hwsim.report.experts import device_load_stats, hotspot_rows
from hwsim.report.summary import summarize
from hwsim.sim.routing import ExpertSampling, expected_routing_counts, imbalance_sampler_factory
from hwsim.sim.run import simulate
from hwsim.spec.deployment import RoutingRef
from hwsim.workload.placement import place_layers
from hwsim.workload.request import Request

CLUSTER = """\
version: 1
kind: cluster
name: sim-placement
nodes: {{system: DGX-H100, count: 1}}
deployment:
  model: {model}
  pools:
    - name: main
      parallelism: {{tp: 1, attention_dp: 8, ep: 8}}
      scheduler: {{max_seqs: 64, max_batched_tokens: 4096, chunked_prefill: 1024}}
  experts: {{placement: {placement}, redundant: {redundant}, routing: {routing}{extra}}}
"""
ZIPF = "{model: zipf, skew: 1.2}"


def scenario(tmp_path: Path, placement: str, *, redundant: int = 0, routing: str = ZIPF, model: str = "qwen3-30b-a3b",
             placement_file: str | None = None):
    extra = f", placement_file: {placement_file}" if placement_file else ""
    path = tmp_path / f"{model}-{placement}-{redundant}-{abs(hash(routing))}.yaml"
    path.write_text(CLUSTER.format(model=model, placement=placement, redundant=redundant, routing=routing,
                                   extra=extra))
    return load_scenario(path)


def requests(n=40, seed=1):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(0.05, n))
    return [Request(request_id=i, arrival_s=float(t[i]), input_tokens=int(rng.integers(200, 1500)),
                    output_tokens=int(rng.integers(10, 60))) for i in range(n)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("placement")
    reqs = requests()
    out = {}
    for name, placement, redundant in (("contiguous", "contiguous", 0), ("eplb", "eplb", 0),
                                       ("eplb+16", "eplb", 16)):
        sc = scenario(tmp, placement, redundant=redundant)
        out[name] = (sc, simulate(sc, reqs, seed=0, imbalance_sampler_factory=imbalance_sampler_factory(sc)))
    return out


def test_eplb_reports_lower_imbalance_than_contiguous_on_zipf(runs):
    step = {k: float(np.mean(r.steps["imbalance"])) for k, (_, r) in runs.items()}
    device = {k: device_load_stats(r)[0]["max_over_mean_mean"] for k, (_, r) in runs.items()}
    assert step["eplb"] < step["contiguous"] and device["eplb"] < device["contiguous"]
    assert step["eplb+16"] < step["eplb"] and device["eplb+16"] < device["eplb"]  # replicas help further


def test_rank_loads_conserve_the_sampled_tokens(runs):
    for sc, res in runs.values():
        (load,) = res.rank_loads
        assert load.pool == "main" and load.tokens.shape == (2, 8)
        assert load.placement == sc.deployment.experts.placement
        np.testing.assert_allclose(load.tokens.sum(axis=1), res.expert_load.sum(axis=1))
        # every step with tokens sampled one of the two layers
        assert load.steps.sum() == len(res.steps["imbalance"])
        stats = summarize(res, version="0")["experts"]["devices"][0]
        assert stats["ep"] == 8 and len(stats["layers"][0]["tokens_per_step"]) == 8


def test_file_placement_simulates_like_the_strategy_that_wrote_it(tmp_path, runs):
    sc_eplb, res_eplb = runs["eplb+16"]
    sampling = ExpertSampling(sc_eplb)
    layers = list(range(sc_eplb.model.num_moe_layers))
    loads = np.stack([sampling.routing.inclusion(layer) for layer in layers])
    table = place_layers("eplb", loads, layers, 8, redundant=16).to_table(model=sc_eplb.model.name)
    (tmp_path / "placement.yaml").write_text(dump_placement(table))
    sc = scenario(tmp_path, "file", redundant=16, placement_file="placement.yaml")
    res = simulate(sc, requests(), seed=0, imbalance_sampler_factory=imbalance_sampler_factory(sc))
    np.testing.assert_array_equal(res.steps["imbalance"], res_eplb.steps["imbalance"])
    np.testing.assert_array_equal(res.requests["finish_s"], res_eplb.requests["finish_s"])


def test_moge_is_exactly_balanced_and_plain_topk_is_not(tmp_path):
    pangu = scenario(tmp_path, "contiguous", routing="{model: uniform}", model="pangu-pro-moe-72b")
    topk_moe = dataclasses.replace(pangu.model.moe, moge=False)
    topk = dataclasses.replace(pangu, model=dataclasses.replace(pangu.model, moe=topk_moe))
    pool = pangu.deployment.pools[0]
    rng = np.random.default_rng(0)
    moge_sampler, topk_sampler = imbalance_sampler_factory(pangu)(pool), imbalance_sampler_factory(topk)(pool)
    for tokens in (16, 256, 4096):
        assert [moge_sampler(rng, tokens) for _ in range(20)] == [1.0] * 20
        assert min(topk_sampler(rng, tokens) for _ in range(20)) > 1.0


def test_hotspot_bytes_conserve_the_dispatch_bytes(runs):
    sc, res = runs["eplb+16"]
    sampling = ExpertSampling(sc)
    pool = sc.deployment.pools[0]
    token_bytes, tokens = 4096.0, {"normal": 8000.0, "low-latency": 2000.0}
    links = sampling.ep_link_bytes(pool, tokens, token_bytes)
    # on one NVSwitch node a flow leaves its device on exactly one link, so the bytes on the links
    # out of the devices are the bytes every rank sends, dispatch and combine, over all MoE layers
    leaving = sum(b for (u, _), b in links.items() if ".d" in u)
    share = [sampling.placement(pool).at(layer).share for layer in sampling.layers]
    sent = 0.0
    for pick, s in zip(sampling.pick_rates(), share, strict=True):
        for mode, n in tokens.items():
            c = expected_routing_counts(pick, s, n / 8, np.zeros(8, dtype=np.int64))
            m = c.pairs_to_rank if mode == "low-latency" else c.tokens_to_rank
            sent += 2 * token_bytes * (m.sum() - np.trace(m))
    sent *= sc.model.num_moe_layers / len(sampling.layers)
    assert leaving == pytest.approx(sent, rel=1e-9)
    # the run's hotspot table holds the same EP traffic, and the link totals include it
    rows = hotspot_rows(res)
    assert rows and rows[0]["bytes"] == max(r["bytes"] for r in rows)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    for use in res.ep_links:
        assert res.link_bytes[(use.src, use.dst)] >= use.bytes - 1e-6 * use.bytes
        assert use.kind == "nvlink" and use.bandwidth_bytes_per_s > 0


def test_placed_traffic_matches_the_uniform_pattern_under_uniform_routing(tmp_path):
    sc = scenario(tmp_path, "contiguous", routing="{model: uniform}")
    pool = sc.deployment.pools[0]
    cost = StepCost(sc.cluster, sc.model, sc.deployment, pool)
    token_bytes = sc.model.hidden_size * 2.0
    sampling = ExpertSampling(sc)
    for mode, batch in (("low-latency", Batch.decode(512, 512)), ("normal", Batch.prefill(1, 512))):
        full, tp_only = link_traffic(cost, batch), link_traffic(cost, batch, ep=False)
        uniform = {e: b - tp_only.get(e, 0.0) for e, b in full.items()}
        placed = sampling.ep_link_bytes(pool, {mode: 512.0}, token_bytes)
        assert set(placed) == {e for e, b in uniform.items() if b > 0}
        for edge, b in placed.items():  # one-token picks vs independent picks: close, not equal
            assert b == pytest.approx(uniform[edge], rel=0.03 if mode == "normal" else 1e-9)


def test_routing_models_change_what_eplb_builds(tmp_path):
    sc = scenario(tmp_path, "eplb")
    uni = dataclasses.replace(sc, deployment=dataclasses.replace(sc.deployment, experts=dataclasses.replace(
        sc.deployment.experts, routing=RoutingRef(model="uniform"))))
    pool = sc.deployment.pools[0]
    skewed, flat = ExpertSampling(sc).placement(pool), ExpertSampling(uni).placement(pool)
    assert not np.array_equal(skewed.at(0).slots, flat.at(0).slots)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pangu-moge-8npu"


@pytest.mark.parametrize("name", ["moge", "topk", "moge-ep8", "topk-ep8"])
def test_pangu_example_loads_and_moge_balances_every_step(name):
    sc = load_scenario(EXAMPLE / f"cluster-{name}.yaml")
    assert sc.model.moe.moge == name.startswith("moge")
    sample = imbalance_sampler_factory(sc)(sc.deployment.pools[0])
    rng = np.random.default_rng(0)
    ratios = [sample(rng, 16) for _ in range(50)]
    if name.startswith("moge"):
        assert ratios == [1.0] * 50
    else:
        assert np.mean(ratios) > 1.1
