"""Step cost: plan rows agree with the operator wrappers; physical properties hold."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwsim.io.load import load_cluster, load_model
from hwsim.io.scenario import load_scenario
from hwsim.perf import operators as ops
from hwsim.perf import step_kernel as sk
from hwsim.perf.batch import Batch
from hwsim.perf.step import StepCost
from hwsim.spec.deployment import Deployment, Dtypes, Parallelism, Pool, Speculative
from hwsim.spec.hardware import MemoryTier

REPO_EXAMPLE = "examples/dgx-h100-deepseek-v3/cluster.yaml"


@pytest.fixture(scope="module")
def dsv3():
    from pathlib import Path

    return load_scenario(Path(__file__).resolve().parents[3] / REPO_EXAMPLE)


def step_for(cluster, model, *, par, dtypes=None, overlap="none", spec=None, first=0):
    pool = Pool(name="p", parallelism=par, first_device=first)
    dep = Deployment(model_name=model.name, dtypes=dtypes or Dtypes(), pools=(pool,), overlap=overlap,
                     speculative=spec or Speculative())
    return StepCost(cluster, model, dep, pool)


@pytest.fixture(scope="module")
def mixtral_tp8():
    return step_for(load_cluster("4x-DGX-H100"), load_model("mixtral-8x7b"), par=Parallelism(tp=8))


def row(step, name):
    return step.plan.names.index(name)


def test_plan_rows_match_the_operator_wrappers(mixtral_tp8):
    s = mixtral_tp8
    b = Batch.decode(64, 1000)
    out, _ = s._evaluate(b)
    dev = s.device
    m = load_model("mixtral-8x7b")
    att = m.attention
    # qkv projection: m = 64 tokens (tp=8 attention group sees every sequence), n = (H + 2 Hkv) d / tp
    ref = ops.gemm(dev, 64, (att.num_heads + 2 * att.num_kv_heads) * att.head_dim // 8, m.hidden_size,
                   dtype="bf16", weight_dtype="bf16")
    assert out[row(s, "moe.qkv_proj"), 0] == pytest.approx(ref.time_s)
    assert out[row(s, "moe.qkv_proj"), 1] == pytest.approx(ref.flop)
    # decode attention over kv = 1000 cached + 1 new token, 32/8 heads, 8/8 kv heads
    ref = ops.attention_decode(dev, att, kv_lens=[1001] * 64, heads=4, kv_heads=1, dtype="bf16", kv_dtype="bf16")
    assert out[row(s, "moe.attn_decode"), 0] == pytest.approx(ref.time_s)
    assert out[row(s, "moe.attn_decode"), 2] == pytest.approx(ref.bytes_moved)
    # experts: every device holds all 8 experts split 8-way (moe_tp = 8); 64 tokens x top-2 / 8 each
    tokens = int(np.ceil(64 * 2 / 8 * s.plan.uniform_imbalance(64)))
    ref = ops.grouped_gemm(dev, [tokens] * 8, 2 * 14336 // 8, 4096, dtype="bf16", weight_dtype="bf16", mode="masked")
    assert out[row(s, "moe.experts_up"), 0] == pytest.approx(ref.time_s)


def test_compiled_and_python_plan_agree(dsv3):
    s = StepCost(dsv3.cluster, dsv3.model, dsv3.deployment, dsv3.deployment.pools[0])
    p = s.plan
    rng = np.random.default_rng(0)
    for _ in range(5):
        kv = rng.integers(1, 4000, 16)
        new = rng.integers(1, 600, 3)
        src = np.array([70.0, 20.0, 9.0, 70.0, 300.0, 70.0])
        args = (p.kinds, p.sources, p.args, src, new, np.zeros(3, np.int64), kv, False)
        np.testing.assert_allclose(sk.eval_plan(*args), sk.eval_plan.py_func(*args), rtol=1e-12)


def test_more_tokens_never_cheaper(mixtral_tp8):
    times = [mixtral_tp8.time_s(Batch.decode(n, 2000)) for n in (1, 8, 64, 256)]
    assert times == sorted(times)
    pre = [mixtral_tp8.time_s(Batch.prefill(1, n)) for n in (128, 1024, 8192)]
    assert pre == sorted(pre)


def test_more_bandwidth_never_slower():
    cluster = load_cluster("4x-DGX-H100")
    model = load_model("qwen3-30b-a3b")
    base = step_for(cluster, model, par=Parallelism(tp=1))
    node = cluster.groups[0].node
    hbm = node.device.memory[0]
    faster = dataclasses.replace(node.device, memory=(dataclasses.replace(hbm, bandwidth_bytes_per_s=2 * hbm.bandwidth_bytes_per_s),))
    fast_cluster = dataclasses.replace(cluster, groups=(dataclasses.replace(cluster.groups[0], node=dataclasses.replace(node, device=faster)),))
    quick = step_for(fast_cluster, model, par=Parallelism(tp=1))
    b = Batch.decode(32, 4000)
    assert quick.time_s(b) < base.time_s(b)
    assert isinstance(hbm, MemoryTier)


def test_breakdown_sums_and_energy(mixtral_tp8):
    bd = mixtral_tp8(Batch(prefill_new_tokens=[512], decode_kv_tokens=[300] * 16))
    raw = bd.compute_s + bd.memory_s + bd.communication_s + bd.overhead_s
    assert raw - bd.hidden_s == pytest.approx(bd.time_s)  # no overlap: nothing hidden
    assert bd.hidden_s == pytest.approx(0.0, abs=1e-12)
    assert bd.communication_s > 0  # tp=8 all-reduces
    assert bd.energy_j == pytest.approx(bd.power_w * bd.time_s)
    assert 0 < bd.power_w <= 700.0
    assert bd.tokens_in == 512 and bd.tokens_out == 17
    assert {r.group for r in bd.ops} >= {"head", "moe"}


def test_overlap_hides_communication(dsv3):
    cluster, model = dsv3.cluster, dsv3.model
    par = Parallelism(attention_dp=32, ep=32)
    none = step_for(cluster, model, par=par, dtypes=Dtypes(weights="fp8"), overlap="none")
    fine = step_for(cluster, model, par=par, dtypes=Dtypes(weights="fp8"), overlap="fine-grained")
    b = Batch.prefill(64, 2048)
    assert fine.time_s(b) < none.time_s(b)
    assert fine(b).hidden_s > 0


def test_speculative_decoding_costs_more_per_step_and_yields_more(dsv3):
    cluster, model = dsv3.cluster, dsv3.model
    par = Parallelism(attention_dp=32, ep=32)
    plain = step_for(cluster, model, par=par, dtypes=Dtypes(weights="fp8"))
    mtp = step_for(cluster, model, par=par, dtypes=Dtypes(weights="fp8"), spec=Speculative(tokens=1, acceptance=0.8))
    b = Batch.decode(32 * 64, 2048)
    assert mtp.time_s(b) > plain.time_s(b)
    assert mtp(b).tokens_out == pytest.approx(32 * 64 * 1.8)
    assert any(r.group == "draft" for r in mtp(b).ops)


def test_ep_decode_uses_low_latency_dispatch_and_prefill_normal(dsv3):
    s = StepCost(dsv3.cluster, dsv3.model, dsv3.deployment, dsv3.deployment.pools[0])
    decode_ops = {r.cost.name for r in s(Batch.decode(256, 1000)).ops}
    prefill_ops = {r.cost.name for r in s(Batch.prefill(64, 1000)).ops}
    assert "moe.dispatch_low_latency" in decode_ops and "moe.dispatch_normal" not in decode_ops
    assert "moe.dispatch_normal" in prefill_ops and "moe.attn_prefill" in prefill_ops


def test_pipeline_parallel_adds_stage_transfers():
    cluster = load_cluster("4x-DGX-H100")
    model = load_model("llama-3.1-70b")
    pp2 = step_for(cluster, model, par=Parallelism(tp=8, pp=2))
    bd = pp2(Batch.decode(16, 1000))
    assert any(r.cost.name == "pipeline.stage_send" for r in bd.ops)
    assert bd.interval_s == pytest.approx(bd.time_s / 2)


def test_empty_batch():
    cluster = load_cluster("4x-DGX-H100")
    s = step_for(cluster, load_model("qwen3-32b"), par=Parallelism(tp=2))
    assert s.time_s(Batch()) == 0.0
    with pytest.raises(ValueError, match="empty"):
        s(Batch())


def test_link_traffic_of_an_ep_step(dsv3):
    from hwsim.perf.step import link_traffic

    s = StepCost(dsv3.cluster, dsv3.model, dsv3.deployment, dsv3.deployment.pools[0])
    traffic = link_traffic(s, Batch.decode(32 * 16, 1000))
    assert traffic and all(v > 0 for v in traffic.values())
    kinds = {dsv3.cluster.graph().edges[e]["kind"] for e in traffic}
    assert "infiniband" in kinds  # EP32 over 4 nodes crosses the NICs


def _allgather_step(dsv3, exchange):
    dep = dsv3.deployment
    dep = dataclasses.replace(dep, experts=dataclasses.replace(dep.experts, exchange=exchange),
                              overlap="none")  # one micro-batch: an op's tokens are the step's
    return StepCost(dsv3.cluster, dsv3.model, dep, dep.pools[0])


def test_allgather_exchange_moves_every_ranks_tokens_to_every_rank(dsv3):
    """``experts.exchange: allgather``: dispatch all-gathers every EP rank's tokens, combine
    reduce-scatters every token's output, in decode and prefill alike."""
    gather = _allgather_step(dsv3, "allgather")
    a2a = _allgather_step(dsv3, "all-to-all")
    ranks = list(gather.groups.ep)
    r, h = len(ranks), dsv3.model.hidden_size
    k = dsv3.model.moe.real_experts_per_token
    for batch in (Batch.decode(32 * 64, 1000), Batch.prefill(32, 2048)):
        ops_ = {o.cost.name: o for o in gather(batch).ops}
        assert "moe.dispatch_allgather" in ops_ and "moe.combine_reducescatter" in ops_
        # the all-token output each rank writes before the reduce-scatter
        fin = ops_["moe.finalize"].cost
        assert fin.bytes_moved == pytest.approx(batch.new_tokens * h * 2.0) and fin.bound == "memory"
        assert not any("low_latency" in n or "normal" in n for n in ops_)
        assert "moe.finalize" not in {o.cost.name for o in a2a(batch).ops}
        per_rank = batch.new_tokens / r
        # FP8 experts: one byte per element gathered, plus an id and a weight per pick
        want = gather.collectives.all_gather(ranks, r * per_rank * (h * 1.0 + 8.0 * k)).time_s
        assert ops_["moe.dispatch_allgather"].cost.time_s == pytest.approx(want, rel=0.02)
        want = gather.collectives.reduce_scatter(ranks, r * per_rank * h * 2.0).time_s
        assert ops_["moe.combine_reducescatter"].cost.time_s == pytest.approx(want, rel=0.02)


def test_allgather_link_traffic_is_the_collectives(dsv3):
    from hwsim.perf.step import link_traffic

    gather = _allgather_step(dsv3, "allgather")
    b = Batch.decode(32 * 16, 1000)
    with_ep, without = link_traffic(gather, b), link_traffic(gather, b, ep=False)
    assert with_ep == without  # routing cannot change an all-gather: always counted
    # EP32 with 8 experts per token: gathering all 32 ranks' tokens on every rank moves more
    # bytes than sending each token to the ranks that hold its experts
    a2a = link_traffic(_allgather_step(dsv3, "all-to-all"), b)
    assert sum(with_ep.values()) > sum(a2a.values()) > 0


def test_unknown_exchange_is_refused():
    from hwsim.spec.deployment import ExpertConfig

    with pytest.raises(ValueError, match="exchange must be one of all-to-all, allgather"):
        ExpertConfig(exchange="alltoallv")
