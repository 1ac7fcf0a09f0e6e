"""The miss cost model (hwsim.perf.offload): fetch paths, flash reads, CPU experts, prefetch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_offload_spec import CLUSTER, write

from hwsim.io.scenario import load_scenario
from hwsim.perf.collectives import Collectives
from hwsim.perf.offload import OffloadCost

MIXTRAL_EXPERT_BYTES = 3 * 4096 * 14336 * 2  # gate, up, down of one Mixtral-8x7B expert in bf16


def cost_of(tmp_path, offload="{hbm_experts: 1}", *, ep=1, per_switch=1, model="mixtral-8x7b", name="c"):
    path, cat = write(tmp_path, offload, model=model, per_switch=per_switch, name=name)
    if ep > 1:
        path.write_text(path.read_text().replace("{tp: 1, ep: 1}", f"{{tp: {ep}, ep: {ep}}}"))
    sc = load_scenario(path, [cat])
    pool = sc.deployment.pools[0]
    return OffloadCost(sc.cluster, sc.model, sc.deployment, pool), sc


def with_offload(oc: OffloadCost, **changes) -> OffloadCost:
    flash = changes.pop("flash", None)
    off = replace(oc.offload, **changes)
    if flash is not None:
        off = replace(off, flash=replace(off.flash, **flash))
    dep = replace(oc.deployment, experts=replace(oc.deployment.experts, offload=off))
    return OffloadCost(oc.coll.cluster, oc.model, dep, oc.pool, collectives=oc.coll)


def misses(layers, tokens, *, experts=None, flash=False, prefetched=False):
    n = len(layers)
    return dict(layer=np.asarray(layers), expert=np.zeros(n, int) if experts is None else np.asarray(experts),
                tokens=np.asarray(tokens), flash=np.full(n, flash), prefetched=np.full(n, prefetched))


def gpu_of(oc, layers=32, used=2, tokens=1):
    counts = np.zeros((layers, oc.experts), int)
    counts[:, :used] = tokens
    return oc.gpu_layer_s(counts)


def test_dram_fetch_is_expert_bytes_over_the_host_link(tmp_path):
    oc, _ = cost_of(tmp_path)
    assert oc.shape.bytes == MIXTRAL_EXPERT_BYTES
    st_ = oc.step(**misses([0], [1]), gpu_layer_s=gpu_of(oc), window_s=0.0)
    link = 32e9  # the test node's PCIe; the RTX 4090 has no fitted host-link efficiency
    assert st_.time_s == pytest.approx(oc.links.latency_s + MIXTRAL_EXPERT_BYTES / link)
    assert st_.fetched_bytes == MIXTRAL_EXPERT_BYTES
    assert st_.fetched_experts == 1 and st_.cpu_experts == 0
    # misses in several layers add up
    three = oc.step(**misses([0, 1, 2], [1, 1, 1]), gpu_layer_s=gpu_of(oc), window_s=0.0)
    assert three.time_s == pytest.approx(3 * st_.time_s)


def test_fast_path_agrees_with_collectives_transfer(tmp_path):
    oc, sc = cost_of(tmp_path, ep=2, per_switch=2)
    coll = Collectives(sc.cluster)
    rng = np.random.default_rng(0)
    for _ in range(5):
        b = rng.uniform(0, 1e9, size=2)
        ref = coll.transfer([("n0.host", 0, b[0]), ("n0.host", 1, b[1])])
        assert oc.move_s(b[None])[0] == pytest.approx(ref.time_s, rel=1e-12)


def test_two_gpus_behind_one_pcie_switch_fetch_slower_than_one(tmp_path):
    shared, _ = cost_of(tmp_path, ep=2, per_switch=2, name="shared")
    own, _ = cost_of(tmp_path, ep=2, per_switch=1, name="own")
    b = MIXTRAL_EXPERT_BYTES
    for oc in (shared, own):
        one = oc.move_s(np.array([[b, 0.0]]))[0]
        two = oc.move_s(np.array([[b, b]]))[0]
        if oc is shared:
            assert two > 1.9 * (one - oc.links.latency_s)   # the switch uplink carries both
        else:
            assert two == pytest.approx(one)                  # separate uplinks
    # in a step: both ranks miss one expert each in layer 0 (experts 0 and 4 live on ranks 0, 1)
    gpu = np.zeros((32, 2))
    both = misses([0, 0], [1, 1], experts=[0, 4])
    assert shared.step(**both, gpu_layer_s=gpu, window_s=0).time_s > own.step(**both, gpu_layer_s=gpu,
                                                                               window_s=0).time_s


def test_flash_is_slower_than_dram_and_bundles_beat_rows(tmp_path):
    dram, _ = cost_of(tmp_path)
    flash = {read: with_offload(dram, backing="flash", flash={"read": read}) for read in ("row", "bundle", "expert")}
    gpu = gpu_of(dram)
    m = misses([0, 3, 7], [1, 1, 1], flash=True)
    t_dram = dram.step(**{**m, "flash": np.zeros(3, bool)}, gpu_layer_s=gpu, window_s=0).time_s
    t = {read: oc.step(**m, gpu_layer_s=gpu, window_s=0).time_s for read, oc in flash.items()}
    assert t_dram < t["expert"] < t["bundle"] < t["row"]
    # row reads of one 4096-element bf16 row (8 KiB) vs bundles of the three FFN matrices' rows
    assert flash["row"].shape.read_bytes == 4096 * 2
    assert flash["bundle"].shape.read_bytes == 3 * 4096 * 2
    # latency-bound small reads: reads x latency / queue depth
    shallow = with_offload(flash["row"], flash={"read": "row", "queue_depth": 1})
    reads = MIXTRAL_EXPERT_BYTES / (4096 * 2)
    assert shallow.flash_s(np.array([MIXTRAL_EXPERT_BYTES]))[0] == pytest.approx(reads * 80e-6)
    # a flash fetch is flash -> DRAM -> device, the legs overlapped: the slower leg decides
    one = flash["expert"]
    b = np.array([[MIXTRAL_EXPERT_BYTES]])
    assert one.move_s(b, b)[0] == pytest.approx(max(one.flash_s(b[0])[0], one.move_s(b)[0]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 31), st.integers(1, 600)), min_size=1, max_size=12),
       st.integers(1, 64))
def test_cpu_auto_is_never_slower_than_never_or_always(tmp_path_factory, picks, resident_tokens):
    base = _auto_base(tmp_path_factory)
    modes = {m: with_offload(base, cpu_compute=m) for m in ("never", "always", "auto")}
    layers = [p[0] for p in picks]
    tokens = [p[1] for p in picks]
    counts = np.zeros((32, 8), int)
    counts[:, 1] = resident_tokens
    for lay, tok in picks:
        counts[lay, 0] += tok
    gpu = base.gpu_layer_s(counts)
    t = {m: oc.step(**misses(layers, tokens), gpu_layer_s=gpu, window_s=0).time_s for m, oc in modes.items()}
    assert t["auto"] <= t["never"] + 1e-12
    assert t["auto"] <= t["always"] + 1e-12


_BASE: dict[str, OffloadCost] = {}


def _auto_base(tmp_path_factory) -> OffloadCost:
    if "oc" not in _BASE:
        _BASE["oc"], _ = cost_of(tmp_path_factory.mktemp("auto"), "{hbm_experts: 1, cpu_compute: auto}")
    return _BASE["oc"]


def test_fiddler_rule_runs_decode_misses_on_the_cpu_and_prefill_on_the_gpu(tmp_path):
    oc, _ = cost_of(tmp_path, "{hbm_experts: 1, cpu_compute: auto}")
    gpu = gpu_of(oc)
    decode = oc.step(**misses([0], [1]), gpu_layer_s=gpu, window_s=0)
    assert decode.cpu_experts == 1 and decode.fetched_bytes == 0
    assert decode.activation_bytes.sum() == 2 * 4096 * 2      # one token's activations, both ways
    # CPU time of one decode token is memory-bound: the expert's bytes at the derated DRAM bandwidth
    from hwsim.perf.offload import CPU_MEMORY_EFFICIENCY
    assert oc.cpu_s(np.array([1]))[0] > MIXTRAL_EXPERT_BYTES / (300e9 * CPU_MEMORY_EFFICIENCY)
    prefill = oc.step(**misses([0], [4096]), gpu_layer_s=gpu_of(oc, tokens=4096), window_s=0)
    assert prefill.cpu_experts == 0 and prefill.fetched_experts == 1


def test_prefetch_hides_behind_the_window(tmp_path):
    oc, _ = cost_of(tmp_path)
    gpu = gpu_of(oc)
    on_demand = oc.step(**misses([0], [1]), gpu_layer_s=gpu, window_s=0).time_s
    pre = misses([0], [1], prefetched=True)
    assert oc.step(**pre, gpu_layer_s=gpu, window_s=1.0).time_s == 0.0
    half = oc.step(**pre, gpu_layer_s=gpu, window_s=on_demand / 2)
    assert half.time_s == pytest.approx(on_demand / 2)
    assert half.hidden_s == pytest.approx(on_demand / 2)
    # an on-demand miss queues behind a prefetch that outlasts the window
    mixed = dict(layer=np.array([0, 0]), expert=np.array([0, 1]), tokens=np.array([1, 0]),
                 flash=np.zeros(2, bool), prefetched=np.array([False, True]))
    both = oc.step(**mixed, gpu_layer_s=gpu, window_s=on_demand / 2).time_s
    assert both == pytest.approx(on_demand / 2 + on_demand)


def test_link_bytes_land_on_the_pcie_and_storage_edges(tmp_path):
    oc, _ = cost_of(tmp_path, "{hbm_experts: 1, backing: flash}")
    st_ = oc.step(**misses([0, 1], [1, 1], flash=True), gpu_layer_s=gpu_of(oc), window_s=0)
    links = oc.link_bytes(st_.dram_bytes, st_.flash_bytes, st_.activation_bytes)
    assert links[("n0.host", "n0.d0")] == pytest.approx(2 * MIXTRAL_EXPERT_BYTES)
    assert links[("n0.nvme", "n0.host")] == pytest.approx(2 * MIXTRAL_EXPERT_BYTES)


def test_a_node_without_cpu_compute_fetches_everything(tmp_path):
    path = tmp_path / "mac.yaml"
    path.write_text(CLUSTER.replace("Offload-Box", "macbook-pro-m2-max").format(
        model="olmoe-1b-7b", offload="{hbm_experts: 8, backing: flash}", max_seqs=1))
    sc = load_scenario(path)
    oc = OffloadCost(sc.cluster, sc.model, sc.deployment, sc.deployment.pools[0])
    assert not oc.cpu_available
    st_ = oc.step(**misses([0, 1], [1, 1], experts=[3, 5], flash=True), gpu_layer_s=np.zeros((16, 1)), window_s=0)
    assert np.isfinite(st_.time_s) and st_.time_s > 0 and st_.cpu_experts == 0
