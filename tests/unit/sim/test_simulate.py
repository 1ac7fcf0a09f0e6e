"""The serving simulator: conservation, capacity, determinism, and agreement with the cost model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwsim.io.scenario import load_scenario
from hwsim.perf.batch import Batch
from hwsim.perf.step import StepCost
from hwsim.sim.run import simulate
from hwsim.workload.request import Request

CLUSTER = """\
version: 1
kind: cluster
name: sim-test
nodes: {{system: DGX-H100, count: 1}}
deployment:
  model: qwen3-30b-a3b
  pools:
    - name: main
      replicas: {replicas}
      parallelism: {{tp: 1}}
      scheduler: {{max_seqs: {max_seqs}, max_batched_tokens: 4096, chunked_prefill: {chunk}, policy: {policy},
                  kv_reservation: {reservation}}}
  memory_reserve: {reserve}
"""


def scenario(tmp_path, *, replicas=1, max_seqs=64, chunk=1024, policy="fcfs", reserve="10%",
             reservation="on-demand"):
    path = tmp_path / f"c{replicas}_{max_seqs}_{chunk}_{policy}_{reserve.strip('%')}_{reservation}.yaml"
    path.write_text(CLUSTER.format(replicas=replicas, max_seqs=max_seqs, chunk=chunk, policy=policy,
                                   reserve=reserve, reservation=reservation))
    return load_scenario(path)


def poisson(n, rate, seed=1, inp=(200, 2000), out=(20, 300)):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, n))
    return [Request(request_id=i, arrival_s=float(t[i]), input_tokens=int(rng.integers(*inp)),
                    output_tokens=int(rng.integers(*out))) for i in range(n)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return scenario(tmp_path_factory.mktemp("sim"))


def test_every_request_finishes_and_tokens_are_conserved(base):
    reqs = poisson(300, 8.0)
    res = simulate(base, reqs, seed=0)
    r = res.requests
    assert len(r["request_id"]) == 300
    assert (r["status"] == 0).all()
    np.testing.assert_array_equal(r["generated_tokens"], r["output_tokens"])
    assert (r["first_token_s"] >= r["arrival_s"]).all()
    assert (r["finish_s"] >= r["first_token_s"]).all()
    # every prompt token was computed once (no preemption here)
    assert res.steps["prefill_tokens"].sum() == sum(q.input_tokens for q in reqs)


def test_kv_use_never_exceeds_capacity_and_preemption_recovers(tmp_path):
    sc = scenario(tmp_path, max_seqs=512)  # ~100k tokens of KV: long requests force preemption
    res = simulate(sc, poisson(200, 50.0, inp=(1000, 3000), out=(200, 600)), seed=0)
    cap = res.pools[0].kv_blocks_per_replica
    assert res.steps["kv_blocks_used"].max() <= cap
    assert res.requests["preemptions"].sum() > 0
    assert (res.requests["status"] == 0).all()
    np.testing.assert_array_equal(res.requests["generated_tokens"], res.requests["output_tokens"])


def test_full_kv_reservation_never_preempts_and_admits_fewer(tmp_path):
    """TensorRT-LLM's GUARANTEED_NO_EVICT: a sequence holds its whole length from admission."""
    reqs = poisson(200, 50.0, inp=(1000, 3000), out=(200, 600))
    lazy = simulate(scenario(tmp_path, max_seqs=512), reqs, seed=0)
    full = simulate(scenario(tmp_path, max_seqs=512, reservation="full"), reqs, seed=0)
    assert lazy.requests["preemptions"].sum() > 0
    assert full.requests["preemptions"].sum() == 0
    assert (full.requests["status"] == 0).all()
    np.testing.assert_array_equal(full.requests["generated_tokens"], full.requests["output_tokens"])
    cap = full.pools[0].kv_blocks_per_replica
    block = full.pools[0].kv_block_tokens
    assert full.steps["kv_blocks_used"].max() <= cap
    # every running sequence holds the blocks of its prompt and all its output: the running
    # batch is bounded by what fits at full length, below what on-demand allocation admits
    shortest = min(-(-(q.input_tokens + q.output_tokens) // block) for q in reqs)
    assert full.steps["running_seqs"].max() <= cap // shortest
    assert full.steps["running_seqs"].max() < lazy.steps["running_seqs"].max()
    # without preemption every prompt token is computed exactly once
    assert full.steps["prefill_tokens"].sum() == sum(q.input_tokens for q in reqs)


def test_full_kv_reservation_changes_nothing_when_everything_fits(base, tmp_path):
    reqs = poisson(100, 5.0)
    full = simulate(scenario(tmp_path, reservation="full"), reqs, seed=0)
    lazy = simulate(base, reqs, seed=0)
    np.testing.assert_allclose(full.requests["finish_s"], lazy.requests["finish_s"], rtol=1e-12)


def test_same_seed_same_result(base):
    reqs = poisson(100, 5.0)
    a, b = simulate(base, reqs, seed=3), simulate(base, reqs, seed=3)
    for k in a.requests:
        np.testing.assert_array_equal(a.requests[k], b.requests[k])
    for k in a.steps:
        np.testing.assert_array_equal(a.steps[k], b.steps[k])


def test_single_request_matches_the_cost_model(base):
    req = Request(request_id=0, arrival_s=0.0, input_tokens=1000, output_tokens=4)
    res = simulate(base, [req], seed=0)
    pool = base.deployment.pools[0]
    cost = StepCost(base.cluster, base.model, base.deployment, pool)
    prefill = cost.time_s(Batch(prefill_new_tokens=[1000], prefill_cached_tokens=[0], prefill_completes=[True]))
    decodes = sum(cost.time_s(Batch.decode(1, 1000 + i)) for i in range(1, 4))
    r = res.requests
    assert r["first_token_s"][0] == pytest.approx(prefill, rel=1e-9)
    assert r["finish_s"][0] == pytest.approx(prefill + decodes, rel=1e-9)


def test_more_replicas_never_lower_capacity(tmp_path):
    reqs = poisson(300, 30.0)
    one = simulate(scenario(tmp_path, replicas=1), reqs, seed=0)
    two = simulate(scenario(tmp_path, replicas=2), reqs, seed=0)
    assert np.nanmax(two.requests["finish_s"]) <= np.nanmax(one.requests["finish_s"]) + 1e-9
    ttft = lambda res: np.mean(res.requests["first_token_s"] - res.requests["arrival_s"])  # noqa: E731
    assert ttft(two) <= ttft(one)


def test_duration_reports_unfinished(base):
    res = simulate(base, poisson(200, 20.0), seed=0, duration_s=3.0)
    status = res.requests["status"]
    assert (status == 1).any() and (status == 0).any()
    assert len(status) == len(res.requests["request_id"])
    assert res.sim_time_s == pytest.approx(3.0)


def test_too_long_requests_are_rejected_with_a_reason(base):
    reqs = [Request(request_id=0, arrival_s=0.0, input_tokens=100, output_tokens=10),
            Request(request_id=1, arrival_s=0.1, input_tokens=50_000, output_tokens=10)]
    res = simulate(base, reqs, seed=0)
    assert list(res.requests["status"]) == [0, 2] or sorted(res.requests["status"]) == [0, 2]
    assert res.rejections[0].request_id == 1 and "context window" in res.rejections[0].reason


def test_priority_policy_serves_high_priority_first(tmp_path):
    sc = scenario(tmp_path, max_seqs=1, policy="priority")
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=500, output_tokens=20, priority=p)
            for i, p in enumerate([0, 0, 5])]
    res = simulate(sc, reqs, seed=0)
    order = np.argsort(res.requests["finish_s"])
    finished_ids = res.requests["request_id"][order]
    assert finished_ids[0] == 0 or finished_ids[0] == 2
    assert list(finished_ids).index(2) < list(finished_ids).index(1)


