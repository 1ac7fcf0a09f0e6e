"""Closed-form estimates: consistent with the step cost, memory and prices."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.io.scenario import load_scenario
from hwsim.perf.estimate import estimate

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def qwen():
    return load_scenario(REPO / "examples" / "h100-qwen3-30b-a3b" / "cluster.yaml")


def test_unified_estimate_is_self_consistent(qwen):
    e = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=256)
    (p,) = e.pools
    assert p.batch == min(128, p.kv_limited_batch)
    # continuous batching: batch x tokens per step / step time
    assert e.output_tokens_per_s == pytest.approx(p.batch / p.step_s)
    assert e.requests_per_s == pytest.approx(e.output_tokens_per_s / 256)
    assert e.tpot_s == pytest.approx(p.step_s)
    assert e.ttft_s == pytest.approx(1 * p.step_s)  # a 1024-token prompt fits one 2048-token chunk
    # one H100 at 2 USD/h
    assert e.usd_per_s == pytest.approx(2.0 / 3600)
    assert e.usd_per_million_output_tokens == pytest.approx(e.usd_per_s / e.output_tokens_per_s * 1e6)
    assert e.joules_per_output_token == pytest.approx(e.power_w / e.output_tokens_per_s)
    assert p.footprint.kv_bytes <= p.footprint.kv_free_bytes


def test_bigger_batch_more_throughput_slower_tokens(qwen):
    small = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=512, output_tokens=128, batch=8)
    large = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=512, output_tokens=128, batch=64)
    assert large.output_tokens_per_s > small.output_tokens_per_s
    assert large.tpot_s > small.tpot_s


def test_disaggregated_estimate_balances_pools(datadir):
    sc = load_scenario(datadir / "good_deploy_disagg.yaml")
    e = estimate(sc.cluster, sc.model, sc.deployment, input_tokens=2048, output_tokens=512)
    pre, dec = e.pools
    assert e.requests_per_s == pytest.approx(min(pre.requests_per_s, dec.requests_per_s))
    assert e.ttft_s > pre.ttft_s  # the KV transfer to the decode pool is added
    assert e.tpot_s == pytest.approx(dec.step_s / 1.8)  # MTP: 1.8 tokens per step at 80% acceptance
    assert e.devices == 16


def test_longer_outputs_cost_more_per_request(qwen):
    a = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=128)
    b = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=1024)
    assert b.requests_per_s < a.requests_per_s
