"""experts.offload: the YAML block, its errors (field path, exit code 2) and the footprint."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

from hwsim.cli import main
from hwsim.errors import InfeasibleError, SpecError
from hwsim.io.scenario import load_scenario
from hwsim.perf.memory import footprint, node_footprint
from hwsim.spec.deployment import ExpertOffload, FlashReads, Prefetch

NODE = """\
version: 1
kind: node
name: Offload-Box
device: RTX-4090
devices: 2
devices_per_host_link: {per_switch}
scale_up: {{topology: none}}
host_link: {{kind: pcie, bandwidth: 32 GB/s, latency: 2 us, source: "test"}}
cpu:
  name: test-cpu
  sockets: 1
  cores_per_socket: 32
  compute: {{bf16: 100 TFLOP/s}}
  memory: {{capacity: {dram}, bandwidth: 300 GB/s}}
  source: "test"
storage:
  - name: nvme
    count: 1
    capacity: 4 TB
    seq_read: 7 GB/s
    read_by_block: [{{block: 4 KiB, bandwidth: 1 GB/s}}, {{block: 1 MiB, bandwidth: 6.5 GB/s}}]
    read_iops: 1M IOPS
    latency: 80 us
    source: "test"
sources: {{}}
"""

CLUSTER = """\
version: 1
kind: cluster
name: offload-test
nodes: {{system: Offload-Box, count: 1}}
deployment:
  model: {model}
  pools:
    - name: main
      parallelism: {{tp: 1, ep: 1}}
      scheduler: {{max_seqs: {max_seqs}, max_batched_tokens: 1024, chunked_prefill: 512}}
  memory_reserve: 5%
  experts:
    offload: {offload}
