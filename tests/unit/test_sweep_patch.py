"""Field-path patches (hwsim/io/patch.py): parsing, resolution errors, copying."""

from __future__ import annotations

import copy

import pytest

from hwsim.errors import SpecError
from hwsim.io.patch import apply_patch, check_path, format_path, parse_path, patch_document
from hwsim.io.source import parse_text

BASE = {
    "nodes": {"system": "DGX-H100", "count": 4},
    "deployment": {
        "model": "deepseek-v3",
        "pools": [{"name": "main", "devices": 32, "parallelism": {"tp": 1, "attention_dp": 32, "ep": 32}}],
    },
}


@pytest.mark.parametrize("path", ["deployment.pools[0].parallelism.ep", "nodes.count", "a[0][1].b", "x"])
def test_parse_and_format_round_trip(path):
    assert format_path(parse_path(path)) == path


@pytest.mark.parametrize("path", ["", ".a", "a.", "a..b", "a[x]", "a[0", "[0].a", "a]b", "a.[0]"])
def test_malformed_paths_are_spec_errors(path):
    with pytest.raises(SpecError) as err:
        parse_path(path)
    assert err.value.message == "malformed field path"


def test_patch_sets_values_and_leaves_the_input_alone():
    before = copy.deepcopy(BASE)
    out = apply_patch(BASE, {"deployment.pools[0].parallelism.ep": 16, "nodes.count": 2})
    assert out["deployment"]["pools"][0]["parallelism"] == {"tp": 1, "attention_dp": 32, "ep": 16}
    assert out["nodes"]["count"] == 2
    assert before == BASE


def test_a_mapping_value_replaces_the_subtree_and_later_paths_reach_inside_it():
    value = {"tp": 8, "attention_dp": 4, "ep": 32}
    out = apply_patch(BASE, [("deployment.pools[0].parallelism", value),
                             ("deployment.pools[0].parallelism.moe_tp", 1)])
    assert out["deployment"]["pools"][0]["parallelism"] == {"tp": 8, "attention_dp": 4, "ep": 32, "moe_tp": 1}
    assert value == {"tp": 8, "attention_dp": 4, "ep": 32}  # the patch value is copied, not shared


def test_the_last_key_may_be_new():
    out = apply_patch(BASE, {"deployment.memory_reserve": "5%"})
    assert out["deployment"]["memory_reserve"] == "5%"


@pytest.mark.parametrize(("path", "says"), [
    ("deployment.pools[0].paralelism.ep", "no field 'paralelism' at deployment.pools[0] (did you mean 'parallelism'?)"),
    ("deployment.pools[1].devices", "index [1] out of range: deployment.pools has 1 item(s)"),
    ("deployment.pools.devices", "deployment.pools is a list of 1 items, not a mapping"),
    ("nodes[0].count", "nodes is a mapping, not a list"),
    ("nodes.system.name", "nodes.system is a string ('DGX-H100'), not a mapping or list"),
    ("nodez.count", "no field 'nodez' at the top level (did you mean 'nodes'?)"),
])
def test_a_bad_path_names_itself_and_what_exists_there(path, says):
    with pytest.raises(SpecError) as err:
        check_path(BASE, path)
    assert err.value.path == path
    assert says in err.value.message


def test_a_missing_key_lists_the_keys_present():
    with pytest.raises(SpecError) as err:
        apply_patch(BASE, {"deployment.pools[0].paralelism.ep": 8})
    assert err.value.expected == "one of name, devices, parallelism"


def test_patched_documents_keep_the_base_file_and_lines():
    doc = parse_text("nodes: {system: DGX-H100, count: 4}\nfabric:\n  topology: none\n", "c.yaml")
    out = patch_document(doc, {"fabric.topology": "fat-tree"})
    assert out.data["fabric"]["topology"] == "fat-tree"
    assert doc.data["fabric"]["topology"] == "none"
    assert out.file == "c.yaml"
    assert out.line_of("fabric.topology") == 3
