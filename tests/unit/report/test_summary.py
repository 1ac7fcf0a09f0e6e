"""summarize(): every headline metric against numbers worked out by hand from conftest.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsim.report.summary import distribution, summarize, weighted_distribution

from .conftest import NAN, POOL, REQUESTS, STEPS, make_result


def test_counts_and_rejection_reasons(result):
    s = summarize(result, version="9.9")
    assert s["requests"] == {
        "total": 5, "finished": 3, "unfinished": 1, "rejected": 1, "measured": 3,
        "rejection_reasons": {"needs 10009 tokens; the context window is 4096": 1},
    }
    assert s["preemptions"] == 1
    assert (s["hwsim_version"], s["seed"]) == ("9.9", 7)


def test_throughput_over_first_arrival_to_last_finish(result):
    th = summarize(result, version="0")["throughput"]
    # finished: arrivals 0, 1, 2; last finish 4.0 -> window 4 s; 5+1+3 tokens out, 350 in; 8 devices
    assert th["window_s"] == pytest.approx(4.0)
    assert th["requests_per_s"] == pytest.approx(3 / 4)
    assert th["output_tokens_per_s"] == pytest.approx(9 / 4)
    assert th["input_tokens_per_s"] == pytest.approx(350 / 4)
    assert th["output_tokens_per_s_per_device"] == pytest.approx(9 / 4 / 8)
    assert th["input_tokens_per_s_per_device"] == pytest.approx(350 / 4 / 8)


def test_latencies_of_finished_requests_only(result):
    lat = summarize(result, version="0")["latency"]
    assert lat["ttft_s"]["count"] == 3  # the unfinished request's TTFT (1.5 s) is left out
    assert lat["ttft_s"]["mean"] == pytest.approx((0.5 + 0.2 + 1.0) / 3)
    assert lat["ttft_s"]["p50"] == pytest.approx(0.5)
    assert lat["ttft_s"]["p90"] == pytest.approx(np.percentile([0.5, 0.2, 1.0], 90))
    # TPOT excludes the first token, and the one-token request has none
    assert lat["tpot_s"] == pytest.approx({"count": 2, "mean": 0.5, "p50": 0.5, "p90": 0.5, "p99": 0.5})
    assert lat["e2e_s"]["mean"] == pytest.approx((2.5 + 0.2 + 2.0) / 3)
    assert lat["queue_s"]["mean"] == pytest.approx((0.1 + 0.0 + 0.5) / 3)


def test_itl_is_decode_step_durations_weighted_by_sequences(result):
    itl = summarize(result, version="0")["latency"]["itl_s"]
    expanded = [1.0] + [0.5] * 2 + [1.0] * 3  # steps 1, 3, 4 decoded 1, 2, 3 sequences
    assert itl["count"] == 6
    assert itl["mean"] == pytest.approx(np.mean(expanded))
    for q in (50, 90, 99):
        assert itl[f"p{q}"] == pytest.approx(np.percentile(expanded, q))


def test_weighted_percentiles_equal_repeating_the_values():
    rng = np.random.default_rng(0)
    values, counts = rng.random(40), rng.integers(0, 7, 40)
    got = weighted_distribution(values, counts)
    want = distribution(np.repeat(values, counts))
    assert got == pytest.approx(want)


@pytest.mark.parametrize(("ttft", "tpot", "good"), [
    (0.6, None, 2),    # TTFT 0.5 and 0.2 meet it, 1.0 does not
    (None, 0.4, 1),    # TPOT 0.5, 0.5 miss; the one-token request has no TPOT and meets it
    (None, 0.5, 3),    # the bound is inclusive
    (0.6, 0.4, 1),
    (0.1, 0.5, 0),
])
def test_goodput_counts_requests_meeting_every_slo(result, ttft, tpot, good):
    g = summarize(result, slo_ttft_s=ttft, slo_tpot_s=tpot, version="0")["goodput"]
    assert g["requests"] == good
    assert g["requests_per_s"] == pytest.approx(good / 4.0)
    assert g["attainment"] == pytest.approx(good / 3)


def test_goodput_without_slo_is_null(result):
    g = summarize(result, version="0")["goodput"]
    assert g["requests_per_s"] is None and g["requests"] is None


def test_energy_integrates_steps_and_idle_time(result):
    p = summarize(result, version="0")["power"]
    busy = sum(s[10] * s[3] for s in STEPS) * 4            # W x s x 4 devices per replica = 4980 J
    idle = ((5.0 - 2.9) + (5.0 - 0.2)) * 100.0 * 4         # replica 0 busy 2.9 s, replica 1 0.2 s
    assert p["busy_energy_j"] == pytest.approx(busy)
    assert p["idle_energy_j"] == pytest.approx(idle)
    assert p["energy_j"] == pytest.approx(7740.0)
    assert p["output_tokens"] == 13                          # every generated token, unfinished too
    assert p["joules_per_output_token"] == pytest.approx(7740.0 / 13)
    assert p["mean_power_w_per_device"] == pytest.approx(7740.0 / (5.0 * 8))
    assert p["peak_power_w_per_device"] == pytest.approx(600.0)
    assert p["pools"][0]["mean_power_w"] == pytest.approx(7740.0 / 5.0)


def test_usd_per_million_output_tokens(result):
    c = summarize(result, version="0")["cost"]
    assert c["usd"] == pytest.approx(0.01 * 5.0)
    assert c["usd_per_million_output_tokens"] == pytest.approx(0.05 / 13 * 1e6)


def test_unpriced_pool_gives_null_cost():
    from dataclasses import replace

    c = summarize(make_result(pools=(replace(POOL, usd_per_s=None),)), version="0")["cost"]
    assert c["usd_per_million_output_tokens"] is None and c["unpriced_pools"] == ["main"]


def test_kv_hbm_batch_imbalance_and_communication(result):
    s = summarize(result, version="0")
    pool = s["memory"]["pools"][0]
    assert pool["kv_use_peak"] == pytest.approx(0.5)
    assert pool["kv_use_mean"] == pytest.approx((0.07 * 0.4 + 0.07 * 1.0 + 0.5 * 0.5 + 0.2 * 1.0) / 3.1)
    assert pool["hbm_peak_bytes_per_device"] == pytest.approx(40e9 + 0.5 * 40e9)
    assert s["batch"]["mean"] == pytest.approx(2.0)  # 1, 1, 1, 2+1, 3+1
    assert s["batch"]["max"] == pytest.approx(4.0)
    ex = s["experts"]
    assert ex["step_imbalance_mean"] == pytest.approx(1.36, rel=1e-6)
    assert ex["step_imbalance_max"] == pytest.approx(2.0)
    assert ex["expert_load_max_over_mean_mean"] == pytest.approx(2.5)
    assert ex["expert_load_max_over_mean_max"] == pytest.approx(4.0)
    assert s["communication"]["fraction_of_step_time"] == pytest.approx(0.25)


def test_run_provenance(result):
    s = summarize(result, inputs={"trace.json": "ab12"}, version="0")
    assert s["inputs"] == {"trace.json": "ab12"}
    assert s["run"]["events_per_s"] == pytest.approx(200.0)
    assert s["run"]["speedup"] == pytest.approx(10.0)


def test_warmup_drops_early_requests(result):
    s = summarize(result, warmup_s=0.5, version="0")
    assert s["requests"]["measured"] == 2
    assert s["throughput"]["window_s"] == pytest.approx(3.0)  # arrival 1.0 .. finish 4.0


def test_no_finished_request_gives_nulls_and_valid_json():
    unfinished = [r[:5] + (NAN,) + r[6:11] + (1,) for r in REQUESTS[:3]]
    s = summarize(make_result(requests=unfinished, rejections=()), slo_ttft_s=1.0, version="0")
    assert s["latency"]["ttft_s"] == {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None}
    assert s["throughput"]["output_tokens_per_s"] is None
    assert s["goodput"]["requests_per_s"] is None
    json.dumps(s, allow_nan=False)


def test_summary_is_json_and_deterministic(result):
    a = json.dumps(summarize(result, slo_ttft_s=1.0, version="0"), allow_nan=False)
    b = json.dumps(summarize(make_result(), slo_ttft_s=1.0, version="0"), allow_nan=False)
    assert a == b
    s = json.loads(a)
    assert list(s) == sorted(s) and list(s["latency"]) == sorted(s["latency"])


def test_empty_result():
    s = summarize(make_result(requests=[], steps=[], rejections=(), expert_load=None), version="0")
    assert s["requests"]["total"] == 0
    assert s["power"]["energy_j"] == pytest.approx(5.0 * 100.0 * 8)  # idle all along
    assert s["batch"]["max"] is None
    json.dumps(s, allow_nan=False)
