"""Stage 2 builder for the ``deployment:`` section of a cluster file, with meaning checks.

Checks: parallel degrees divide the model's heads and experts and fit the cluster's device
count; each replica runs on one device type; and the weights fit in device memory, with
the shortfall named.
"""

from __future__ import annotations

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
    Parallelism,
    Pool,
    RoutingRef,
    SchedulerLimits,
    Speculative,
)
from hwsim.spec.model import Model
from hwsim.spec.sharding import weight_share
from hwsim.units import Dim, format_quantity


def _parallelism(f: Fields) -> Parallelism:
    return build(f.path, Parallelism, tp=f.get("tp", 1), attention_dp=f.get("attention_dp", 1),
                 ep=f.get("ep", 1), moe_tp=f.get("moe_tp"), pp=f.get("pp", 1))


def _scheduler(f: Fields) -> SchedulerLimits:
    return build(f.path, SchedulerLimits, max_seqs=f.get("max_seqs", 256),
                 max_batched_tokens=f.get("max_batched_tokens", 8192),
                 chunked_prefill_tokens=f.get("chunked_prefill"), kv_block_tokens=f.get("kv_block_tokens", 16),
                 policy=f.get("policy", "fcfs"))


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


def _experts(f: Fields) -> ExpertConfig:
    if not f.data:
        return ExpertConfig()
    routing = dict(f.get("routing", {"model": "uniform"}))
    ref = RoutingRef(model=str(routing.pop("model")), params=routing)
    return build(f.path, ExpertConfig, placement=f.get("placement", "contiguous"),
                 placement_file=f.get("placement_file"), redundant=f.get("redundant", 0), routing=ref)


def build_deployment(f: Fields, ctx: Context, doc: Document, cluster: Cluster) -> tuple[Deployment, Model]:
    """Build and check a deployment (``f`` is the section, already schema-checked)."""
    model = ctx.reference("model", f.require("model"), doc=doc, path=f.at("model"))
    dtypes = _dtypes(f.sub("dtypes"), model)
    deployment = build(f.path, Deployment, model_name=model.name, dtypes=dtypes, pools=_pools(f),
                       experts=_experts(f.sub("experts")), overlap=f.get("overlap", "none"),
                       memory_reserve_fraction=f.fraction("memory_reserve", 0.1),
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
            f"ep={par.ep} does not divide the {model.moe.num_experts} experts (+{dep.experts.redundant} redundant) "
            f"of {model.name}", path=f"{path}.ep", expected=f"a divisor of {experts}", found=par.ep)


def _check_fits(pool: Pool, model: Model, dep: Deployment, cluster: Cluster, path: str) -> None:
    device = cluster.device_at(pool.first_device)
    share = weight_share(model, pool.parallelism, dep.dtypes, dep.experts.redundant)
    capacity = device.hbm_bytes
    usable = capacity * (1.0 - dep.memory_reserve_fraction)
    need = share.total_bytes
    if need > usable:
        par = pool.parallelism
        raise SpecError(
            f"{model.name} ({dep.dtypes.weights} weights) with tp={par.tp}, ep={par.ep}, pp={par.pp} needs "
            f"{gb(need)} of weights per device; {device.name} has {gb(usable)} usable of {gb(capacity)} "
            f"({dep.memory_reserve_fraction:.0%} reserved): short by {gb(need - usable)}",
            path=f"{path}.parallelism", expected="a deployment whose weights fit (more ep/tp/pp, or smaller dtypes)")


def gb(x: float) -> str:
    return format_quantity(x, Dim.BYTES)


def check_deployment_schema(data: Any) -> None:
    check_schema(data, "deployment")
