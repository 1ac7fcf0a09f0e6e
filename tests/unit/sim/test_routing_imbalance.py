"""The simulator's per-step imbalance sampler follows the deployment's routing model."""

from __future__ import annotations

import dataclasses

import numpy as np

from hwsim.io.scenario import load_scenario
from hwsim.sim.routing import imbalance_sampler_factory
from hwsim.spec.deployment import RoutingRef


def test_zipf_is_more_imbalanced_than_uniform(repo_example):
    sc = load_scenario(repo_example)
    uni = dataclasses.replace(sc, deployment=dataclasses.replace(
        sc.deployment, experts=dataclasses.replace(sc.deployment.experts, routing=RoutingRef(model="uniform"))))
    pool = sc.deployment.pools[0]
    f_zipf, f_uni = imbalance_sampler_factory(sc), imbalance_sampler_factory(uni)
    s_zipf, s_uni = f_zipf(pool), f_uni(pool)
    rng = np.random.default_rng(0)
    z = np.mean([s_zipf(rng, 4096) for _ in range(20)])
    u = np.mean([s_uni(rng, 4096) for _ in range(20)])
    assert 1.0 < u < z
    assert f_zipf.expert_load.sum() == 20 * 4096 * 8  # one sampled layer per step, top-8
    assert (f_zipf.expert_load.sum(axis=1) > 0).all()  # the layers take turns


def test_dense_models_have_no_sampler(tmp_path):
    from pathlib import Path

    src = (Path(__file__).resolve().parents[3] / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml").read_text()
    f = tmp_path / "c.yaml"
    f.write_text(src.replace("qwen3-30b-a3b", "qwen3-32b"))
    assert imbalance_sampler_factory(load_scenario(f)) is None
