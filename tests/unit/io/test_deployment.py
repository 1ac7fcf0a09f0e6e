"""Deployment sections: meaning checks name the field; weights per device are hand-checked."""

from __future__ import annotations

import pytest

from hwsim.errors import SpecError
from hwsim.io.load import load_model
from hwsim.io.scenario import load_scenario
from hwsim.spec.deployment import Dtypes, Parallelism
from hwsim.spec.sharding import weight_share


@pytest.mark.parametrize(
    ("fname", "path", "fragment"),
    [
        ("bad_deploy_tp_heads.yaml", "deployment.pools[0].parallelism.tp", "does not divide the 32 attention heads"),
        ("bad_deploy_ep_experts.yaml", "deployment.pools[0].parallelism.ep", "does not divide the 8 experts"),
        ("bad_deploy_too_many_devices.yaml", "deployment.pools", "need 32 devices; cluster 't' has 16"),
        ("bad_deploy_does_not_fit.yaml", "deployment.pools[0].parallelism", "short by"),
        ("bad_deploy_devices_mismatch.yaml", "deployment.pools[0].devices", "disagree with the parallelism"),
        ("bad_deploy_unknown_model.yaml", "deployment.model", "did you mean 'deepseek-v3'"),
        ("bad_deploy_ep_stage.yaml", "deployment.pools[0].parallelism", "ep (3) must divide"),
        ("bad_deploy_roles.yaml", "deployment", "needs both a prefill and a decode pool"),
        ("bad_deploy_dense_ep.yaml", "deployment.pools[0].parallelism.ep", "is dense"),
        ("bad_deploy_chunk.yaml", "deployment.pools[0].scheduler", "chunked prefill (4096)"),
        ("bad_deploy_dtype.yaml", "deployment.dtypes.weights", "fp8"),
        ("bad_deploy_overlap.yaml", "deployment.overlap", "two-microbatch"),
        ("bad_deploy_mixed_devices_pool.yaml", "deployment.pools[1]", "several types"),
        ("bad_deploy_two_reserves.yaml", "deployment.kv_cache_free_fraction", "give one"),
        ("bad_deploy_kv_fraction.yaml", "deployment.kv_cache_free_fraction", "(0, 1]"),
    ],
)
def test_bad_deployment_names_the_field(datadir, fname, path, fragment):
    with pytest.raises(SpecError) as err:
        load_scenario(datadir / fname)
    assert err.value.path == path
    assert err.value.file is not None and err.value.file.endswith(fname)
    assert err.value.line is not None
    assert fragment in str(err.value)


def test_shortfall_is_quantified(datadir):
    with pytest.raises(SpecError) as err:
        load_scenario(datadir / "bad_deploy_does_not_fit.yaml")
    text = str(err.value)
    assert "H100-SXM has 72 GB usable of 80 GB (10% reserved)" in text


def test_disaggregated_deployment_loads(datadir):
    sc = load_scenario(datadir / "good_deploy_disagg.yaml")
    dep = sc.deployment
    assert dep.disaggregated
    assert [p.role for p in dep.pools] == ["prefill", "decode"]
    assert [p.device_range for p in dep.pools] == [range(0, 8), range(8, 16)]
    assert dep.pools[1].scheduler.kv_block_tokens == 64
    assert dep.experts.redundant == 8 and dep.experts.routing.params == {"skew": 1.2}
    assert dep.dtypes.kv == "fp8" and dep.memory_reserve_fraction == pytest.approx(0.15)
    assert dep.speculative.tokens == 1 and dep.speculative.acceptance == pytest.approx(0.8)
    assert len(sc.input_hashes) == 1 and len(next(iter(sc.input_hashes.values()))) == 64


def test_checkpoint_dtypes_are_the_default():
    model = load_model("gpt-oss-120b")
    assert model.dtypes.experts == "fp4"


def test_parallelism_arithmetic():
    p = Parallelism(tp=2, attention_dp=4, ep=8, pp=2)
    assert p.devices == 16 and p.stage_devices == 8 and p.expert_tp == 1
    assert Parallelism(tp=8, ep=2).expert_tp == 4
    with pytest.raises(ValueError, match="must equal"):
        Parallelism(tp=8, ep=2, moe_tp=2)


def test_weight_share_by_hand_mixtral():
    """Mixtral-8x7B bf16, tp=2, ep=1: hand-computed from the architecture."""
    m = load_model("mixtral-8x7b")
    pc = m.param_counts()
    share = weight_share(m, Parallelism(tp=2), Dtypes(weights="bf16"))
    # 32 layers x 8 experts, each expert 3 x 4096 x 14336 parameters, split over moe_tp = 2
    assert pc.routed_expert_one == 3 * 4096 * 14336
    assert share.experts_per_device == 8
    assert share.experts_bytes == pytest.approx(32 * 8 * 3 * 4096 * 14336 * 2 / 2)
    # embedding + LM head, vocabulary-parallel over tp = 2, bf16
    assert share.embedding_bytes == pytest.approx(2 * 32000 * 4096 * 2 / 2)


def test_weight_share_ep_and_pp_divide_the_experts():
    m = load_model("deepseek-v3")
    base = weight_share(m, Parallelism(attention_dp=8, ep=8), Dtypes(weights="fp8"))
    ep32 = weight_share(m, Parallelism(attention_dp=32, ep=32), Dtypes(weights="fp8"))
    assert base.experts_per_device == 32 and ep32.experts_per_device == 8
    assert ep32.experts_bytes == pytest.approx(base.experts_bytes / 4)
    redundant = weight_share(m, Parallelism(attention_dp=32, ep=32), Dtypes(weights="fp8"), redundant_experts=32)
    assert redundant.experts_per_device == 9
    pp2 = weight_share(m, Parallelism(attention_dp=8, ep=8, pp=2), Dtypes(weights="fp8"))
    assert pp2.experts_bytes == pytest.approx(base.experts_bytes * 29 / 58)  # 58 MoE layers, 29 per stage
    # attention_dp replicates the ~15 GB of FP8 attention/dense weights on every device, beside
    # 1/8 of the ~654 GB of routed experts: ~101 GB, more than an H100 holds
    assert base.dense_bytes == pytest.approx(ep32.dense_bytes)
    assert 95e9 < base.total_bytes < 110e9


def test_speculative_tokens_per_step():
    from hwsim.spec.deployment import Speculative

    assert Speculative().tokens_per_step == 1.0
    assert Speculative(tokens=1, acceptance=0.8).tokens_per_step == pytest.approx(1.8)
    assert Speculative(tokens=2, acceptance=0.5).tokens_per_step == pytest.approx(1.75)
    with pytest.raises(ValueError, match="acceptance"):
        Speculative(tokens=1, acceptance=1.5)
