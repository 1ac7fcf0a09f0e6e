"""Stage 2 builder for the ``deployment:`` section of a cluster file, with meaning checks.

Checks: parallel degrees divide the model's heads and experts and fit the cluster's device
count; each replica runs on one device type; and the weights fit in device memory, with
the shortfall named.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hwsim.errors import SpecError
from hwsim.io.fields import Fields, build
from hwsim.io.load import Context
from hwsim.io.source import Document
from hwsim.io.validate import check_schema
from hwsim.spec.cluster import Cluster
from hwsim.spec.deployment import (
    Deployment,
    Dtypes,
    ExpertConfig,
    ExpertOffload,
    FlashReads,
    Parallelism,
    Pool,
    Prefetch,
    RoutingRef,
    SchedulerLimits,
    Speculative,
)
from hwsim.spec.model import Model
from hwsim.spec.sharding import WeightShare, weight_share
from hwsim.units import Dim, format_quantity


def _parallelism(f: Fields) -> Parallelism:
    return build(f.path, Parallelism, tp=f.get("tp", 1), attention_dp=f.get("attention_dp", 1),
                 ep=f.get("ep", 1), moe_tp=f.get("moe_tp"), pp=f.get("pp", 1))


def _scheduler(f: Fields) -> SchedulerLimits:
    return build(f.path, SchedulerLimits, max_seqs=f.get("max_seqs", 256),
                 max_batched_tokens=f.get("max_batched_tokens", 8192),
                 chunked_prefill_tokens=f.get("chunked_prefill"), kv_block_tokens=f.get("kv_block_tokens", 16),
                 policy=f.get("policy", "fcfs"), kv_reservation=f.get("kv_reservation", "on-demand"))


def _dtypes(f: Fields, model: Model) -> Dtypes:
    """The deployment's formats; unset ones come from the model's checkpoint.

    Routed experts keep the checkpoint's expert format unless ``weights`` or ``experts``
    is set here (setting ``weights: fp8`` quantises experts too).
    """
    md = model.dtypes
    given = f.data
    experts = given.get("experts")
    if experts is None and "weights" not in given:
        experts = md.experts
    return build(f.path, Dtypes, weights=given.get("weights", md.weights),
                 activations=given.get("activations", md.activations), kv=given.get("kv", md.kv),
                 experts=experts)


def _speculative(f: Fields) -> Speculative:
    if not f.data:
        return Speculative()
    return build(f.path, Speculative, tokens=f.get("tokens", 1), acceptance=f.fraction("acceptance", 0.0),
                 method=f.get("method", "mtp"))


def _pools(f: Fields) -> tuple[Pool, ...]:
    pools = []
    first = 0
    for i, item, path in f.items("pools"):
        p = Fields(item, path)
        par = _parallelism(p.sub("parallelism"))
        if p.has("devices") and p.get("devices") != par.devices:
            raise SpecError(
                f"devices per replica ({p.get('devices')}) disagree with the parallelism "
                f"(pp x attention_dp x tp = {par.pp} x {par.attention_dp} x {par.tp} = {par.devices})",
                path=p.at("devices"), expected=str(par.devices), found=p.get("devices"))
        role = p.get("role", "unified")
        pool = build(path, Pool, name=p.get("name", role if i == 0 else f"{role}{i}"), role=role,
                     replicas=p.get("replicas", 1), parallelism=par, scheduler=_scheduler(p.sub("scheduler")),
                     first_device=first)
        first += pool.devices
        pools.append(pool)
    return tuple(pools)


def routing_files(params: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path under ``experts.routing``, file) of every trace file a routing model names:
    its own ``file`` and those of its mixture ``components``."""
    out = [("file", params["file"])] if isinstance(params.get("file"), str) else []
    components = params.get("components")
    for i, comp in enumerate(components if isinstance(components, list) else []):
        if isinstance(comp, dict) and isinstance(comp.get("file"), str):
            out.append((f"components[{i}].file", comp["file"]))
    return out