def test_prefix_cache_skips_cached_blocks(base):
    shared = tuple(range(4))
    reqs = [Request(request_id=i, arrival_s=i * 2.0, input_tokens=2048 + 100, output_tokens=5,
                    prefix_blocks=(*shared, 100 + i)) for i in range(3)]
    res = simulate(base, reqs, seed=0)
    cached = res.requests["cached_tokens"]
    assert cached[0] == 0 and cached[1] == 4 * 512 and cached[2] == 4 * 512
    assert res.steps["prefill_tokens"].sum() == sum(r.input_tokens for r in reqs) - 2 * 2048
    assert math.isclose(res.requests["generated_tokens"].sum(), 15)


def test_disaggregated_pools_transfer_kv(datadir):
    sc = load_scenario(datadir / "good_deploy_disagg.yaml")
    reqs = poisson(60, 10.0, inp=(500, 3000), out=(10, 100))
    res = simulate(sc, reqs, seed=0)
    r = res.requests
    assert (r["status"] == 0).all()
    np.testing.assert_array_equal(r["generated_tokens"], r["output_tokens"])
    pools = res.steps["pool"]
    assert set(np.unique(pools)) == {0, 1}
    # decode steps run only on the decode pool, prompts only on the prefill pool
    assert res.steps["prefill_tokens"][pools == 1].sum() == 0
    assert res.steps["decode_seqs"][pools == 0].sum() == 0
    assert res.link_bytes  # KV crossed the cluster's links
    kv = sum(sc.model.kv_bytes(q.input_tokens, sc.deployment.dtypes.kv) for q in reqs)
    nic = sum(b for (u, v), b in res.link_bytes.items() if ".nic" in u and "leaf" in v)
    assert nic == pytest.approx(kv, rel=1e-6)  # each request's KV crosses one NIC uplink once


