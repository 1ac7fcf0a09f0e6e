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


def test_closed_loop_clients_cap_the_batch_and_share_the_throughput(qwen):
    few = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=256, concurrency=4)
    (p,) = few.pools
    assert p.batch == 4
    assert few.tokens_per_s_per_user == pytest.approx(few.output_tokens_per_s / 4)
    assert few.request_latency_s == pytest.approx(4 / few.requests_per_s)
    # every running user is served: in the unified steady state each step already carries its
    # share of prompt work, so a user's rate is one token per (mixed) step
    assert few.tokens_per_s_per_user == pytest.approx(1 / few.tpot_s)
    many = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=256,
                    concurrency=100_000)
    free = estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=1024, output_tokens=256)
    assert many.pools[0].batch == free.pools[0].batch  # the scheduler and KV cap still bind
    assert many.output_tokens_per_s == pytest.approx(free.output_tokens_per_s)
    assert many.tokens_per_s_per_user == pytest.approx(free.output_tokens_per_s / 100_000)
    with pytest.raises(ValueError, match="concurrency"):
        estimate(qwen.cluster, qwen.model, qwen.deployment, input_tokens=8, output_tokens=8, concurrency=0)


def test_prompts_are_lumps_on_one_attention_dp_rank():
    import numpy as np

    from hwsim.perf.estimate import _mixed_batch
    from hwsim.spec.deployment import Parallelism, Pool, SchedulerLimits

    sched = SchedulerLimits(max_seqs=6000, max_batched_tokens=16384, chunked_prefill_tokens=2048)
    pool = Pool(name="p", parallelism=Parallelism(attention_dp=8, ep=8), scheduler=sched)
    b, inp, out = 6000, 1000, 2000
    batch = _mixed_batch(pool, b, inp, out)
    new = batch.prefill_new_tokens
    total = b * inp / out                      # 3000 prompt tokens: 3 prompts over 8 ranks
    assert new.sum() == pytest.approx(total, abs=len(new))
    assert new[0] == max(new) == inp           # rank 0 (round-robin) runs one whole prompt
    # the token budget admits 12.4 prompts per step: the busiest rank would start 2, but its
    # share of the budget (12384 / 8 tokens) caps it
    many = _mixed_batch(pool, 4000, inp, 200)
    assert many.prefill_new_tokens[0] == pytest.approx(min(2 * inp, (16384 - 4000) / 8), abs=1)
    assert many.prefill_new_tokens[0] < 2 * inp
    # one rank: the prompts are chunks of one queue, nothing to balance
    one = _mixed_batch(Pool(name="q", scheduler=sched), 600, inp, out)
    assert one.prefill_new_tokens.sum() == pytest.approx(300, abs=1)
    assert np.all(one.prefill_new_tokens <= 2048)
