"""Patch files (``kind: patch``) applied by ``--patch`` to simulate, estimate and check."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.errors import SpecError
from hwsim.io.patch import read_patch_file
from hwsim.io.scenario import load_scenario

REPO = Path(__file__).resolve().parents[3]
CLUSTER = REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "patch.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_patch_changes_the_built_scenario_and_joins_the_input_hashes(tmp_path):
    patch = _write(tmp_path, "kind: patch\nsource: test\nset:\n"
                             "  deployment.experts.placement: round-robin\n"
                             "  deployment.pools[0].scheduler.max_seqs: 64\n")
    base = load_scenario(CLUSTER)
    sc = load_scenario(CLUSTER, patches=[patch])
    assert base.deployment.pools[0].scheduler.max_seqs != 64
    assert sc.deployment.pools[0].scheduler.max_seqs == 64
    assert sc.deployment.experts.placement == "round-robin"
    assert str(patch) in sc.input_hashes and str(patch) not in base.input_hashes


@pytest.mark.parametrize(("text", "path"), [
    ("kind: cluster\nset: {a: 1}\n", "kind"),
    ("kind: patch\n", "set"),
    ("kind: patch\nset: {}\n", "set"),
    ("kind: patch\nsets: {a: 1}\n", "sets"),
])
def test_malformed_patch_files_name_the_field(tmp_path, text, path):
    with pytest.raises(SpecError) as err:
        read_patch_file(_write(tmp_path, text))
    assert err.value.path == path
    assert err.value.file == str(tmp_path / "patch.yaml")


def test_a_bad_path_in_a_patch_exits_2_naming_the_patch_file_and_path(tmp_path):
    patch = _write(tmp_path, "kind: patch\nset:\n  deployment.pools[0].paralelism.ep: 8\n")
    res = CliRunner().invoke(main, ["check", str(CLUSTER), "--patch", str(patch)])
    assert res.exit_code == 2
    assert str(patch) in res.output and "deployment.pools[0].paralelism.ep" in res.output
    assert "did you mean 'parallelism'" in res.output


def test_estimate_accepts_a_patch(tmp_path):
    patch = _write(tmp_path, "kind: patch\nset:\n  deployment.pools[0].scheduler.max_seqs: 32\n")
    out = tmp_path / "e.json"
    res = CliRunner().invoke(main, ["estimate", str(CLUSTER), "--patch", str(patch), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file()


@pytest.mark.parametrize(("value", "path", "fragment"), [
    ("deployment.overlap: sometimes", "deployment.overlap", "two-microbatch"),
    ("deployment.pools[0].parallelism: {tp: 1, attention_dp: 32, ep: 33}", "deployment.pools[0].parallelism",
     "ep"),
])
def test_a_bad_patched_value_points_at_the_patch_files_line(tmp_path, value, path, fragment):
    patch = _write(tmp_path, f"kind: patch\nsource: test\nset:\n  deployment.experts.placement: round-robin\n"
                             f"  {value}\n")
    with pytest.raises(SpecError) as err:
        load_scenario(CLUSTER, patches=[patch])
    e = err.value
    assert e.file == str(patch) and e.line == 5    # the line of that key under set:
    assert e.path.startswith(path) and fragment in str(e)
    # the CLI prints that location and exits 2
    res = CliRunner().invoke(main, ["check", str(CLUSTER), "--patch", str(patch)])
    assert res.exit_code == 2 and f"{patch}:5" in res.output


def test_an_error_about_a_block_holding_a_patched_value_names_the_patch(tmp_path):
    patch = _write(tmp_path, "kind: patch\nset:\n  deployment.pools[0].parallelism.ep: 7\n")
    with pytest.raises(SpecError) as err:
        load_scenario(CLUSTER, patches=[patch])
    e = err.value
    assert e.file == str(CLUSTER) and e.path == "deployment.pools[0].parallelism"   # the block's place
    assert f"deployment.pools[0].parallelism.ep set by {patch}:3" in str(e)


def test_errors_outside_patched_values_still_point_at_the_base_file(tmp_path):
    src = CLUSTER.read_text(encoding="utf-8").replace("max_batched_tokens: 131072", "max_batched_tokens: -5")
    base = tmp_path / "cluster.yaml"
    base.write_text(src, encoding="utf-8")
    patch = _write(tmp_path, "kind: patch\nset:\n  deployment.experts.placement: round-robin\n")
    with pytest.raises(SpecError) as err:
        load_scenario(base, patches=[patch])
    assert err.value.file == str(base)
