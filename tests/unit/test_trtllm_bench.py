"""trtllm-bench's heuristic engine limits (bench/build/tuning.py), as the validation replays use them."""

from __future__ import annotations

import pytest

from hwsim.io.scenario import load_scenario
from hwsim.validate.shared import REPO
from hwsim.validate.trtllm_bench import bench_limits, with_bench_limits

GIB = 2**30
QWEN_H100 = REPO / "validation" / "scenarios" / "trtllm-perf-overview-qwen3-235b-h100.yaml"


@pytest.fixture(scope="module")
def qwen():
    return load_scenario(QWEN_H100)


def _limits(model, **kw):
    args = dict(tp=8, pp=1, device_bytes=80e9, weight_dtype="fp8", kv_dtype="fp8", input_tokens=128,
                output_tokens=2048)
    return bench_limits(model, **(args | kw))


def test_requests_follow_the_memory_formula(qwen):
    m = qwen.model
    # 2 x 94 layers x max(tp 8, 4 KV heads) x 128 x 1 byte per token; FP8 weights; 8 x 80 GB
    token_gib = 2 * 94 * 8 * 128 / GIB
    expected = 0.95 * (8 * 80e9 / GIB - m.total_params / GIB) / (token_gib * (128 + 2048))
    lim = _limits(m)
    assert lim.kv_cache_max_requests == pytest.approx(expected, rel=1e-12)
    assert 900 < expected < 1000
    assert lim.max_batch_size == 1024          # 918 rounded up to a multiple of 128
    assert lim.max_num_tokens == 2048          # 918 x (1 + 128/2048) = 976, raised to the 2048 floor


def test_without_chunking_the_token_budget_holds_the_longest_prompt_and_the_batch(qwen):
    lim = _limits(qwen.model, input_tokens=5000, output_tokens=500)
    assert lim.max_batch_size == 384           # 363 requests, rounded up to 128
    assert lim.max_num_tokens == 5000 + 384    # the heuristic's 4096 is below one prompt
    chunked = _limits(qwen.model, input_tokens=5000, output_tokens=500, chunked_prefill=True)
    assert chunked.max_num_tokens == 4096


def test_caps_and_rounding(qwen):
    huge = _limits(qwen.model, device_bytes=10e12, input_tokens=1000, output_tokens=100)
    assert huge.max_batch_size == 4096 and huge.max_num_tokens == 32768
    tight = _limits(qwen.model, device_bytes=31e9)   # 248 GB for 235 GB of weights: a few requests
    assert tight.kv_cache_max_requests < 64 and tight.max_batch_size == 64
    two_stages = _limits(qwen.model, tp=4, pp=2)
    one_stage = _limits(qwen.model)
    # at tp 4 each rank keeps one of the 4 KV heads instead of a padded 8: twice the requests,
    # which the two stages split
    assert two_stages.kv_cache_max_requests == pytest.approx(2 * one_stage.kv_cache_max_requests)
    assert two_stages.max_batch_size == 1024


def test_weights_that_do_not_fit_are_an_error(qwen):
    with pytest.raises(ValueError, match="do not fit"):
        _limits(qwen.model, device_bytes=20e9)


def test_attention_dp_ranks_each_take_the_limits(qwen):
    s = with_bench_limits(qwen, input_tokens=128, output_tokens=2048)
    sched = s.deployment.pools[0].scheduler
    assert s.deployment.pools[0].parallelism.attention_dp == 8
    assert sched.max_seqs == 8 * 1024 and sched.max_batched_tokens == 8 * 2048
    assert sched.kv_reservation == "full"      # the scenario's, untouched
    assert qwen.deployment.pools[0].scheduler.max_seqs == 3000
