"""Sweep files (hwsim/io/sweep_spec.py) and their expansion into configurations (hwsim/sweep/grid.py)."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hwsim.errors import SpecError
from hwsim.io.sweep_spec import ValueRange, check_axes, load_sweep_spec
from hwsim.sweep.grid import configurations, latin_hypercube

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "examples" / "dgx-h100-deepseek-v3" / "cluster.yaml"
TRACE = REPO / "workloads" / "traces" / "azure-conv-10min.jsonl"
HASHES = {"cluster": "c0", "trace": "t0"}


def write_spec(folder: Path, body: str, name: str = "sweep.yaml") -> Path:
    head = f"version: 1\nkind: sweep\nbase: {{cluster: {CLUSTER}, trace: {TRACE}}}\n"
    path = folder / name
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def test_grid_varies_the_first_axis_slowest(tmp_path):
    spec = load_sweep_spec(write_spec(tmp_path, """
        axes:
          nodes.system: [DGX-H100, HGX-H200]
          deployment.pools[0].scheduler.max_seqs: [64, 128, 256]
        """))
    configs = configurations(spec, HASHES)
    assert [c.index for c in configs] == list(range(6))
    assert [dict(c.patch)["nodes.system"] for c in configs] == ["DGX-H100"] * 3 + ["HGX-H200"] * 3
    assert [dict(c.patch)["deployment.pools[0].scheduler.max_seqs"] for c in configs] == [64, 128, 256] * 2
    assert len({c.key for c in configs}) == 6


def test_zip_pairs_values_and_linked_paths_move_together(tmp_path):
    spec = load_sweep_spec(write_spec(tmp_path, """
        combine: zip
        axes:
          - name: size
            paths: [nodes.count, "deployment.pools[0].devices"]
            values: [[2, 16], [4, 32]]
            labels: [small, large]
          - path: deployment.pools[0].scheduler.max_seqs
            values: [64, 128]
        """))
    configs = configurations(spec, HASHES)
    assert [dict(c.patch) for c in configs] == [
        {"nodes.count": 2, "deployment.pools[0].devices": 16, "deployment.pools[0].scheduler.max_seqs": 64},
        {"nodes.count": 4, "deployment.pools[0].devices": 32, "deployment.pools[0].scheduler.max_seqs": 128}]
    assert [dict(c.inputs)["size"] for c in configs] == ["small", "large"]


def test_keys_depend_on_the_configuration_and_options_not_on_where_the_files_are(tmp_path):
    body = "axes:\n  deployment.pools[0].scheduler.max_seqs: [64, 128]\n"
    a = configurations(load_sweep_spec(write_spec(tmp_path, body)), HASHES)
    (tmp_path / "elsewhere").mkdir()
    b = configurations(load_sweep_spec(write_spec(tmp_path / "elsewhere", body)), HASHES)
    assert [c.key for c in a] == [c.key for c in b]
    seeded = configurations(load_sweep_spec(write_spec(tmp_path, body + "seed: 3\n", "s.yaml")), HASHES)
    assert not {c.key for c in a} & {c.key for c in seeded}
    edited = configurations(load_sweep_spec(write_spec(tmp_path, body)), {**HASHES, "cluster": "c1"})
    assert not {c.key for c in a} & {c.key for c in edited}


def test_random_and_latin_hypercube_are_seeded(tmp_path):
    body = """
        combine: {combine}
        samples: 40
        seed: 7
        axes:
          deployment.pools[0].scheduler.max_seqs: [32, 64, 128, 256]
          deployment.pools[0].scheduler.chunked_prefill: {{low: 512, high: 8192, log: true, integer: true}}
        """
    for combine in ("random", "latin-hypercube"):
        path = write_spec(tmp_path, body.format(combine=combine), f"{combine}.yaml")
        first = configurations(load_sweep_spec(path), HASHES)
        again = configurations(load_sweep_spec(path), HASHES)
        assert [c.key for c in first] == [c.key for c in again]
        chunks = [dict(c.patch)["deployment.pools[0].scheduler.chunked_prefill"] for c in first]
        assert all(isinstance(x, int) and 512 <= x <= 8192 for x in chunks)
    lhs = configurations(load_sweep_spec(tmp_path / "latin-hypercube.yaml"), HASHES)
    # 40 strata over 4 values: each value exactly 10 times
    assert Counter(dict(c.patch)["deployment.pools[0].scheduler.max_seqs"] for c in lhs) == \
        {32: 10, 64: 10, 128: 10, 256: 10}


def test_latin_hypercube_uses_every_stratum_once():
    q = latin_hypercube(25, 3, np.random.default_rng(1))
    for d in range(3):
        assert sorted(np.floor(q[:, d] * 25).astype(int).tolist()) == list(range(25))


def test_value_ranges():
    assert ValueRange(low=1, high=4, integer=True).at(0.0) == 1
    assert ValueRange(low=1, high=4, integer=True).at(0.999) == 4
    assert ValueRange(low=500, high=700, unit="W").at(0.25) == "550 W"
    with pytest.raises(ValueError, match="log range"):
        ValueRange(low=0, high=1, log=True)


@pytest.mark.parametrize(("body", "path", "says"), [
    ("axes: {nodes.count: [2]}\ncombine: random\n", "samples", "draws 'samples'"),
    ("axes: {nodes.count: {low: 1, high: 4}}\n", "axes.nodes.count", "needs combine: random"),
    ("combine: zip\naxes: {nodes.count: [2, 4], nodes.system: [DGX-H100]}\n", "axes", "same number of values"),
    ("axes:\n  - paths: [nodes.count, nodes.system]\n    values: [[2, DGX-H100], [4]]\n", "axes[0].values[1]",
     "one entry per path"),
    ("axes:\n  - path: nodes.count\n    values: [2, 4]\n    labels: [a]\n    name: n\n", "axes[0].labels",
     "one label per value"),
    ("axes: {nodes.count: [2]}\nmode: simulate\nbase: {cluster: x.yaml}\n", "base.cluster", "file not found"),
    ("axes: {nodes.count: [2]}\nmodes: simulate\n", "modes", "unknown field 'modes'"),
    ("axes:\n  - {path: nodes.count, values: [2]}\n  - {path: cluster.nodes.count, values: [4]}\n", "axes[1]",
     "swept twice"),
])
def test_bad_sweep_files_name_the_field(tmp_path, body, path, says):
    file = tmp_path / "bad.yaml"
    text = f"version: 1\nkind: sweep\n{body}"
    if "base:" not in body:
        text += f"base: {{cluster: {CLUSTER}}}\n"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_sweep_spec(file)
    assert err.value.path == path
    assert says in err.value.message
    assert err.value.file == str(file)


def test_simulate_mode_needs_a_trace(tmp_path):
    file = tmp_path / "s.yaml"
    file.write_text(f"version: 1\nkind: sweep\nmode: simulate\nbase: {{cluster: {CLUSTER}}}\naxes: {{nodes.count: [4]}}\n")
    with pytest.raises(SpecError) as err:
        load_sweep_spec(file)
    assert err.value.path == "base.trace"


@pytest.mark.parametrize(("axis", "says"), [
    ("deployment.pools[0].paralelism.ep: [8]", "no field 'paralelism' at deployment.pools[0]"),
    ("deployment.pools[0].parallelism.epp: [8]", "unknown field 'epp'"),
    ("deployment.pools[3].devices: [8]", "index [3] out of range"),
    ("deployment.pools[0].parallelism.ep: [8, sixteen]", "wrong type"),
    ("fabric.topology: [rail-optimized, torus]", "value not allowed"),
])
def test_axes_are_checked_against_the_base_file_naming_the_path(tmp_path, axis, says):
    spec = load_sweep_spec(write_spec(tmp_path, f"axes:\n  {axis}\n"))
    path = axis.split(":")[0]
    with pytest.raises(SpecError) as err:
        check_axes(spec)
    assert err.value.path == f"axes.{path}"
    assert f"axis '{path}'" in err.value.message
    assert says in err.value.message
    assert err.value.line == 5


def test_a_cluster_prefix_names_the_top_level(tmp_path):
    spec = load_sweep_spec(write_spec(tmp_path, "axes: {cluster.nodes.count: [2, 4]}\n"))
    assert spec.axes[0].paths == ("nodes.count",)
    check_axes(spec)