def _resolve_routing_files(params: dict[str, Any], base: Path) -> dict[str, Any]:
    """Trace files named by the routing model, relative to the cluster file."""
    def fix(item: dict[str, Any]) -> dict[str, Any]:
        if isinstance(item.get("file"), str) and not Path(item["file"]).is_absolute():
            return {**item, "file": str(base / item["file"])}
        return item

    out = fix(params)
    if isinstance(out.get("components"), list):
        out = {**out, "components": [fix(c) if isinstance(c, dict) else c for c in out["components"]]}
    return out


def _experts(f: Fields, base: Path) -> ExpertConfig:
    if not f.data:
        return ExpertConfig()
    routing = dict(f.get("routing", {"model": "uniform"}))
    ref = RoutingRef(model=str(routing.pop("model")), params=_resolve_routing_files(routing, base))
    offload = _offload(f.sub("offload")) if f.has("offload") else None
    return build(f.path, ExpertConfig, placement=f.get("placement", "contiguous"),
                 placement_file=f.get("placement_file"), redundant=f.get("redundant", 0), routing=ref,
                 offload=offload, exchange=f.get("exchange", "all-to-all"))


def _offload(f: Fields) -> ExpertOffload:
    """The ``experts.offload`` block; each field's error names its own path."""
    if f.has("hbm_experts") == f.has("hbm_bytes"):
        raise SpecError("give exactly one of hbm_experts (per MoE layer) and hbm_bytes (per device)",
                        path=f.at("hbm_bytes" if f.has("hbm_bytes") else "hbm_experts"),
                        expected="hbm_experts: N or hbm_bytes: '8 GiB'", found=f.data or None)
    p, fl = f.sub("prefetch"), f.sub("flash")
    source = p.get("source", "predictor" if p.data else "none")
    accuracy = p.fraction("accuracy", 1.0)
    if not 0.0 <= accuracy <= 1.0:
        raise SpecError(f"accuracy must be in [0, 1], got {accuracy:g}", path=p.at("accuracy"),
                        expected="a fraction such as 0.9 or 90%", found=p.get("accuracy"))
    prefetch = build(p.path, Prefetch, source=source, accuracy=accuracy)
    flash = build(fl.path, FlashReads, read=fl.get("read", "expert"), queue_depth=fl.get("queue_depth", 32),
                  window_tokens=fl.get("window_tokens", 0))
    if fl.data and f.get("backing", "dram") != "flash":
        raise SpecError("flash reads are set but the experts are backed by DRAM", path=fl.path,
                        expected="backing: flash, or no flash block", found=f.get("backing", "dram"))
    return build(f.path, ExpertOffload, hbm_experts=f.get("hbm_experts"),
                 hbm_bytes=f.quantity("hbm_bytes", Dim.BYTES, None), scope=f.get("scope", "layer"),
                 policy=f.get("policy", "lru"), window=f.get("window", 1), backing=f.get("backing", "dram"),
                 prefetch=prefetch, cpu_compute=f.get("cpu_compute", "never"), flash=flash)


def build_deployment(f: Fields, ctx: Context, doc: Document, cluster: Cluster) -> tuple[Deployment, Model]:
    """Build and check a deployment (``f`` is the section, already schema-checked)."""
    model = ctx.reference("model", f.require("model"), doc=doc, path=f.at("model"))
    dtypes = _dtypes(f.sub("dtypes"), model)
    if f.has("memory_reserve") and f.has("kv_cache_free_fraction"):
        raise SpecError("memory_reserve and kv_cache_free_fraction both size the runtime reserve; give one",
                        path=f.at("kv_cache_free_fraction"), expected="one of the two",
                        found=f"memory_reserve {f.get('memory_reserve')}, "
                              f"kv_cache_free_fraction {f.get('kv_cache_free_fraction')}")
    kv_free = f.fraction("kv_cache_free_fraction", None)
    if kv_free is not None and not 0 < kv_free <= 1:
        raise SpecError("kv_cache_free_fraction is the KV cache's share of the free memory",
                        path=f.at("kv_cache_free_fraction"), expected="a fraction in (0, 1]", found=kv_free)
    deployment = build(f.path, Deployment, model_name=model.name, dtypes=dtypes, pools=_pools(f),
                       experts=_experts(f.sub("experts"), Path(doc.file).parent), overlap=f.get("overlap", "none"),
                       memory_reserve_fraction=f.fraction("memory_reserve", 0.1),
                       kv_cache_free_fraction=kv_free,
                       speculative=_speculative(f.sub("speculative")), cuda_graph=bool(f.get("cuda_graph", True)))
    check_deployment(deployment, model, cluster, f)
    return deployment, model


