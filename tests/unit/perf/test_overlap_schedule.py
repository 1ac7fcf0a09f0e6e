"""Two-micro-batch overlap: the four-stage schedule, SMs held by communication kernels, and
MLA's projections as separate GEMMs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.io.scenario import load_scenario
from hwsim.perf import step_kernel as sk
from hwsim.perf.batch import Batch
from hwsim.perf.comm_params import COMM_SMS
from hwsim.perf.step import StepCost
from hwsim.spec.deployment import Deployment, Dtypes, Parallelism, Pool

EXAMPLE = Path(__file__).resolve().parents[3] / "examples/dgx-h100-deepseek-v3/cluster.yaml"


def one_group(a: float, f: float, d: float, c: float, share_d: float = 0.0, share_c: float = 0.0):
    """Rows of one layer group: attention compute, FFN compute, dispatch, combine."""
    out = np.zeros((4, 6))
    out[:, 0] = [a, f, d, c]
    args = np.zeros((4, sk.NUM_ARGS))
    args[2, 4], args[3, 4] = share_d, share_c
    groups = np.zeros(4, np.int64)
    comm = np.array([0, 0, 1, 1], np.int64)
    stage = np.array([sk.ATTN_SIDE, sk.FFN_SIDE, sk.ATTN_SIDE, sk.FFN_SIDE], np.int64)
    return out, groups, comm, stage, args, np.ones(4), np.ones(1), 1


def test_four_stages_by_hand():
    res, total = sk.layer_times(*one_group(2.0, 3.0, 1.0, 4.0, 0.1, 0.2), 1, 0.9)
    # attn|dispatch: 2 + 0.1*1; ffn|dispatch: 3 + 0.1*1; ffn|combine: max(4, 3 + 0.8); attn|combine: 4
    assert total == pytest.approx(2.1 + 3.1 + 4.0 + 4.0)
    assert res[0, 1] == pytest.approx(5.0) and res[0, 2] == pytest.approx(5.0)


def test_without_communication_two_micro_batches_cost_twice_the_compute():
    _, total = sk.layer_times(*one_group(2.0, 3.0, 0.0, 0.0, 0.5, 0.5), 1, 0.9)
    assert total == pytest.approx(10.0)


def test_no_overlap_and_fine_grained_are_unchanged():
    _, none = sk.layer_times(*one_group(2.0, 3.0, 1.0, 4.0, 0.1, 0.2), 0, 0.9)
    _, fine = sk.layer_times(*one_group(2.0, 3.0, 1.0, 4.0, 0.1, 0.2), 2, 0.9)
    assert none == pytest.approx(10.0)
    assert fine == pytest.approx(5.0 + 0.1 * 5.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=4, max_size=4), st.floats(0.0, 0.5), st.floats(0.0, 0.5))
def test_stages_never_beat_perfect_pooling_nor_exceed_serial(t, sd, sc):
    a, f, d, c = t
    args = one_group(a, f, d, c, sd, sc)
    _, staged = sk.layer_times(*args, 1, 0.9)
    _, py = sk.layer_times.py_func(*args, 1, 0.9)
    assert staged == pytest.approx(py, rel=1e-12, abs=1e-12)
    assert staged >= 2 * max(a + f, d + c) - 1e-9          # the old bound: perfect pooling
    assert staged <= 2 * (a + f + d + c) * (1 + max(sd, sc)) + 1e-9
    _, more_sms = sk.layer_times(*one_group(a, f, d, c, min(1.0, sd + 0.2), min(1.0, sc + 0.2)), 1, 0.9)
    assert more_sms >= staged - 1e-12


@pytest.fixture(scope="module")
def dsv3():
    return load_scenario(EXAMPLE)


def ep32(dsv3, overlap: str) -> StepCost:
    pool = Pool(name="p", parallelism=Parallelism(attention_dp=32, ep=32), first_device=0)
    dep = Deployment(model_name=dsv3.model.name, dtypes=Dtypes(weights="fp8"), pools=(pool,), overlap=overlap)
    return StepCost(dsv3.cluster, dsv3.model, dep, pool)


def test_normal_mode_rows_hold_deepep_sms_and_low_latency_none(dsv3):
    s = ep32(dsv3, "two-microbatch")
    names, args = s.plan.names, s.plan.args
    sms = s.device.sm_count
    assert sms
    assert args[names.index("moe.dispatch_normal"), 4] == pytest.approx(COMM_SMS["ep_normal"] / sms)
    assert args[names.index("moe.combine_low_latency"), 4] == 0.0
    stage = dict(zip(names, s.plan.stage, strict=True))
    assert stage["moe.dispatch_normal"] == sk.ATTN_SIDE and stage["moe.combine_normal"] == sk.FFN_SIDE
    assert stage["moe.router"] == sk.ATTN_SIDE and stage["moe.experts_up"] == sk.FFN_SIDE


def test_overlap_helps_prefill_but_less_than_perfect_pooling(dsv3):
    none, tbo = ep32(dsv3, "none"), ep32(dsv3, "two-microbatch")
    b = Batch.prefill(32 * 2, 4096)
    bd = none(b)
    pooled = bd.time_s - min(bd.communication_s, bd.compute_s + bd.memory_s + bd.overhead_s)
    assert pooled < tbo.time_s(b) < none.time_s(b)


def test_one_sequence_is_not_split(dsv3):
    none, tbo = ep32(dsv3, "none"), ep32(dsv3, "two-microbatch")
    b = Batch.prefill(1, 2048)
    assert tbo.time_s(b) == pytest.approx(none.time_s(b))


def test_mla_projections_are_separate_gemms(dsv3):
    s = ep32(dsv3, "none")
    att = dsv3.model.attention
    names = s.plan.names
    assert "moe.qkv_proj" not in names
    k = {n: s.plan.args[names.index(f"moe.{n}"), 1] for n in ("qkv_a_proj", "q_b_proj", "kv_b_proj")}
    assert k == {"qkv_a_proj": dsv3.model.hidden_size, "q_b_proj": att.q_lora_rank, "kv_b_proj": att.kv_lora_rank}
    # the split keeps the FLOPs of the fused row (8 prompts over 32 attention-DP ranks: the
    # busiest rank runs one)
    bd = s(Batch.prefill(8, 1024))
    flop = sum(r.cost.flop for r in bd.ops if r.cost.name.split(".")[1] in k and r.group == "moe")
    o = att.params(dsv3.model.hidden_size) - att.num_heads * att.value_head_dim * dsv3.model.hidden_size
    norms = (att.q_lora_rank or 0) + att.kv_lora_rank
    assert flop == pytest.approx(2 * 1024 * (o - norms), rel=1e-6)
