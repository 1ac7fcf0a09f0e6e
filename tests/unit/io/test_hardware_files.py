"""Hardware files: good ones load; each bad one names the field (and file, line) at fault."""

from __future__ import annotations

import pytest

from hwsim.errors import SpecError
from hwsim.io.load import load, load_cluster, load_device, load_node


@pytest.mark.parametrize(
    ("kind", "fname", "path", "fragment"),
    [
        ("device", "bad_device_bandwidth_no_unit.yaml", "memory[0].bandwidth", "bare number"),
        ("device", "bad_device_typo.yaml", "memory[0].bandwith", "did you mean 'bandwidth'"),
        ("device", "bad_device_zero_capacity.yaml", "memory[0].capacity", "must be > 0"),
        ("device", "bad_device_negative_tdp.yaml", "power.tdp", "must be > 0"),
        ("device", "bad_device_memory_unsourced.yaml", "memory[0]", "source"),
        ("device", "bad_device_compute_unsourced.yaml", "sources.compute", "source"),
        ("device", "bad_device_efficiency_uncalibrated.yaml", "efficiency.gemm.calibrated_on", "calibrated"),
        ("device", "bad_device_unknown_dtype.yaml", "compute.fp6", "unknown field"),
        ("device", "bad_duplicate_key.yaml", "compute", "duplicate key"),
        ("node", "bad_node_unknown_device.yaml", "device", "did you mean 'H100-SXM'"),
        ("node", "bad_node_link_kind.yaml", "scale_up.link.kind", "nvlink"),
        ("node", "bad_node_nic_bits.yaml", "nics.link.bandwidth", "expected a bandwidth"),
        ("cluster", "bad_cluster_disconnected.yaml", "fabric", "disconnected"),
        ("cluster", "bad_cluster_topology.yaml", "fabric.topology", "fat-tree"),
        ("cluster", "bad_cluster_nodes_count.yaml", "nodes.count", ">= 1"),
        ("cluster", "bad_cluster_power_budget.yaml", "power_domains[0].budget", "bare number"),
        ("cluster", "bad_cluster_power_nodes.yaml", "power_domains[0].nodes", "outside 0..1"),
    ],
)
def test_bad_hardware_names_the_field(datadir, kind, fname, path, fragment):
    with pytest.raises(SpecError) as err:
        load(kind, datadir / fname)
    assert err.value.path == path
    assert fname in (err.value.file or "")
    assert fragment in str(err.value)


def test_error_carries_the_line(datadir):
    with pytest.raises(SpecError) as err:
        load_device(datadir / "bad_device_bandwidth_no_unit.yaml")
    assert err.value.line == 8
    assert str(err.value).startswith(f"{datadir / 'bad_device_bandwidth_no_unit.yaml'}:8: memory[0].bandwidth:")


def test_malformed_yaml_is_located(datadir):
    with pytest.raises(SpecError, match="malformed YAML") as err:
        load_device(datadir / "bad_malformed.yaml")
    assert err.value.line is not None


def test_missing_file():
    with pytest.raises(SpecError, match="file not found"):
        load_device("no/such/device.yaml")


def test_unknown_catalog_name_lists_choices():
    with pytest.raises(SpecError, match="known: .*H100-SXM"):
        load_device("H100-SMX")


def test_wrong_kind(datadir):
    with pytest.raises(SpecError, match="expected a device file") as err:
        load_device(datadir / "good_node.yaml")
    assert err.value.path == "kind"


def test_good_node_parses_units(datadir):
    node = load_node(datadir / "good_node.yaml")
    assert node.device.name == "H100-SXM"
    assert node.scale_up.link.bandwidth_bytes_per_s == 450e9
    assert node.nics.link.bandwidth_bytes_per_s == 50e9  # 400 Gb/s
    assert node.storage[0].read_iops == 1e6
    # between table points the bandwidth interpolates in log(block size); IOPS caps small reads
    nvme = node.storage[0]
    assert nvme.read_bytes_per_s(4 * 1024) == pytest.approx(1e9)
    assert 1e9 < nvme.read_bytes_per_s(64 * 1024) < 6e9
    assert nvme.read_bytes_per_s(1024) == pytest.approx(min(1e6 * 1024, 1e9 * 1024 / 4096))


def test_good_cluster_graph(datadir):
    c = load_cluster(datadir / "good_cluster.yaml")
    assert c.num_nodes == 2 and c.num_devices == 16
    g = c.graph()
    for _, _, e in g.edges(data=True):
        assert e["bandwidth_bytes_per_s"] > 0 and e["latency_s"] >= 0
    # intra-node traffic stays on NVLink; inter-node crosses a 50 GB/s NIC
    assert c.path("n0.d0", "n0.d5") == ["n0.d0", "n0.su", "n0.d5"]
    assert c.bottleneck_bytes_per_s("n0.d0", "n0.d5") == 450e9
    assert c.bottleneck_bytes_per_s("n0.d0", "n1.d0") == 50e9
    # 2 us NIC link each side (+600 ns switch latency on each NIC-leaf hop)
    assert c.path_latency_s("n0.d0", "n1.d0") == pytest.approx(2 * (2e-6 + 600e-9))
    assert c.power_domains[0].nodes == (0, 1)


def test_edges_exist_in_both_directions(datadir):
    g = load_cluster(datadir / "good_cluster.yaml").graph()
    for u, v in g.edges:
        assert g.has_edge(v, u)