def check_deployment(dep: Deployment, model: Model, cluster: Cluster, f: Fields) -> None:
    """Meaning checks that need the model and the cluster."""
    if dep.devices > cluster.num_devices:
        raise SpecError(f"the pools need {dep.devices} devices; cluster '{cluster.name}' has {cluster.num_devices}",
                        path=f.at("pools"), expected=f"at most {cluster.num_devices} devices", found=dep.devices)
    names = cluster.device_names
    for i, pool in enumerate(dep.pools):
        path = f"{f.at('pools')}[{i}]"
        kinds = {names[d] for d in pool.device_range}
        if len(kinds) > 1:
            raise SpecError(f"pool '{pool.name}' spans devices of several types ({', '.join(sorted(kinds))})",
                            path=path, expected="one device type per pool (order pools to match node groups)")
        _check_divisibility(pool, model, dep, f"{path}.parallelism")
        _check_fits(pool, model, dep, cluster, path)


def _check_divisibility(pool: Pool, model: Model, dep: Deployment, path: str) -> None:
    par = pool.parallelism
    heads, kv_heads = model.attention.num_heads, model.attention.num_kv_heads
    if heads % par.tp:
        raise SpecError(f"tp={par.tp} does not divide the {heads} attention heads of {model.name}",
                        path=f"{path}.tp", expected=f"a divisor of {heads}", found=par.tp)
    if kv_heads and par.tp % kv_heads and kv_heads % par.tp:
        raise SpecError(f"tp={par.tp} and the {kv_heads} KV heads of {model.name} do not divide one another",
                        path=f"{path}.tp", expected=f"a divisor or multiple of {kv_heads}", found=par.tp)
    if par.pp > model.num_layers:
        raise SpecError(f"pp={par.pp} exceeds the {model.num_layers} layers of {model.name}",
                        path=f"{path}.pp", expected=f"at most {model.num_layers}", found=par.pp)
    if model.moe is None:
        if par.ep > 1:
            raise SpecError(f"{model.name} is dense: it has no experts to spread over ep={par.ep}",
                            path=f"{path}.ep", expected="1", found=par.ep)
        return
    experts = model.moe.num_experts + dep.experts.redundant
    if experts % par.ep:
        raise SpecError(
            f"ep={par.ep} does not divide the {model.moe.num_experts} experts + experts.redundant "
            f"{dep.experts.redundant} = {experts} expert slots of {model.name} (each rank needs as many)",
            path=f"{path}.ep", expected=f"a divisor of {experts}, or experts.redundant making "
            f"{model.moe.num_experts} + redundant a multiple of {par.ep}", found=par.ep)


def _check_fits(pool: Pool, model: Model, dep: Deployment, cluster: Cluster, path: str) -> None:
    device = cluster.device_at(pool.first_device)
    share = weight_share(model, pool.parallelism, dep.dtypes, dep.experts.redundant)
    capacity = device.hbm_bytes
    reserve = 0.0 if dep.kv_cache_free_fraction is not None else dep.memory_reserve_fraction
    usable = capacity * (1.0 - reserve)
    need = share.total_bytes
    if dep.experts.offload is not None and model.moe is not None:
        _check_offload(pool, model, dep, cluster, share, usable)
        return
    if need > usable:
        par = pool.parallelism
        raise SpecError(
            f"{model.name} ({dep.dtypes.weights} weights) with tp={par.tp}, ep={par.ep}, pp={par.pp} needs "
            f"{gb(need)} of weights per device; {device.name} has {gb(usable)} usable of {gb(capacity)} "
            f"({reserve:.0%} reserved): short by {gb(need - usable)}"
            + (f" (experts.redundant {dep.experts.redundant} makes {share.experts_per_device} expert slots per "
               "MoE layer per device)" if dep.experts.redundant else ""),
            path=f"{path}.parallelism", expected="a deployment whose weights fit (more ep/tp/pp, or smaller dtypes)")