def test_power_cap_slows_compute_bound_work_and_lowers_power(base):
    reqs = poisson(80, 40.0, inp=(3000, 6000), out=(2, 5))  # prefill-heavy: compute bound
    free = simulate(base, reqs, seed=0)
    capped = simulate(base, reqs, seed=0, power_cap_w=350.0)
    assert capped.steps["power_w"].max() <= 350.0 + 1e-6
    assert free.steps["power_w"].max() > 350.0
    assert np.nanmax(capped.requests["finish_s"]) > np.nanmax(free.requests["finish_s"])


def test_unsettable_power_cap_is_an_input_error(base):
    from hwsim.errors import SpecError

    with pytest.raises(SpecError, match="outside the settable range"):
        simulate(base, poisson(2, 1.0), seed=0, power_cap_w=2000.0)


def test_faster_links_are_never_slower(datadir):
    import dataclasses

    sc = load_scenario(datadir / "good_deploy_disagg.yaml")
    grp = sc.cluster.groups[0]
    nics = grp.node.nics
    fast_link = dataclasses.replace(nics.link, bandwidth_bytes_per_s=nics.link.bandwidth_bytes_per_s * 4)
    fast_node = dataclasses.replace(grp.node, nics=dataclasses.replace(nics, link=fast_link))
    fast_cluster = dataclasses.replace(sc.cluster, groups=(dataclasses.replace(grp, node=fast_node),))
    fast = dataclasses.replace(sc, cluster=fast_cluster)
    reqs = poisson(40, 20.0, inp=(2000, 6000), out=(5, 20))
    slow_res, fast_res = simulate(sc, reqs, seed=0), simulate(fast, reqs, seed=0)
    e2e = lambda r: np.mean(r.requests["finish_s"] - r.requests["arrival_s"])  # noqa: E731
    assert e2e(fast_res) <= e2e(slow_res) + 1e-9


