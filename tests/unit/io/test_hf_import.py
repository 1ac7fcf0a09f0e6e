"""Importing Hugging Face config.json files reproduces the catalog models."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from hwsim.errors import SpecError
from hwsim.io.hf_import import CONVERTERS, import_hf_config, validate_import
from hwsim.io.load import load_model

ROOT = Path(__file__).resolve().parents[3]
HF = ROOT / "tests" / "data" / "hf"

PAIRS = {
    "deepseek_v3.json": "deepseek-v3",
    "deepseek_v2_lite.json": "deepseek-v2-lite",
    "mixtral_8x7b.json": "mixtral-8x7b",
    "qwen3_30b_a3b.json": "qwen3-30b-a3b",
    "gpt_oss_120b.json": "gpt-oss-120b",
    "llama4_maverick.json": "llama-4-maverick",
    "llama31_70b.json": "llama-3.1-70b",
    "qwen3_32b.json": "qwen3-32b",
    "olmoe_1b_7b.json": "olmoe-1b-7b",
}


def config(file: str) -> dict:
    return json.loads((HF / file).read_text())


def test_every_saved_config_is_paired():
    assert {p.name for p in HF.glob("*.json")} == set(PAIRS)


@pytest.mark.parametrize(("file", "name"), PAIRS.items())
def test_import_reproduces_catalog_model(file, name):
    data = import_hf_config(config(file), name=name, source=file)
    imported, catalog = validate_import(data), load_model(name)
    assert imported.total_params == catalog.total_params
    assert imported.param_counts() == catalog.param_counts()
    assert imported.active_params("both") == catalog.active_params("both")
    assert imported.moe_layer_indices == catalog.moe_layer_indices
    assert imported.kv_bytes(100_000, "bf16") == catalog.kv_bytes(100_000, "bf16")
    assert imported.flops_per_token(4096) == pytest.approx(catalog.flops_per_token(4096))
    assert imported.weight_bytes() == catalog.weight_bytes()
    assert data["kind"] == "model"
    assert data["version"] == 1
    assert data["sources"]


def test_deepseek_import_details():
    data = import_hf_config(config("deepseek_v3.json"), name="v3")
    assert data["mtp_layers"] == 1
    assert data["moe"]["num_expert_groups"] == 8
    assert data["moe"]["topk_groups"] == 4
    assert data["moe"]["layers"]["first_dense"] == 3
    assert data["dtypes"]["weights"] == "fp8"


def test_window_patterns_are_folded_to_their_period():
    oss = import_hf_config(config("gpt_oss_120b.json"), name="oss")
    assert oss["attention"]["window"] == {"tokens": 128, "kind": "sliding", "pattern": ["window", "full"]}
    assert oss["dtypes"]["experts"] == "fp4"
    mav = import_hf_config(config("llama4_maverick.json"), name="mav")
    assert mav["attention"]["window"]["pattern"] == ["window", "window", "window", "full"]
    assert mav["moe"]["layers"] == {"interval": 2, "phase": 1}
    assert mav["ffn_dim"] == 16384


def test_qwen_sparse_step_and_mlp_only_layers():
    cfg = config("qwen3_30b_a3b.json")
    cfg.update(decoder_sparse_step=2, mlp_only_layers=[1])
    m = validate_import(import_hf_config(cfg, name="q"))
    assert m.moe_layer_indices == tuple(range(3, 48, 2))
    assert m.ffn_dim == 6144


def test_mixtral_sliding_window_applies_to_every_layer():
    cfg = config("mixtral_8x7b.json")
    cfg["sliding_window"] = 4096
    m = validate_import(import_hf_config(cfg, name="mx"))
    assert all(m.attention.windowed(i) for i in range(32))


def test_unknown_model_type_lists_supported():
    with pytest.raises(SpecError) as err:
        import_hf_config({"model_type": "gpt2"}, name="x", source="cfg.json")
    assert err.value.path == "model_type"
    for known in ("deepseek_v3", "mixtral", "qwen3_moe", "gpt_oss", "llama4", "llama", "qwen3"):
        assert known in str(err.value)
    assert set(CONVERTERS) >= {"deepseek_v2", "deepseek_v3", "mixtral", "qwen3_moe", "gpt_oss", "llama4"}


def test_missing_key_names_it():
    cfg = copy.deepcopy(config("mixtral_8x7b.json"))
    del cfg["num_local_experts"]
    with pytest.raises(SpecError) as err:
        import_hf_config(cfg, name="x", source="cfg.json")
    assert err.value.path == "num_local_experts"
    assert err.value.file == "cfg.json"


def test_inconsistent_config_fails_validation():
    cfg = config("mixtral_8x7b.json")
    cfg["num_experts_per_tok"] = 9
    with pytest.raises(SpecError) as err:
        import_hf_config(cfg, name="x")
    assert err.value.path == "moe.top_k"


def test_not_a_mapping():
    with pytest.raises(SpecError):
        import_hf_config([1, 2], name="x")  # type: ignore[arg-type]
