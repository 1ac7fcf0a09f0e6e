"""``hwsim model list|show|import`` through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from hwsim.cli.model import model
from hwsim.io.load import load_model

ROOT = Path(__file__).resolve().parents[1]
HF = ROOT / "tests" / "data" / "hf"


def run(*args: str):
    return CliRunner().invoke(model, list(args), catch_exceptions=False)


def test_list_shows_every_model_on_one_line():
    result = run("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    names = [p.stem for p in (ROOT / "workloads" / "models").glob("*.yaml")]
    for name in names:
        (line,) = [ln for ln in lines if ln.startswith(name + " ")]
        assert line.split()[0] == name
    assert "671.0B" in next(ln for ln in lines if ln.startswith("deepseek-v3 "))
    assert "dense" in next(ln for ln in lines if ln.startswith("qwen3-32b "))


def test_show_prints_units_and_derived_figures():
    result = run("show", "deepseek-v3")
    assert result.exit_code == 0
    out = result.output
    assert "70.27 kB/token" in out
    assert "GFLOP" in out
    assert "GB" in out
    assert "total 671.0B" in out
    assert "mla" in out
    assert "source config" in out


def test_show_by_alias_and_context_option():
    result = run("show", "deepseek-r1", "--context", "1000")
    assert result.exit_code == 0
    assert "deepseek-v3" in result.output
    assert "at 1000" in result.output


def test_show_unknown_model_exits_2():
    result = run("show", "deepseek-v9")
    assert result.exit_code == 2
    assert "unknown model" in result.output
    assert "deepseek-v3" in result.output


def test_import_to_stdout():
    result = run("import", str(HF / "mixtral_8x7b.json"), "--name", "my-mixtral")
    assert result.exit_code == 0
    data = yaml.safe_load(result.output)
    assert data["name"] == "my-mixtral"
    assert data["moe"]["num_experts"] == 8


def test_import_to_file_round_trips(tmp_path):
    out = tmp_path / "sub" / "v3.yaml"
    result = run("import", str(HF / "deepseek_v3.json"), "-o", str(out), "--name", "dsv3-copy")
    assert result.exit_code == 0
    assert out.exists()
    assert not list(out.parent.glob(".v3.yaml.*"))
    m = load_model(out)
    assert m.name == "dsv3-copy"
    assert m.total_params == load_model("deepseek-v3").total_params


def test_import_default_name_from_directory(tmp_path):
    folder = tmp_path / "Qwen3-32B"
    folder.mkdir()
    (folder / "config.json").write_text((HF / "qwen3_32b.json").read_text())
    result = run("import", str(folder / "config.json"))
    assert result.exit_code == 0
    assert yaml.safe_load(result.output)["name"] == "qwen3-32b"


def test_import_errors_exit_2(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "bert"}))
    result = run("import", str(bad))
    assert result.exit_code == 2
    assert "supported:" in result.output
    bad.write_text("{not json")
    assert run("import", str(bad)).exit_code == 2
    assert run("import", str(tmp_path / "missing.json")).exit_code == 2