def _check_offload(pool: Pool, model: Model, dep: Deployment, cluster: Cluster, share: WeightShare,
                   usable: float) -> None:
    """With an expert cache: dense weights + the cache fit in device memory, and the experts
    left out fit in host DRAM (``backing: dram``, this device's share of the node's DRAM) or
    on the node's flash (``backing: flash``)."""
    off = dep.experts.offload
    assert off is not None
    path = "deployment.experts.offload"
    layers = math.ceil(model.num_moe_layers / pool.parallelism.pp)
    local = share.experts_per_device
    one = share.experts_bytes / (layers * local) if layers * local else 0.0
    cached = off.cached_experts(local_experts=local, layers=layers, expert_bytes=one)
    resident = cached * one
    offloaded = share.experts_bytes - resident
    device = cluster.device_at(pool.first_device)
    need = share.total_bytes - offloaded
    what = "hbm_experts" if off.hbm_experts is not None else "hbm_bytes"
    if need > usable:
        raise SpecError(
            f"{model.name}: dense weights {gb(need - resident)} + expert cache {gb(resident)} ({cached} experts over "
            f"{layers} MoE layers) need {gb(need)} per device; {device.name} has {gb(usable)} usable: short by "
            f"{gb(need - usable)}", path=f"{path}.{what}", expected="a smaller expert cache (or more devices)",
            found=off.hbm_experts if off.hbm_experts is not None else gb(off.hbm_bytes or 0.0))
    node = cluster.node_of_device(pool.first_device)
    cpu = node.cpu
    if off.cpu_compute != "never" and (cpu is None or not cpu.compute_flop_per_s or cpu.memory is None):
        raise SpecError(f"cpu_compute '{off.cpu_compute}' runs experts on the host CPU, but node '{node.name}' lists "
                        "no CPU compute peak and DRAM", path=f"{path}.cpu_compute",
                        expected="never, or a node whose cpu has compute and memory", found=off.cpu_compute)
    if offloaded <= 0:
        return
    if off.backing == "dram":
        dram = node.dram
        if dram is None:
            raise SpecError(f"node '{node.name}' lists no host DRAM to hold {gb(offloaded)} of offloaded experts "
                            "per device", path=f"{path}.backing", expected="a node with cpu.memory, or backing: flash",
                            found="dram")
        per_device = dram.capacity_bytes * (1.0 - dep.memory_reserve_fraction) / node.device_count
        if offloaded > per_device:
            raise SpecError(
                f"offloaded experts need {gb(offloaded)} of host DRAM per device; node '{node.name}' has "
                f"{gb(per_device)} per device ({gb(dram.capacity_bytes)} over {node.device_count} devices, "
                f"{dep.memory_reserve_fraction:.0%} reserved): short by {gb(offloaded - per_device)}",
                path=f"{path}.backing", expected="a larger cache, backing: flash, or more host DRAM", found="dram")
        return
    flash = sum(st.capacity_bytes for st in node.storage)
    if flash <= 0:
        raise SpecError(f"node '{node.name}' lists no storage to hold the offloaded experts", path=f"{path}.backing",
                        expected="a node with storage, or backing: dram", found="flash")
    if offloaded * node.device_count > flash:
        raise SpecError(f"offloaded experts need {gb(offloaded * node.device_count)} of flash on node '{node.name}', "
                        f"which has {gb(flash)}: short by {gb(offloaded * node.device_count - flash)}",
                        path=f"{path}.backing", expected="a larger cache or more storage", found="flash")


def gb(x: float) -> str:
    return format_quantity(x, Dim.BYTES)


def check_deployment_schema(data: Any) -> None:
    check_schema(data, "deployment")
