"""The model catalog: every file loads, derived counts match the published ones, bad files
fail with the path of the bad field."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hwsim.errors import SpecError
from hwsim.io.build_model import count_digits, parse_count
from hwsim.io.load import load_model

ROOT = Path(__file__).resolve().parents[3]
MODELS = sorted((ROOT / "workloads" / "models").glob("*.yaml"))
NAMES = [p.stem for p in MODELS]
DATA = ROOT / "tests" / "data"


def tolerance(text: str, value: float) -> float:
    """2%, or the rounding of the published figure when that is coarser ('1T' is 0.5T..1.5T)."""
    return max(0.02, 0.5 * 10.0 ** -count_digits(text) * _scale(text) / value)


def _scale(text: str) -> float:
    return parse_count(text, "") / float(text.strip()[:-1])


def published(name: str) -> dict:
    return yaml.safe_load((ROOT / "workloads" / "models" / f"{name}.yaml").read_text())["published"]


def test_catalog_has_the_required_models():
    required = {"deepseek-v3", "deepseek-v2-lite", "mixtral-8x7b", "mixtral-8x22b", "qwen3-30b-a3b",
                "qwen3-235b-a22b", "pangu-pro-moe-72b", "gpt-oss-120b", "llama-4-maverick", "kimi-k2",
                "longcat-flash", "olmoe-1b-7b", "llama-3.1-70b", "qwen3-32b"}
    assert required <= set(NAMES)


def test_schema_is_valid_draft_2020_12():
    schema = json.loads((ROOT / "hwsim" / "io" / "schemas" / "v1" / "model.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", NAMES)
def test_every_catalog_model_loads_by_name_with_sources(name):
    m = load_model(name)
    assert m.name == name
    assert m.sources
    assert m.published is not None
    assert m.published.source is not None
    assert m.published.total is not None


@pytest.mark.parametrize("name", NAMES)
def test_total_params_match_published(name):
    m, pub = load_model(name), published(name)
    text = pub["total_params"]
    expected = parse_count(text, "")
    assert m.total_params == pytest.approx(expected, rel=tolerance(text, expected))


# DeepSeek-V2-Lite: 2.451B derived with DeepSeek's convention vs "2.4B" published (+2.1%); the
# paper's figure looks truncated rather than rounded. Documented in the YAML notes.
LOOSER = {"deepseek-v2-lite": 0.025}


@pytest.mark.parametrize("name", [n for n in NAMES if "active_params" in published(n)])
def test_active_params_match_published_convention(name):
    m, pub = load_model(name), published(name)
    text = pub["active_params"]
    expected = parse_count(text, "")
    got = m.active_params(pub.get("active_counts", "both"))
    assert got == pytest.approx(expected, rel=LOOSER.get(name, tolerance(text, expected)))


@pytest.mark.parametrize(("name", "total", "active"), [
    ("deepseek-v3", 671.0e9, 37e9), ("mixtral-8x7b", 46.7e9, 12.9e9), ("qwen3-30b-a3b", 30.5e9, 3.3e9),
    ("qwen3-235b-a22b", 235e9, 22e9), ("gpt-oss-120b", 116.8e9, 5.1e9), ("olmoe-1b-7b", 6.9e9, 1.3e9),
    ("llama-3.1-70b", 70.6e9, 70.6e9), ("mixtral-8x22b", 141e9, 39e9), ("llama-4-maverick", 400e9, 17e9),
    ("longcat-flash", 560e9, 27e9), ("qwen3-32b", 32.8e9, 32.8e9), ("pangu-pro-moe-72b", 72e9, 16e9),
])
def test_headline_figures_within_two_percent(name, total, active):
    m = load_model(name)
    assert m.total_params == pytest.approx(total, rel=0.02)
    assert m.active_params(m.published.active_embeddings) == pytest.approx(active, rel=0.02)


def test_figures_published_with_one_digit_are_within_their_rounding():
    kimi = load_model("kimi-k2")                        # card: 1T total, 32B active
    assert 0.5e12 <= kimi.total_params < 1.5e12
    assert kimi.total_params == pytest.approx(1.026e12, rel=1e-3)
    assert kimi.active_params("output") == pytest.approx(32e9, rel=0.02)
    lite = load_model("deepseek-v2-lite")               # paper: 15.7B total, 2.4B active
    assert lite.total_params == pytest.approx(15.7e9, rel=0.02)
    assert lite.active_params("output") == pytest.approx(2.4e9, rel=0.025)   # 2.451B, see LOOSER


def test_conventions_differ_by_publisher():
    oss = load_model("gpt-oss-120b")       # OpenAI counts the unembedding, not the embedding
    assert oss.active_params("output") == pytest.approx(5.13e9, rel=0.005)
    assert oss.active_params("both") > 5.6e9
    mix = load_model("mixtral-8x7b")       # Mistral counts both
    assert mix.active_params("both") == pytest.approx(12.9e9, rel=0.005)


def test_longcat_active_range_matches_zero_and_twelve_real_experts():
    import dataclasses

    m = load_model("longcat-flash")
    lo = dataclasses.replace(m, moe=dataclasses.replace(m.moe, expected_real_experts=0.0))
    hi = dataclasses.replace(m, moe=dataclasses.replace(m.moe, expected_real_experts=12.0))
    assert lo.active_params("output") == pytest.approx(18.6e9, rel=0.01)
    assert hi.active_params("output") == pytest.approx(31.3e9, rel=0.01)
    assert m.moe.real_experts_per_token == pytest.approx(8.0)


def test_deepseek_v3_kv_and_structure():
    m = load_model("deepseek-r1")          # alias
    assert m.name == "deepseek-v3"
    assert m.kv_bytes_per_token("bf16") == (512 + 64) * 61 * 2 == 70_272
    assert m.moe_layer_indices == tuple(range(3, 61))
    assert m.mtp_layers == 1
    assert m.mtp_params > 10e9
    assert m.moe.num_expert_groups == 8
    assert m.moe.topk_groups == 4


def test_gqa_kv_hand_computed():
    assert load_model("llama-3.1-70b").kv_bytes_per_token("bf16") == 80 * 2 * 8 * 128 * 2
    assert load_model("mixtral-8x7b").kv_bytes_per_token("fp8") == 32 * 2 * 8 * 128


def test_gpt_oss_sliding_window_halves_long_context_kv():
    m = load_model("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2
    assert m.kv_bytes(100_000) == 18 * per_layer * 100_000 + 18 * per_layer * 128
    assert m.attention.sinks
    assert m.dtypes.experts == "fp4"


def test_maverick_layout():
    m = load_model("llama-4-maverick")
    assert m.moe_layer_indices == tuple(range(1, 48, 2))
    assert [m.attention.windowed(i) for i in range(4)] == [True, True, True, False]
    assert m.param_counts().dense_ffn == 24 * 3 * 5120 * 16384


def test_pangu_moge():
    m = load_model("pangu-pro-moe-72b")
    assert m.moe.moge
    assert m.moe.k_per_group == 1
    assert m.moe.num_shared_experts == 4


@pytest.mark.parametrize("name", NAMES)
def test_flops_per_token_is_twice_active_at_short_context(name):
    m = load_model(name)
    assert m.flops_per_token(1) == pytest.approx(2 * m.active_params("output"), rel=0.01)
    assert m.flops_per_token(32_768) > m.flops_per_token(1)


def test_weight_bytes_use_checkpoint_dtypes():
    v3 = load_model("deepseek-v3")
    c = v3.param_counts()
    assert v3.weight_bytes() == pytest.approx(c.total + c.embedding + c.lm_head + c.norms + c.router, rel=1e-9)
    oss = load_model("gpt-oss-120b")
    assert oss.weight_bytes() < 0.6 * 2 * oss.total_params


@pytest.mark.parametrize(("fixture", "path"), [
    ("bad_model_typo.yaml", "tie_word_embedding"),
    ("bad_model_topk.yaml", "moe.top_k"),
    ("bad_model_missing_hidden.yaml", "hidden_size"),
    ("bad_model_bare_count.yaml", "published.total_params"),
    ("bad_model_kv_heads.yaml", "attention.num_kv_heads"),
    ("bad_model_mla_rank.yaml", "attention.kv_lora_rank"),
    ("bad_model_groups.yaml", "moe.topk_groups"),
    ("bad_model_moge.yaml", "moe.moge"),
    ("bad_model_no_ffn.yaml", "ffn_dim"),
])
def test_bad_model_files_report_the_field(fixture, path):
    with pytest.raises(SpecError) as err:
        load_model(DATA / fixture)
    assert err.value.path == path
    assert err.value.file is not None
    assert err.value.file.endswith(fixture)
    assert err.value.line is not None


def test_parse_count():
    assert parse_count("46.7B", "x") == pytest.approx(46.7e9)
    assert parse_count("1T", "x") == 1e12
    assert count_digits("46.7B") == 1
    assert count_digits("1T") == 0
    with pytest.raises(SpecError) as err:
        parse_count(671, "published.total_params")
    assert err.value.path == "published.total_params"