"""


def write(tmp_path, offload, *, model="olmoe-1b-7b", dram="256 GB", per_switch=1, max_seqs=1, name="c"):
    """A cluster file (and its node in a catalog folder) under ``tmp_path``; returns (path, catalog)."""
    cat = tmp_path / "catalog"
    cat.mkdir(exist_ok=True)
    (cat / "offload-box.yaml").write_text(NODE.format(dram=dram, per_switch=per_switch))
    path = tmp_path / f"{name}.yaml"
    path.write_text(CLUSTER.format(model=model, offload=offload, max_seqs=max_seqs))
    return path, cat


def load(tmp_path, offload, **kw):
    path, cat = write(tmp_path, offload, **kw)
    return load_scenario(path, [cat])


def test_block_becomes_a_frozen_spec_in_si_units(tmp_path):
    sc = load(tmp_path, "{hbm_bytes: 4 GiB, scope: device, policy: lfu, backing: flash, cpu_compute: auto, "
                        "prefetch: {source: pre-attention}, flash: {read: bundle, window_tokens: 5, queue_depth: 8}}")
    off = sc.deployment.experts.offload
    assert off == ExpertOffload(hbm_bytes=4 * 2**30, scope="device", policy="lfu", backing="flash",
                                cpu_compute="auto", prefetch=Prefetch(source="pre-attention", accuracy=1.0),
                                flash=FlashReads(read="bundle", window_tokens=5, queue_depth=8))
    with pytest.raises(AttributeError):
        off.policy = "lru"  # type: ignore[misc]
    default = load(tmp_path, "{hbm_experts: 8, prefetch: {accuracy: 90%}}").deployment.experts.offload
    assert default.prefetch == Prefetch(source="predictor", accuracy=0.9)
    assert (default.backing, default.cpu_compute, default.scope, default.policy) == ("dram", "never", "layer", "lru")


@pytest.mark.parametrize(
    ("offload", "path", "fragment"),
    [
        ("{hbm_experts: 8, polcy: lru}", "deployment.experts.offload.polcy", "did you mean 'policy'"),
        ("{hbm_experts: 8, policy: mru}", "deployment.experts.offload.policy", "lfu"),
        ("{hbm_experts: 8, hbm_bytes: 4 GiB}", "deployment.experts.offload.hbm_bytes", "exactly one"),
        ("{scope: layer}", "deployment.experts.offload.hbm_experts", "exactly one"),
        ("{hbm_bytes: 4 GB/s}", "deployment.experts.offload.hbm_bytes", "bytes"),
        ("{hbm_experts: 8, prefetch: {accuracy: 1.5}}", "deployment.experts.offload.prefetch.accuracy", "[0, 1]"),
        ("{hbm_experts: 8, prefetch: {source: oracle}}", "deployment.experts.offload.prefetch.source", "predictor"),
        ("{hbm_experts: 8, flash: {read: row}}", "deployment.experts.offload.flash", "backed by DRAM"),
        ("{hbm_experts: 8, backing: flash, flash: {read: page}}", "deployment.experts.offload.flash.read", "bundle"),
        ("{hbm_experts: 8, policy: window, window: 0}", "deployment.experts.offload.window", "1"),
    ],
)
def test_bad_blocks_name_the_field(tmp_path, offload, path, fragment):
    with pytest.raises(SpecError) as err:
        load(tmp_path, offload)
    assert err.value.path == path
    assert fragment in str(err.value)


def test_cache_that_does_not_fit_names_the_shortfall(tmp_path):
    with pytest.raises(SpecError) as err:
        load(tmp_path, "{hbm_experts: 6}", model="mixtral-8x7b")
    assert err.value.path == "deployment.experts.offload.hbm_experts"
    assert "expert cache" in str(err.value) and "short by" in str(err.value)


def test_host_dram_must_hold_the_offloaded_experts(tmp_path):
    with pytest.raises(SpecError) as err:
        load(tmp_path, "{hbm_experts: 1}", model="mixtral-8x7b", dram="64 GB")
    assert err.value.path == "deployment.experts.offload.backing"
    assert "host DRAM" in str(err.value) and "short by" in str(err.value)
    # flash backing does not need the DRAM, and 4 TB of flash holds them
    assert load(tmp_path, "{hbm_experts: 1, backing: flash}", model="mixtral-8x7b", dram="64 GB")


def test_cpu_experts_need_a_cpu_with_a_peak(tmp_path):
    path = tmp_path / "mac.yaml"
    path.write_text(CLUSTER.replace("Offload-Box", "macbook-pro-m2-max").format(
        model="olmoe-1b-7b", offload="{hbm_experts: 8, backing: flash, cpu_compute: always}", max_seqs=1))
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    assert err.value.path == "deployment.experts.offload.cpu_compute"


def test_cli_exits_2_with_the_field_path(tmp_path):
    path, cat = write(tmp_path, "{hbm_experts: 8, scope: node}")
    res = CliRunner().invoke(main, ["estimate", str(path), "--catalog", str(cat)])
    assert res.exit_code == 2
    assert "deployment.experts.offload.scope" in res.output
    assert "Traceback" not in res.output


def test_footprint_holds_dense_weights_plus_the_cache(tmp_path):
    full = load(tmp_path, "{hbm_experts: 64}")
    pool = full.deployment.pools[0]
    node = full.cluster.nodes[0]
    base = footprint(full.model, replace(full.deployment, experts=replace(full.deployment.experts, offload=None)),
                     pool, node.device)
    sizes = {}
    for n in (0, 8, 32, 64):
        sc = load(tmp_path, f"{{hbm_experts: {n}}}", name=f"c{n}")
        fp = node_footprint(node, sc.model, sc.deployment, pool)
        assert fp.cached_experts == n * sc.model.num_moe_layers
        one = base.expert_weights_bytes / (64 * sc.model.num_moe_layers)
        assert fp.expert_weights_bytes == pytest.approx(n * sc.model.num_moe_layers * one)
        assert fp.offloaded_expert_bytes == pytest.approx(base.expert_weights_bytes - fp.expert_weights_bytes)
        assert fp.dense_weights_bytes == pytest.approx(base.dense_weights_bytes)
        if n < 64:
            assert fp.tiers[1].tier == "dram"
            assert fp.tiers[1].weights_bytes == pytest.approx(fp.offloaded_expert_bytes)
        sizes[n] = fp.kv_blocks
    assert sizes[0] > sizes[8] > sizes[32] > sizes[64] == base.kv_blocks


def test_footprint_checks_the_host_tier_and_the_flash(tmp_path):
    sc = load(tmp_path, "{hbm_experts: 1}", model="mixtral-8x7b")
    pool, node = sc.deployment.pools[0], sc.cluster.nodes[0]
    tiny = replace(node.dram, capacity_bytes=10e9)
    with pytest.raises(InfeasibleError, match="tier 'dram'.*short by"):
        footprint(sc.model, sc.deployment, pool, node.device, host_memory=tiny)
    flash = replace(sc.deployment, experts=replace(sc.deployment.experts,
                                                   offload=replace(sc.deployment.experts.offload, backing="flash")))
    fp = footprint(sc.model, flash, pool, node.device, flash_bytes=1e12)
    assert fp.tiers[1].tier == "flash"
    with pytest.raises(InfeasibleError, match="flash.*short by"):
        footprint(sc.model, flash, pool, node.device, flash_bytes=1e9)
    with pytest.raises(ValueError, match="cannot be combined"):
        footprint(sc.model, sc.deployment, pool, node.device, offload_experts=0.5)