def test_ep_all_to_all_traffic_is_reported_per_link(repo_example):
    sc = load_scenario(repo_example)
    res = simulate(sc, poisson(30, 10.0), seed=0)
    kinds = {sc.cluster.graph().edges[e]["kind"] for e in res.link_bytes}
    assert {"infiniband", "nvlink"} <= kinds  # EP32 over 4 nodes: dispatch/combine cross NICs and NVLink
    assert all(b > 0 for b in res.link_bytes.values())


def test_a_batch_queued_at_once_decodes_step_by_step_as_the_cost_model_says(tmp_path):
    """Decode runs (steps planned in O(1) while nothing can change them) cost exactly what
    planning every step would: one prefill step for the batch, then one decode step per token
    at the batch's growing KV length."""
    sc = scenario(tmp_path, max_seqs=64, chunk=4096, reservation="full")
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=100, output_tokens=50) for i in range(16)]
    res = simulate(sc, reqs, seed=0)
    pool = sc.deployment.pools[0]
    cost = StepCost(sc.cluster, sc.model, sc.deployment, pool)
    prefill = cost.time_s(Batch(prefill_new_tokens=[100] * 16, prefill_cached_tokens=[0] * 16,
                                prefill_completes=[True] * 16))
    decodes = sum(cost.time_s(Batch.decode(16, 100 + i)) for i in range(1, 50))
    r = res.requests
    np.testing.assert_allclose(r["first_token_s"], prefill, rtol=1e-9)
    np.testing.assert_allclose(r["finish_s"], prefill + decodes, rtol=1e-9)
    np.testing.assert_array_equal(r["generated_tokens"], 50)
    assert len(res.steps["start_s"]) == 50


def test_an_arrival_ends_a_decode_run_at_the_next_step(tmp_path):
    sc = scenario(tmp_path, max_seqs=64, chunk=4096, reservation="full")
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=100, output_tokens=200) for i in range(8)]
    reqs.append(Request(request_id=8, arrival_s=0.5, input_tokens=100, output_tokens=10))
    res = simulate(sc, reqs, seed=0)
    starts = res.steps["start_s"]
    late = np.flatnonzero(res.requests["request_id"] == 8)[0]
    first_after = starts[np.searchsorted(starts, 0.5)]   # the first step to start after it arrived
    assert res.requests["first_scheduled_s"][late] == pytest.approx(first_after)
    assert (res.requests["status"] == 0).all()
    np.testing.assert_array_equal(res.requests["generated_tokens"], res.requests["output_tokens"])
    # the late request's prefill step carried the others' decodes
    i = int(np.searchsorted(starts, 0.5))
    assert res.steps["prefill_tokens"][i] == 100 and res.steps["decode_seqs"][i] == 8


def test_on_demand_kv_grows_block_by_block_through_decode_runs(tmp_path):
    """On-demand KV: each sequence takes a block when it crosses a block boundary, also inside a
    decode run (blocks counted per step, paid out to the sequences when the run ends)."""
    sc = scenario(tmp_path, max_seqs=64, chunk=4096)
    reqs = [Request(request_id=i, arrival_s=0.0, input_tokens=100, output_tokens=50) for i in range(16)]
    res = simulate(sc, reqs, seed=0)
    bt = res.pools[0].kv_block_tokens
    used = res.steps["kv_blocks_used"]
    assert used[0] == 16 * -(-100 // bt)                       # the prompts
    for j in range(1, 49):                                     # decode step j holds 101 + j tokens
        assert used[j] == 16 * -(-(101 + j) // bt), j
    assert used[49] == 0                                       # the last step's sequences finished
    pool = sc.deployment.pools[0]
    cost = StepCost(sc.cluster, sc.model, sc.deployment, pool)
    prefill = cost.time_s(Batch(prefill_new_tokens=[100] * 16, prefill_cached_tokens=[0] * 16,
                                prefill_completes=[True] * 16))
    decodes = sum(cost.time_s(Batch.decode(16, 100 + i)) for i in range(1, 50))
    np.testing.assert_allclose(res.requests["finish_s"], prefill + decodes, rtol=1e-9)
